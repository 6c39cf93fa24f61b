"""The HTTP/JSON API on a real server over 127.0.0.1: every route, range requests, merged moments, auth,
and hostile input — each refusal a 4xx with a JSON error body, never a 500."""

import io
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from PIL import Image

from vidsearch.serving import SearchServer
from vidsearch.serving.http.signing import segment

from ..runtime.models import SCENE_S, Repository
from .conftest import CLIPS_PER_VIDEO, VIDEOS, Media, Running, settings_for

TOKEN = "http-s3cret"
ORIGIN = "http://other.example"


@pytest.fixture(scope="module")
def http(running: Running) -> Iterator[httpx.Client]:
    assert running.server.http is not None
    with httpx.Client(base_url=running.server.http.url, timeout=30) as client:
        yield client


def _error(response: httpx.Response, status: int) -> str:
    """The message of a JSON error answer with this status (and its code shared with gRPC)."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    problem = response.json()["error"]
    assert problem["status"] == status
    assert problem["code"]
    return str(problem["message"])


def test_search_answers_what_grpc_answers_with_links_to_thumbnails_and_media(http: httpx.Client,
                                                                             running: Running) -> None:
    answer = http.post("/v1/search", json={"query": "a red circle moves to the left", "top_k": 5}).json()
    grpc_hits = running.client.search("a red circle moves to the left", top_k=5).hits
    assert [(h["clip_id"], round(h["score"], 5)) for h in answer["hits"]] == [
        (h.clip_id, round(h.score, 5)) for h in grpc_hits]
    first = answer["hits"][0]
    assert first["thumbnail_url"] == f"/v1/clips/{segment(first['clip_id'])}/thumbnail"
    assert first["media_url"] == f"/v1/videos/{segment(first['video_id'])}/media"
    assert first["clip_ids"] == [first["clip_id"]]
    assert answer["videos"] == []
    assert answer["model"]
    assert answer["index_version"]
    assert answer["timings_ms"]["total"] > 0


def test_merge_moments_turns_touching_clips_of_a_video_into_one_moment(http: httpx.Client,
                                                                      running: Running) -> None:
    everything = CLIPS_PER_VIDEO * len(VIDEOS)
    body = {"query": "a ball", "top_k": everything, "merge_moments": True}
    moments = http.post("/v1/search", json=body).json()["hits"]
    plain = running.client.search("a ball", top_k=everything).hits
    assert sorted(m["video_id"] for m in moments) == sorted(VIDEOS)  # three clips each, all touching
    for moment in moments:
        clips = [h for h in plain if h.video_id == moment["video_id"]]
        assert (moment["start_s"], moment["end_s"]) == (0.0, pytest.approx(CLIPS_PER_VIDEO * SCENE_S))
        assert moment["clip_ids"] == [h.clip_id for h in sorted(clips, key=lambda h: h.start_s)]
        assert moment["score"] == pytest.approx(max(h.score for h in clips))
        assert moment["clip_id"] == max(clips, key=lambda h: h.score).clip_id
    assert [m["score"] for m in moments] == sorted((m["score"] for m in moments), reverse=True)
    merged = running.client.search("a ball", top_k=everything, merge_moments=True).hits  # the gRPC face
    expected = [(m["clip_id"], tuple(m["clip_ids"])) for m in moments]
    assert [(h.clip_id, h.clip_ids) for h in merged] == expected


def test_grouped_answers_come_as_videos(http: httpx.Client) -> None:
    answer = http.post("/v1/search", json={"query": "a ball", "top_k": 2, "group_by_video": True,
                                           "tags": ["news"]}).json()
    assert answer["hits"] == []
    assert [v["video_id"] for v in answer["videos"]]
    assert {v["video_id"] for v in answer["videos"]} <= set(
        VIDEOS[:2])
    assert all(h["video_id"] == v["video_id"] for v in answer["videos"] for h in v["hits"])


def test_search_by_an_uploaded_file_and_by_an_indexed_clip(http: httpx.Client, media: Media) -> None:
    data = media.videos[1].read_bytes()
    upload = http.post("/v1/search-by-video", files={"file": ("mine.mp4", data, "video/mp4")},
                       data={"options": '{"top_k": 3}'})
    assert upload.status_code == 200, upload.text
    assert len(upload.json()["hits"]) == 3
    similar = http.post("/v1/search-by-video", json={"clip_id": f"{VIDEOS[2]}#00001", "top_k": 3})
    assert similar.status_code == 200, similar.text
    similar = similar.json()
    assert similar["hits"][0]["clip_id"] == f"{VIDEOS[2]}#00001"  # a clip is most like itself
    assert similar["hits"][0]["score"] == pytest.approx(1.0, abs=1e-3)


def test_stats_ingest_and_delete(http: httpx.Client, running: Running) -> None:
    stats = http.get("/v1/stats").json()
    assert (stats["clips"], stats["videos"]) == (len(VIDEOS) * CLIPS_PER_VIDEO, len(VIDEOS))
    assert (stats["runtime"], stats["runtime_device"], stats["runtime_dtype"], stats["runtime_reason"]) == (
        "embedded", "cpu", "float32", "configured (runtime embedded)")
    assert stats["video_decoding"] == "pyav"
    done = http.post("/v1/ingest", json={"items": [{"path": VIDEOS[0], "video_id": "copy", "tags": ["x"]},
                                                   {"path": "missing.mp4"}]}).json()
    assert [(r["video_id"], r["clips"], r["error_code"]) for r in done["results"]] == [
        ("copy", CLIPS_PER_VIDEO, ""), ("", 0, "NOT_FOUND")]
    assert http.get("/v1/stats").json()["videos"] == 4
    deleted = http.delete("/v1/videos/copy").json()
    assert deleted["clips_deleted"] == CLIPS_PER_VIDEO
    assert deleted["index_version"]
    assert "not in the index" in _error(http.delete("/v1/videos/copy"), 404)


def test_media_is_the_file_with_range_requests(http: httpx.Client, media: Media) -> None:
    content = media.videos[0].read_bytes()
    url = f"/v1/videos/{segment(VIDEOS[0])}/media"
    whole = http.get(url)
    assert (whole.status_code, whole.headers["content-type"], whole.content) == (200, "video/mp4", content)
    assert whole.headers["accept-ranges"] == "bytes"
    part = http.get(url, headers={"Range": "bytes=100-199"})
    assert (part.status_code, part.content) == (206, content[100:200])
    assert part.headers["content-range"] == f"bytes 100-199/{len(content)}"
    tail = http.get(url, headers={"Range": "bytes=-10"})
    assert (tail.status_code, tail.content) == (206, content[-10:])
    rest = http.get(url, headers={"Range": f"bytes={len(content) - 5}-"})
    assert rest.content == content[-5:]
    past = http.get(url, headers={"Range": f"bytes={len(content)}-"})
    assert "past the end" in _error(past, 416)
    assert past.headers["content-range"] == f"bytes */{len(content)}"
    assert "not in the index" in _error(http.get("/v1/videos/nothing.mp4/media"), 404)


def test_thumbnail_is_a_strip_of_frames_kept_next_to_the_index(http: httpx.Client, running: Running) -> None:
    url = f"/v1/clips/{segment(VIDEOS[1] + '#00002')}/thumbnail"
    first = http.get(url)
    assert (first.status_code, first.headers["content-type"]) == (200, "image/jpeg")
    with Image.open(io.BytesIO(first.content)) as image:
        assert image.format == "JPEG"
        assert image.size == (4 * 90, 90)
    index = running.server.settings.index
    kept = list(index.with_name(index.name + ".thumbnails").glob("*.jpg"))
    assert kept
    assert any(p.read_bytes() == first.content for p in kept)
    assert http.get(url).content == first.content
    assert "not in the index" in _error(http.get("/v1/clips/nope%2300000/thumbnail"), 404)


@pytest.mark.parametrize(("body", "status", "words"), [
    (b"{not json", 400, "JSON"),
    (b'{"query": "a", "top_k": 5, "colour": "red"}', 400, "colour"),
    (b'{"query": "a", "top_k": 0}', 400, "top_k"),
    (b'{"query": "a", "top_k": 99999999999}', 400, "top_k"),
    (b'{"query": "   "}', 400, "empty"),
    (b'{"query": "a", "page_token": "garbage!"}', 400, "token"),
    (b'{"query": "a", "video_ids": [""]}', 400, "non-empty"),
    (b'["a list"]', 400, "invalid"),
    (b'{"query": "' + b"x" * (3 << 20) + b'"}', 413, "exceeds"),
])
def test_bad_search_bodies_are_4xx_json(http: httpx.Client, body: bytes, status: int, words: str) -> None:
    response = http.post("/v1/search", content=body, headers={"Content-Type": "application/json"})
    assert words.lower() in _error(response, status).lower()


def test_hostile_paths_uploads_and_routes_are_4xx_json(http: httpx.Client, media: Media) -> None:
    outside = http.post("/v1/ingest", json={"items": [{"path": str(media.outside)}]})
    assert "outside" in _error(outside, 403)
    assert "'..'" in _error(http.post("/v1/ingest", json={"items": [{"path": "../x.mp4"}]}), 403)
    assert "'..'" in _error(http.post("/v1/ingest", json={"items": [{"path": "a/../../etc/passwd"}]}), 403)
    assert "escape.mp4" in _error(http.post("/v1/ingest", json={"items": [{"path": "escape.mp4"}]}), 403)
    assert "items" in _error(http.post("/v1/ingest", json={"item": []}), 400)
    too_big = http.post("/v1/search-by-video", files={"file": ("big.mp4", b"0" * (2 << 20), "video/mp4")})
    assert "exceeds" in _error(too_big, 413)
    junk = {"file": ("x.mp4", b"not a video at all", "video/mp4")}
    not_video = http.post("/v1/search-by-video", files=junk)
    _error(not_video, 400)
    _error(http.post("/v1/search-by-video", files={"other": ("x.mp4", b"x", "video/mp4")}), 400)
    _error(http.post("/v1/search-by-video", json={"clip_id": "nope#0"}), 404)
    _error(http.post("/v1/search-by-video", json={"clip_id": "x", "path": "/etc/passwd"}), 400)
    _error(http.get("/v1/nothing-here"), 404)
    _error(http.put("/v1/search", json={}), 405)


def test_openapi_document_lists_the_contract(http: httpx.Client) -> None:
    paths = http.get("/openapi.json").json()["paths"]
    assert {"/v1/search", "/v1/search-by-video", "/v1/stats", "/v1/ingest", "/v1/videos/{video_id}",
            "/v1/videos/{video_id}/media", "/v1/clips/{clip_id}/thumbnail"} <= set(paths)
    assert http.get("/").headers["content-type"].startswith("text/html")
    assert http.get("/static/app.js").status_code == 200


@pytest.fixture(scope="module")
def guarded(repository: Repository, media: Media, tmp_path_factory: pytest.TempPathFactory
            ) -> Iterator[tuple[SearchServer, httpx.Client]]:
    """A server with a bearer token and one allowed CORS origin, clip-0 ingested."""
    settings = settings_for(repository, media, tmp_path_factory.mktemp("guarded") / "index",
                            auth={"tokens": [TOKEN]}, http={"cors_origins": [ORIGIN]})
    with SearchServer(settings) as server:
        assert server.http is not None
        with httpx.Client(base_url=server.http.url, timeout=30) as client:
            done = client.post("/v1/ingest", json={"items": [{"path": VIDEOS[0]}]},
                               headers={"Authorization": f"Bearer {TOKEN}"})
            assert done.json()["clips_added"] == CLIPS_PER_VIDEO
            yield server, client


def test_bearer_token_is_required_and_signed_links_work_without_it(
        guarded: tuple[SearchServer, httpx.Client]) -> None:
    _, client = guarded
    assert "bearer token" in _error(client.get("/v1/stats"), 401)
    assert "bearer token" in _error(client.get("/v1/stats", headers={"Authorization": "Bearer wrong"}), 401)
    assert client.get("/").status_code == 200  # the page asks for the token itself
    ok = {"Authorization": f"bearer {TOKEN}"}
    hit = client.post("/v1/search", json={"query": "a ball", "top_k": 1}, headers=ok).json()["hits"][0]
    assert "sig=" in hit["media_url"]
    assert "sig=" in hit["thumbnail_url"]
    assert client.get(hit["media_url"], headers={"Range": "bytes=0-9"}).status_code == 206
    assert client.get(hit["thumbnail_url"]).headers["content-type"] == "image/jpeg"
    plain = hit["media_url"].split("?")[0]
    _error(client.get(plain), 401)
    _error(client.get(hit["media_url"].replace("sig=", "sig=0")), 401)
    number = int(hit["clip_id"].rsplit("#", 1)[1])
    sibling = segment(f"{VIDEOS[0]}#{(number + 1) % CLIPS_PER_VIDEO:05d}")
    other = f"/v1/clips/{sibling}/thumbnail?" + hit["thumbnail_url"].split("?")[1]
    _error(client.get(other), 401)  # a signature is good for its own path only


def test_cors_only_for_configured_origins(guarded: tuple[SearchServer, httpx.Client],
                                          http: httpx.Client) -> None:
    _, client = guarded
    preflight = {"Origin": ORIGIN, "Access-Control-Request-Method": "POST",
                 "Access-Control-Request-Headers": "authorization,content-type"}
    allowed = client.options("/v1/search", headers=preflight)
    assert allowed.headers["access-control-allow-origin"] == ORIGIN
    refused = client.options("/v1/search", headers={**preflight, "Origin": "http://evil.example"})
    assert "access-control-allow-origin" not in refused.headers
    plain = http.get("/v1/stats", headers={"Origin": ORIGIN})
    assert "access-control-allow-origin" not in plain.headers  # no CORS unless configured


def test_http_can_be_turned_off(repository: Repository, media: Media,
                                                          tmp_path: Path) -> None:
    settings = settings_for(repository, media, tmp_path / "index", http={"enabled": False})
    with SearchServer(settings) as server:
        assert server.http is None
