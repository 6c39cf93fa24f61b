"""Settings precedence and validation, and the allowed-roots rule, without a server."""

import json
import re
import tomllib
from pathlib import Path

import pytest

from vidsearch.errors import ConfigError, NotFoundError, PathNotAllowedError, RequestError
from vidsearch.index.milvus import MilvusIndexSpec, MilvusTarget
from vidsearch.serving.paths import AllowedRoots
from vidsearch.serving.settings import load_settings


def test_flags_beat_the_environment_which_beats_the_file(tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "server.toml"
    config.write_text('port = 6000\nhost = "0.0.0.0"\n[runtime]\nkind = "triton"\nmax_delay_ms = 2.0\n'
                      "[limits]\nmax_concurrent_rpcs = 3\n")
    monkeypatch.setenv("VIDSEARCH_PORT", "7000")
    monkeypatch.setenv("VIDSEARCH_RUNTIME__MAX_DELAY_MS", "5")
    settings = load_settings(config, port=None, runtime={"triton_url": "triton:8001"})
    assert (settings.port, settings.host) == (7000, "0.0.0.0")
    assert (settings.runtime.kind, settings.runtime.max_delay_ms, settings.runtime.triton_url) == (
        "triton", 5.0, "triton:8001")
    assert settings.limits.max_concurrent_rpcs == 3
    assert settings.handler_threads == 7
    assert load_settings(config, port=8000).port == 8000
    as_json = tmp_path / "server.json"
    as_json.write_text(json.dumps({"index": "elsewhere", "video": {"clip_length_s": 4}}))
    from_json = load_settings(as_json)
    assert (from_json.index, from_json.video.clip_length_s) == (Path("elsewhere"), 4.0)


@pytest.mark.parametrize(("values", "message"), [
    ({"limits": {"max_concurrent_rpcs": 0}}, "limits.max_concurrent_rpcs: Input should be greater than"),
    ({"runtime": {"kind": "tensorflow"}},
     "runtime.kind: Input should be 'auto', 'embedded', 'torch' or 'triton'"),
    ({"runtime": {"gpu": "required"}}, 'runtime "embedded" runs on the CPU, so gpu = "required" cannot hold'),
    ({"tls": {"cert": "cert.pem"}}, "tls: give both cert and key, or neither"),
    ({"allowed_roots": ["/no/such/dir"]}, "allowed root /no/such/dir is not a directory"),
    ({"prot": 1}, "prot: Extra inputs are not permitted"),
    ({"index": "milvus://host:19530/"}, "expected milvus://HOST:PORT/[DATABASE/]COLLECTION"),
    ({"index": "milvus://host/a/b/c"}, "expected milvus://HOST:PORT/[DATABASE/]COLLECTION"),
    ({"index": "milvus://host/no-dashes"}, "letters, digits and underscores"),
    ({"milvus": {"concurrent_searches": 0}}, "milvus.concurrent_searches: Input should be greater than"),
    ({"milvus": {"consistency": "Weak"}}, "milvus.consistency: Input should be 'Strong', 'Session'"),
    ({"milvus": {"index_type": "IVF"}}, "milvus.index_type: Input should be 'FLAT', 'HNSW'"),
    ({"milvus": {"index_type": "IVF_SQ8", "index_params": {"nlists": 64}}},
     "IVF_SQ8 has no build parameter 'nlists': it takes nlist"),
    ({"milvus": {"index_params": {"nlist": 64}}}, "HNSW has no build parameter 'nlist'"),
    ({"milvus": {"index_type": "IVF_FLAT", "search_params": {"nprobe": "8"}}},
     "IVF_FLAT search parameter nprobe is a whole number, got '8'"),
    ({"milvus": {"index_type": "IVF_FLAT", "index_params": {"nlist": True}}},
     "milvus.index_params.nlist.int: Input should be a valid integer"),
])  # fmt: skip
def test_bad_settings_say_what_is_wrong(values: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match="invalid settings: .*" + re.escape(message)):
        load_settings(None, **values)


def test_index_is_a_directory_or_a_milvus_collection(monkeypatch: pytest.MonkeyPatch) -> None:
    assert load_settings(None, index="milvus").index == Path("milvus")
    monkeypatch.setenv("VIDSEARCH_MILVUS_TOKEN", "user:secret")
    settings = load_settings(None, index="milvus://db.example:19530/clips")
    assert settings.index == "milvus://db.example:19530/clips"
    assert settings.milvus_token is not None
    assert settings.milvus_token.get_secret_value() == "user:secret"
    assert "secret" not in repr(settings)


def test_the_milvus_section_reaches_the_target(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "server.toml"
    config.write_text('index = "milvus://db.example/clips"\n[milvus]\nconcurrent_searches = 8\n'
                      'consistency = "Bounded"\ntimeout_s = 3\n')
    defaults = load_settings(None, index="milvus://db.example/clips").index_location
    assert defaults == MilvusTarget(uri="http://db.example:19530", collection="clips"), "its defaults"
    monkeypatch.setenv("VIDSEARCH_MILVUS_TOKEN", "user:secret")
    monkeypatch.setenv("VIDSEARCH_MILVUS__TIMEOUT_S", "2.5")
    target = load_settings(config, milvus={"concurrent_searches": 2}).index_location
    assert isinstance(target, MilvusTarget)
    assert (target.uri, target.collection) == ("http://db.example:19530", "clips")
    assert target.token == "user:secret"
    assert (target.concurrent_searches, target.consistency, target.timeout_s) == (2, "Bounded", 2.5)
    assert load_settings(None, index="ix").index_location == Path("ix")


def test_the_milvus_section_names_the_index_of_a_collection_the_server_creates(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert load_settings(None).milvus.new_index is None, "nothing configured: the backend's default"
    only_params = load_settings(None, milvus={"search_params": {"ef": 256}}).milvus.new_index
    assert only_params == MilvusIndexSpec("HNSW", {}, {"ef": 256})
    config = tmp_path / "server.toml"
    config.write_text('[milvus]\nindex_type = "IVF_SQ8"\nindex_params = {nlist = 4096}\n'
                      'search_params = {nprobe = 16}\n')
    from_file = load_settings(config).milvus.new_index
    assert from_file == MilvusIndexSpec("IVF_SQ8", {"nlist": 4096}, {"nprobe": 16})
    monkeypatch.setenv("VIDSEARCH_MILVUS__SEARCH_PARAMS", '{"nprobe": 64}')
    new_index = load_settings(config, milvus={"index_params": {"nlist": 1024}}).milvus.new_index
    assert new_index == MilvusIndexSpec("IVF_SQ8", {"nlist": 1024}, {"nprobe": 64}), "file < env < flags"
    merged = load_settings(config, milvus={"index_type": "IVF_FLAT", "search_params": {"nprobe": 8}})
    assert merged.milvus.new_index == MilvusIndexSpec("IVF_FLAT", {"nlist": 4096}, {"nprobe": 8}), \
        "parameters merge key by key"


def test_the_settings_file_in_the_docs_is_valid() -> None:
    """docs/serving.md's example, less the paths that exist only on a user's machine, loads as it is."""
    page = (Path(__file__).resolve().parents[2] / "docs" / "serving.md").read_text()
    example = tomllib.loads(page.split("```toml\n", 1)[1].split("```", 1)[0])
    for on_the_users_machine in ("tls", "allowed_roots"):
        assert example.pop(on_the_users_machine)
    settings = load_settings(None, **example)
    assert (settings.runtime.cache_bytes, settings.milvus.concurrent_searches) == (32 << 20, 4)


def test_tokens_come_from_the_settings_and_the_token_file(tmp_path: Path) -> None:
    tokens = tmp_path / "tokens"
    tokens.write_text("# comment\n\n  file-token  \n")
    settings = load_settings(None, auth={"tokens": ["inline"], "token_file": tokens})
    assert settings.auth.all_tokens() == ("inline", "file-token")
    assert "inline" not in repr(settings)  # secrets stay out of logs


@pytest.fixture
def roots(tmp_path: Path) -> tuple[AllowedRoots, Path, Path]:
    inside, outside = tmp_path / "inside", tmp_path / "outside"
    (inside / "sub").mkdir(parents=True)
    outside.mkdir()
    (inside / "sub" / "a.mp4").write_bytes(b"x")
    (outside / "b.mp4").write_bytes(b"x")
    (inside / "link-out.mp4").symlink_to(outside / "b.mp4")
    (inside / "link-in.mp4").symlink_to(inside / "sub" / "a.mp4")
    (inside / "dir-out").symlink_to(outside)
    return AllowedRoots([inside]), inside, outside


def test_paths_inside_the_roots_resolve_to_the_real_file(roots: tuple[AllowedRoots, Path, Path]) -> None:
    allowed, inside, _ = roots
    real = (inside / "sub" / "a.mp4").resolve()
    assert allowed.check("sub/a.mp4").path == real
    assert allowed.check(str(inside / "sub" / "a.mp4")).relative == "sub/a.mp4"
    assert allowed.check("link-in.mp4").path == real  # a symlink that stays inside is fine


@pytest.mark.parametrize(("raw", "error", "message"), [
    ("../outside/b.mp4", PathNotAllowedError, r"'\.\.' is not allowed"),
    ("sub/../sub/a.mp4", PathNotAllowedError, r"'\.\.' is not allowed"),
    ("{outside}/b.mp4", PathNotAllowedError, "outside the server's allowed roots"),
    ("link-out.mp4", PathNotAllowedError, "outside the server's allowed roots"),
    ("dir-out/b.mp4", PathNotAllowedError, "outside the server's allowed roots"),
    ("{outside}/missing.mp4", PathNotAllowedError, "outside"),  # existence is not revealed outside the roots
    ("sub/missing.mp4", NotFoundError, "no such file under the allowed roots"),
    ("sub", RequestError, "not a regular file"),
    ("", RequestError, "empty"),
])  # fmt: skip
def test_paths_outside_the_roots_are_refused(roots: tuple[AllowedRoots, Path, Path], raw: str,
                                             error: type[Exception], message: str) -> None:
    allowed, _, outside = roots
    with pytest.raises(error, match=message):
        allowed.check(raw.format(outside=outside))


def test_without_roots_path_inputs_are_off(tmp_path: Path) -> None:
    with pytest.raises(PathNotAllowedError, match="path inputs are disabled"):
        AllowedRoots([]).check(str(tmp_path))


def test_index_section_gives_location_and_device(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`[index]` with `location` and `device`; a flag's location keeps the file's device, and the
    environment's device beats the file's."""
    config = tmp_path / "server.toml"
    config.write_text('[index]\nlocation = "clips"\ndevice = "gpu"\n')
    settings = load_settings(config)
    assert (settings.index, settings.index_device) == (Path("clips"), "gpu")
    moved = load_settings(config, index={"location": "other"})
    assert (moved.index, moved.index_device) == (Path("other"), "gpu")
    monkeypatch.setenv("VIDSEARCH_INDEX_DEVICE", "cpu")
    assert load_settings(config).index_device == "cpu"
    assert load_settings(None).index_device == "cpu"
    monkeypatch.delenv("VIDSEARCH_INDEX_DEVICE")
    assert load_settings(None).index_device == "auto"
    with pytest.raises(ConfigError, match="index_device: Input should be 'cpu', 'gpu' or 'auto'"):
        load_settings(None, index_device="tpu")
    config.write_text('[index]\nlocation = "clips"\ndevic = "gpu"\n')
    with pytest.raises(ConfigError, match=r"\[index\]: unknown keys \['devic'\]"):
        load_settings(config)
