"""The service end to end on a real server: every RPC's answer checked against an independent
computation with the PyTorch models (not the runtime the server uses)."""

from collections.abc import Iterator
from pathlib import Path

import grpc
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from vidsearch.client import SearchClient, SearchHit
from vidsearch.models.tokenizer import Tokenizer
from vidsearch.runtime import RuntimeConfig, read_repository
from vidsearch.serving import SearchServer
from vidsearch.video import ClipSpec, decode, probe, probing, read_clips, segment
from vidsearch.video.timeline import scan_timeline

from ..runtime.models import SCENE_S, Repository
from .conftest import CLIPS_PER_VIDEO, VIDEOS, Media, Running, settings_for

QUERY = "a red circle moves to the left"


@pytest.fixture(scope="module")
def reference(repository: Repository, media: Media) -> dict[str, np.ndarray]:
    """clip id → L2-normalised embedding computed with PyTorch from the decoded clips."""
    spec = read_repository(RuntimeConfig(model_repository=repository.path)).vision
    assert spec is not None
    assert spec.preprocess is not None
    out = {}
    for path in media.videos:
        clips = segment(probe(path), ClipSpec(SCENE_S))
        tensors = np.stack([tensor for _, tensor in read_clips(path, clips, spec.preprocess)])
        with torch.no_grad():
            vectors = F.normalize(repository.viclip.encode_video(torch.from_numpy(tensors)), dim=-1).numpy()
        out.update({f"{path.name}#{i:05d}": vectors[i] for i in range(len(clips))})
    return out


def _text(repository: Repository, texts: list[str]) -> np.ndarray:
    with torch.no_grad():
        tokens = torch.from_numpy(Tokenizer()(texts))
        return F.normalize(repository.viclip.encode_text(tokens), dim=-1).numpy()


def _ranking(reference: dict[str, np.ndarray], query: np.ndarray) -> list[tuple[str, float]]:
    scores = {clip: float(vector @ query) for clip, vector in reference.items()}
    return sorted(scores.items(), key=lambda item: -item[1])


def test_search_ranks_every_clip_by_cosine_like_pytorch(running: Running, repository: Repository,
                                                        reference: dict[str, np.ndarray]) -> None:
    result = running.client.search(QUERY, top_k=9)
    expected = _ranking(reference, _text(repository, [QUERY])[0])
    assert [h.clip_id for h in result.hits] == [clip for clip, _ in expected]
    np.testing.assert_allclose([h.score for h in result.hits], [s for _, s in expected], atol=1e-4)
    hit = result.hits[0]
    number = int(hit.clip_id.split("#")[1])
    assert (hit.start_s, hit.end_s) == (number * SCENE_S, (number + 1) * SCENE_S)
    assert hit.uri == (running.media.root / hit.video_id).as_uri()
    assert result.model == "tiny-viclip"
    assert result.index_version == "snapshot-000001+3"  # the empty index, then three videos logged
    assert result.timings_ms["total"] >= result.timings_ms["embed"] > 0


def test_pages_continue_the_same_ranking_and_end(running: Running) -> None:
    full = running.client.search(QUERY, top_k=6).hits
    seen: list[SearchHit] = []
    token = ""
    for _ in range(3):
        page = running.client.search(QUERY, top_k=6, page_size=2, page_token=token)
        seen += page.hits
        token = page.next_page_token
    assert token == ""
    assert [h.clip_id for h in seen] == [h.clip_id for h in full]


def test_grouping_puts_a_videos_hits_together_best_video_first(running: Running) -> None:
    result = running.client.search(QUERY, top_k=9, group_by_video=True)
    assert result.hits == ()
    assert sorted(g.video_id for g in result.groups) == sorted(VIDEOS)
    best = [g.hits[0].score for g in result.groups]
    assert best == sorted(best, reverse=True)
    assert all(len(g.hits) == CLIPS_PER_VIDEO for g in result.groups)


def test_filters_by_video_tag_and_time(running: Running) -> None:
    client = running.client
    assert {h.video_id for h in client.search(QUERY, video_ids=["clip-1.mp4"]).hits} == {"clip-1.mp4"}
    sport = client.search(QUERY, tags=["sport"]).hits
    assert {h.video_id for h in sport} == {"clip-2.mp4"}
    assert all(h.tags == ("sport",) for h in sport)
    middle = client.search(QUERY, time_range=(2.5, 3.0)).hits  # only the second scene of each video
    assert sorted(h.clip_id for h in middle) == [f"{v}#00001" for v in VIDEOS]


def test_a_clip_finds_itself_first_by_bytes_and_by_path(running: Running) -> None:
    path = running.media.videos[1]
    by_bytes = running.client.search_by_video(video=path.read_bytes(), start_s=2.0, end_s=4.0, top_k=3)
    by_path = running.client.search_by_video(path=path.name, start_s=2.0, end_s=4.0, top_k=3)
    assert by_bytes.hits[0].clip_id == "clip-1.mp4#00001"
    assert by_bytes.hits[0].score == pytest.approx(1.0, abs=1e-4)
    assert [h.clip_id for h in by_path.hits] == [h.clip_id for h in by_bytes.hits]


def test_embed_text_and_embed_video_equal_pytorch(running: Running, repository: Repository,
                                                  reference: dict[str, np.ndarray]) -> None:
    texts = [QUERY, "a blue square grows"]
    np.testing.assert_allclose(running.client.embed_text(texts), _text(repository, texts), atol=2e-5)
    path = running.media.videos[2]
    uploaded = running.client.embed_video(video=path.read_bytes(), chunk_bytes=4096)  # many stream messages
    named = running.client.embed_video(path=path.name)
    expected = np.stack([reference[f"{path.name}#{i:05d}"] for i in range(CLIPS_PER_VIDEO)])
    np.testing.assert_allclose(uploaded.embeddings, expected, atol=2e-5)
    np.testing.assert_array_equal(named.embeddings, uploaded.embeddings)
    assert uploaded.starts_s == (0.0, 2.0, 4.0)
    assert uploaded.ends_s == (2.0, 4.0, 6.0)
    assert uploaded.duration_s == pytest.approx(6.0)
    shorter = running.client.embed_video(path=path.name, clip_length_s=3.0)
    assert shorter.starts_s == (0.0, 3.0)


def test_a_video_request_demuxes_its_input_once(running: Running, monkeypatch: pytest.MonkeyPatch) -> None:
    """The decoder plans from the probe's timeline instead of scanning the packets a second time."""
    scans: list[str] = []

    def counted(container: object, *args: object, **kwargs: object) -> object:
        scans.append("scan")
        return scan_timeline(container, *args, **kwargs)

    monkeypatch.setattr(probing, "scan_timeline", counted)
    monkeypatch.setattr(decode, "scan_timeline", counted)
    path = running.media.videos[0]
    embedded = running.client.embed_video(video=path.read_bytes())
    assert len(embedded.embeddings) == CLIPS_PER_VIDEO
    assert scans == ["scan"]
    running.client.search_by_video(path=path.name, top_k=1)
    assert scans == ["scan", "scan"]


def test_zero_shot_labels_are_clip_style_probabilities(running: Running, repository: Repository,
                                                       reference: dict[str, np.ndarray]) -> None:
    labels = ["a red circle", "a blue square", "a green cross"]
    path = running.media.videos[0]
    templates = ["a video of {}.", "{}"]
    ranked = running.client.classify(path=path.name, labels=labels, templates=templates, top_k=3)
    text = _text(repository, [t.replace("{}", label) for label in labels for t in ("a video of {}.", "{}")])
    per_label = text.reshape(3, 2, -1).mean(axis=1)
    per_label /= np.linalg.norm(per_label, axis=1, keepdims=True)
    video = np.mean([reference[f"{path.name}#{i:05d}"] for i in range(CLIPS_PER_VIDEO)], axis=0)
    logits = 100 * per_label @ (video / np.linalg.norm(video))
    expected = np.exp(logits - logits.max()) / np.exp(logits - logits.max()).sum()
    assert dict(ranked) == pytest.approx(dict(zip(labels, expected.tolist(), strict=True)), abs=1e-3)
    assert [label for label, _ in ranked] == [labels[i] for i in np.argsort(-expected)]


def test_the_classifier_answers_without_labels(running: Running, repository: Repository) -> None:
    path = running.media.videos[0]
    ranked = running.client.classify(path=path.name, top_k=7)
    spec = read_repository(RuntimeConfig(model_repository=repository.path)).classifier
    assert spec is not None
    assert spec.preprocess is not None
    clips = segment(probe(path), ClipSpec(SCENE_S))
    tensors = np.stack([tensor for _, tensor in read_clips(path, clips, spec.preprocess)])
    with torch.no_grad():
        expected = torch.softmax(repository.videomae(torch.from_numpy(tensors)), dim=-1).mean(0).numpy()
    assert dict(ranked) == pytest.approx({f"class {i}": float(p) for i, p in enumerate(expected)}, abs=1e-4)
    assert [s for _, s in ranked] == sorted((s for _, s in ranked), reverse=True)


def test_ingest_reports_each_file_and_adds_the_good_ones(running: Running) -> None:
    client = running.client
    outcomes = client.ingest(["clip-0.mp4", "missing.mp4", "not-a-video.mp4"])
    assert [(o.video_id, o.error_code) for o in outcomes] == [
        ("clip-0.mp4", "ALREADY_EXISTS"), ("", "NOT_FOUND"), ("not-a-video.mp4", "INVALID_ARGUMENT")]
    assert "set replace to re-ingest" in outcomes[0].error
    assert "not a readable video" in outcomes[2].error
    replaced = client.ingest(["clip-0.mp4"], tags=["news"], replace=True)
    assert (replaced[0].clips, replaced[0].error_code) == (CLIPS_PER_VIDEO, "")
    stats = client.index_stats()
    assert (stats.clips, stats.videos, stats.dim, stats.model) == (9, 3, 32, "tiny-viclip")
    assert (stats.index_type, stats.runtime) == ("Flat", "embedded")


def test_changes_are_saved_and_a_restarted_server_has_them(repository: Repository, media: Media,
                                                           tmp_path: Path) -> None:
    settings = settings_for(repository, media, tmp_path / "index")
    with SearchServer(settings) as server, SearchClient(server.address) as client:
        client.ingest(list(VIDEOS))
        assert client.delete_video("clip-1.mp4") == CLIPS_PER_VIDEO
        with pytest.raises(grpc.RpcError) as missing:
            client.delete_video("clip-1.mp4")
        assert missing.value.code() == grpc.StatusCode.NOT_FOUND
        before = client.search(QUERY, top_k=9)
    assert len(before.hits) == 6
    with SearchServer(settings) as server, SearchClient(server.address) as client:
        after = client.search(QUERY, top_k=9)
        assert client.index_stats().index_version == "snapshot-000001+4", "three adds and a delete"
    assert [(h.clip_id, h.score) for h in after.hits] == [(h.clip_id, h.score) for h in before.hits]


@pytest.fixture
def unsaved(repository: Repository, media: Media, tmp_path: Path) -> Iterator[SearchClient]:
    settings = settings_for(repository, media, tmp_path / "index", persist_changes=False)
    with SearchServer(settings) as server, SearchClient(server.address) as client:
        yield client


def test_without_persistence_the_version_counts_unsaved_changes(unsaved: SearchClient,
                                                                tmp_path: Path) -> None:
    unsaved.ingest(["clip-0.mp4"])
    unsaved.ingest(["clip-1.mp4"])
    assert unsaved.index_stats().index_version == "new+2"
    assert not (tmp_path / "index").exists()
