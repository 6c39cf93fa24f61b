"""A standalone Milvus server on this machine, for development, tests and benchmarks.

The `milvus` wheel on PyPI bundles Milvus 2.3 standalone (embedded etcd, RocksDB storage) as
LZMA-compressed binaries and a `milvus.yaml` template. `LocalMilvus` unpacks the binaries once into a
cache folder, writes the configuration with every path inside its data folder, and runs the server
through `loopback` (a private network namespace with relays on 127.0.0.1), because Milvus 2.3 would
otherwise listen on every interface. Milvus ignores SIGTERM for a long time, so `stop` kills the
whole process group and waits for it.

Milvus searches every sealed segment of a collection and merges their results, paying a fixed cost per
segment, so a collection of many small segments answers one query slower than the same rows in a few
large ones (measured: docs/milvus.md).
The template seals a segment at 23% of 512 MB by Milvus's own row-size estimate (some 30,000 rows of
512-d clips), or at 32 binlog files (one per insert call of up to 16 MB), whichever comes first.
`segment_mb` raises the size, seals at the full size and allows a binlog file per MB, as a cluster's
`dataCoord.segment` settings would be raised for a large index.
"""

from __future__ import annotations

import contextlib
import json
import lzma
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from importlib import resources
from pathlib import Path
from types import TracebackType

from vidsearch.errors import MissingDependencyError, VidsearchError

_TEMPLATE_FIELD = re.compile(r"\{\{\s*(\w+)\s*(?:\(\w+\))?\s*(?::\s*([^}]*?))?\s*\}\}")
_LOG_TAIL_BYTES = 4000
_SEGMENT_BLOCK = re.compile(r"^dataCoord:\n(?:  .*\n)*?  segment:\n(?P<body>(?:    .*\n)+)", re.MULTILINE)


class LocalMilvusError(VidsearchError):
    """The local Milvus server could not be started (its log tail is in the message)."""


def _milvus_package() -> tuple[Path, str]:
    """The `milvus` wheel's data folder and version."""
    try:
        import milvus
    except ImportError as exc:
        raise MissingDependencyError(
            "a local Milvus server needs the `milvus` wheel: pip install milvus"
        ) from exc
    return Path(str(resources.files("milvus"))) / "data", str(milvus.__version__)


def cache_root() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "vidsearch"


def unpacked_binaries() -> Path:
    """The folder of the unpacked Milvus binary and libraries, unpacked on first use (atomically)."""
    data, version = _milvus_package()
    target = cache_root() / f"milvus-{version}" / "bin"
    if (target / "milvus").is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".bin-", dir=target.parent))
    for packed in sorted((data / "bin").glob("*.lzma")):
        unpacked = staging / packed.name.removesuffix(".lzma")
        with lzma.open(packed) as source, open(unpacked, "wb") as sink:
            shutil.copyfileobj(source, sink, 1 << 20)
        unpacked.chmod(0o755)
    try:
        os.rename(staging, target)
    except OSError:  # another process unpacked it first
        shutil.rmtree(staging, ignore_errors=True)
    return target


def write_config(data_dir: Path, segment_mb: int | None = None) -> Path:
    """`data_dir/configs/milvus.yaml` from the wheel's template, every path inside `data_dir`.

    `segment_mb`, when given, is the size at which a growing segment is sealed, with a binlog file
    allowed per MB so that the size, not the file count, seals it (the template's otherwise: 23% of
    512 MB or 32 files).
    """
    package, _ = _milvus_package()
    values = {
        "etcd_log_path": data_dir / "logs" / "etcd.log",
        "etcd_log_level": "warn",
        "etcd_data_dir": data_dir / "data" / "etcd",
        "local_storage_dir": data_dir / "data",
        "rocksmq_data_dir": data_dir / "data" / "rocksmq",
        "system_log_path": data_dir / "logs",
    }

    def fill(match: re.Match[str]) -> str:
        key, default = match.group(1), match.group(2)
        if key in values:
            return str(values[key])
        return (default or "").strip()

    text = _TEMPLATE_FIELD.sub(fill, (package / "config.yaml.template").read_text())
    if segment_mb is not None:
        text = _set_segment_options(
            text, {"maxSize": segment_mb, "sealProportion": 1.0, "maxBinlogFileNumber": max(32, segment_mb)}
        )
    configs = data_dir / "configs"
    for folder in (configs, data_dir / "logs", data_dir / "run"):
        folder.mkdir(parents=True, exist_ok=True)
    (configs / "milvus.yaml").write_text(text)
    shutil.copyfile(package / "glog.conf", configs / "glog.conf")
    return configs / "milvus.yaml"


def _set_segment_options(text: str, options: dict[str, object]) -> str:
    """The config text with each `dataCoord.segment.<key>` of `options` set to its value."""
    block = _SEGMENT_BLOCK.search(text)
    if block is None:
        raise LocalMilvusError("the Milvus config template has no dataCoord.segment section")
    body = block.group("body")
    for key, value in options.items():
        body, found = re.subn(rf"^(    {key}: )[^\s#]+", rf"\g<1>{value}", body, flags=re.MULTILINE)
        if found != 1:
            raise LocalMilvusError(f"the Milvus config template has no dataCoord.segment.{key}")
    return text[: block.start("body")] + body + text[block.end("body") :]


class LocalMilvus:
    """One standalone Milvus server, reachable at `uri` (127.0.0.1) once `start` returns.

    `restart` keeps the data and the outer ports, so a client's URI stays valid across it.
    `segment_mb` is the segment size of `write_config` (the template's when None).
    """

    def __init__(
        self, data_dir: Path, startup_timeout_s: float = 180.0, segment_mb: int | None = None
    ) -> None:
        if segment_mb is not None and segment_mb < 1:
            raise ValueError(f"segment_mb must be at least 1, got {segment_mb}")
        self.data_dir = data_dir
        self.startup_timeout_s = startup_timeout_s
        self.segment_mb = segment_mb
        self._process: subprocess.Popen[bytes] | None = None
        self._ports: dict[str, int] = {}

    @property
    def uri(self) -> str:
        return f"http://127.0.0.1:{self._ports['grpc']}"

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self) -> None:
        binaries = unpacked_binaries()
        write_config(self.data_dir, self.segment_mb)
        command = [
            sys.executable, "-m", "vidsearch.index.milvus.loopback",
            "--bin", str(binaries), "--data", str(self.data_dir),
            "--grpc-port", str(self._ports.get("grpc", 0)), "--http-port", str(self._ports.get("http", 0)),
        ]  # fmt: skip
        log = open(self.data_dir / "logs" / "loopback.log", "ab")  # noqa: SIM115 - the child holds it
        with log:
            self._process = subprocess.Popen(
                command, stdout=subprocess.PIPE, stderr=log, stdin=subprocess.PIPE, start_new_session=True
            )  # the launcher stops Milvus when this stdin pipe closes: when this process dies unstopped
        try:
            self._await_ports()
            self._await_health()
        except BaseException:
            self.stop()
            raise

    def _await_ports(self) -> None:
        assert self._process is not None
        assert self._process.stdout is not None
        line = self._process.stdout.readline()
        if not line:
            self._process.wait()
            raise LocalMilvusError(
                f"the Milvus launcher exited ({self._process.returncode}): {self.log_tail()}"
            )
        self._ports = {name: int(port) for name, port in json.loads(line).items()}

    def _await_health(self) -> None:
        deadline = time.monotonic() + self.startup_timeout_s
        url = f"http://127.0.0.1:{self._ports['http']}/healthz"
        while time.monotonic() < deadline:
            if not self.running:
                raise LocalMilvusError(f"Milvus exited while starting: {self.log_tail()}")
            try:
                with urllib.request.urlopen(url, timeout=2) as reply:
                    if b"OK" in reply.read():
                        return
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            time.sleep(0.25)
        raise LocalMilvusError(f"Milvus not healthy after {self.startup_timeout_s:.0f} s: {self.log_tail()}")

    def processes(self) -> list[Path]:
        """The /proc folders of the launcher and Milvus (empty when stopped)."""
        return [] if self._process is None else group_members(self._process.pid)

    def memory_mb(self) -> float:
        """Resident anonymous memory of the launcher and Milvus together, in MiB (0 when stopped)."""
        total_kb = 0
        for proc in self.processes():
            try:
                lines = (proc / "status").read_text().splitlines()
            except OSError:
                continue
            total_kb += sum(int(line.split()[1]) for line in lines if line.startswith("RssAnon:"))
        return total_kb / 1024

    def log_tail(self) -> str:
        """The end of the server's and the launcher's logs, for error messages."""
        parts = []
        for name in ("loopback.log", "milvus-stderr.log", "milvus-stdout.log"):
            path = self.data_dir / "logs" / name
            if path.is_file():
                with open(path, "rb") as handle:
                    handle.seek(max(0, path.stat().st_size - _LOG_TAIL_BYTES))
                    parts.append(f"--- {name}\n{handle.read().decode(errors='replace')}")
        return "\n".join(parts) or "(no log)"

    def stop(self) -> None:
        """Kill the launcher and Milvus (one process group) and wait for them; idempotent."""
        process, self._process = self._process, None
        if process is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()
        for pipe in (process.stdin, process.stdout):
            if pipe is not None:
                pipe.close()
        _await_group_gone(process.pid)

    def restart(self) -> None:
        self.stop()
        self.start()

    def __enter__(self) -> LocalMilvus:
        self.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.stop()


def group_members(group: int) -> list[Path]:
    """The /proc folders of the running processes of a process group (zombies hold nothing: left out)."""
    members = []
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            fields = (proc / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == group and fields[0] != "Z":
            members.append(proc)
    return members


def _await_group_gone(group: int, timeout_s: float = 30.0) -> None:
    """Wait until no process of the group is left (Milvus itself is the launcher's child)."""
    deadline = time.monotonic() + timeout_s
    while group_members(group):
        if time.monotonic() > deadline:
            raise LocalMilvusError(f"processes of group {group} still alive {timeout_s:.0f} s after SIGKILL")
        time.sleep(0.05)
