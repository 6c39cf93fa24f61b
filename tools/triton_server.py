"""A local Triton server for a model repository: the one bundled in the `nvidia-pytriton` wheel.

PyTriton needs numpy < 2, so the server lives in its own virtualenv (`make triton-env` makes
`.venv-triton`); this module only reads that environment and starts `tritonserver` from it as a
subprocess. A development tool, not part of the installed package: the tests start it, and a developer
can serve a `--target cpu` repository on one machine with it; a deployment runs Triton as its own
server (NVIDIA's container) and vidsearch only talks to it (`vidsearch.runtime.triton`).

Two fixes make the bundled Python backend run: the stub (`triton_python_backend_stub`, one per
Python version) is copied into a private backend directory next to the backend library, and
`LD_LIBRARY_PATH` puts the environment's own `libpython3.X.so` first (the stub otherwise links the
system's libpython against the environment's standard library). The environment's `bin` goes first
on `PATH`, so the stub's embedded Python finds the environment's packages (numpy, onnxruntime).

The server binds gRPC to port 0 on 127.0.0.1 and the port it got is read back from the kernel's
socket table, so there is no race for a free port; HTTP and metrics are off. `start` waits for
readiness with a deadline and fails at once, with the server's log, if the process exits.
"""

import json
import logging
import os
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from vidsearch.errors import ExportError, MissingDependencyError

log = logging.getLogger(__name__)

_PROBE = """
import json, pathlib, sys, sysconfig
import pytriton
root = pathlib.Path(pytriton.__file__).parent
print(json.dumps({"root": str(root), "libs": str(root.parent / "nvidia_pytriton.libs"),
                  "libdir": sysconfig.get_config_var("LIBDIR"),
                  "version": f"{sys.version_info.major}.{sys.version_info.minor}"}))
"""
_LISTEN = "0A"  # TCP state LISTEN in /proc/net/tcp*
_POLL_S = 0.2
_LOG_TAIL_LINES = 40


@dataclass(frozen=True)
class TritonInstall:
    """Where the pieces of a PyTriton installation are."""

    env: Path  # the virtualenv holding nvidia-pytriton
    server: Path
    backend_library: Path
    backend_utils: Path
    stub: Path
    bundled_libs: Path
    python_libdir: Path


def find_triton(env: Path) -> TritonInstall:
    """Read the PyTriton installation of the virtualenv `env`; a clear error if there is none."""
    env = env.absolute()  # the server runs in its own work directory
    python = env / "bin" / "python"
    if not python.is_file():
        raise MissingDependencyError(f"no Triton server environment at {env}: run `make triton-env`")
    probe = subprocess.run([str(python), "-c", _PROBE], capture_output=True, text=True, check=False)
    if probe.returncode != 0:
        raise MissingDependencyError(f"{env} has no nvidia-pytriton ({probe.stderr.strip()[-300:]}): "
                                     "run `make triton-env`")
    facts = json.loads(probe.stdout)
    bundle = Path(facts["root"]) / "tritonserver"
    install = TritonInstall(
        env=env,
        server=bundle / "bin" / "tritonserver",
        backend_library=bundle / "backends" / "python" / "libtriton_python.so",
        backend_utils=bundle / "backends" / "python" / "triton_python_backend_utils.py",
        stub=bundle / "python_backend_stubs" / facts["version"] / "triton_python_backend_stub",
        bundled_libs=Path(facts["libs"]),
        python_libdir=Path(facts["libdir"]),
    )
    missing = [p for p in (install.server, install.backend_library, install.stub) if not p.exists()]
    if missing:
        raise MissingDependencyError(f"the PyTriton installation in {env} lacks {missing}")
    return install


def listening_ports(pid: int) -> list[int]:
    """TCP ports a process listens on, from /proc (its socket inodes matched to the socket tables)."""
    inodes = set()
    try:
        descriptors = list(Path(f"/proc/{pid}/fd").iterdir())
    except OSError:  # the process is gone
        return []
    for fd in descriptors:
        try:
            target = os.readlink(fd)
        except OSError:  # closed meanwhile
            continue
        if target.startswith("socket:["):
            inodes.add(target[len("socket:[") : -1])
    ports = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == _LISTEN and fields[9] in inodes:
                ports.append(int(fields[1].rsplit(":", 1)[1], 16))
    return sorted(set(ports))


class TritonServer:
    """`tritonserver` over one model repository, on 127.0.0.1 (gRPC only); a context manager."""

    def __init__(self, install: TritonInstall, repository: Path, *, startup_timeout_s: float = 120.0,
                 extra_args: tuple[str, ...] = ()) -> None:
        self.install = install
        self.repository = repository
        self.startup_timeout_s = startup_timeout_s
        self.extra_args = extra_args
        self.port: int | None = None
        self._process: subprocess.Popen[bytes] | None = None
        self._workdir: Path | None = None

    @property
    def url(self) -> str:
        """The gRPC address, for `tritonclient.grpc.InferenceServerClient(url)`."""
        if self.port is None:
            raise ExportError("the Triton server is not running")
        return f"127.0.0.1:{self.port}"

    @property
    def log_path(self) -> Path:
        if self._workdir is None:
            raise ExportError("the Triton server was never started")
        return self._workdir / "tritonserver.log"

    def log_tail(self) -> str:
        """The server's error lines and the last lines of its log (its option tables are long)."""
        try:
            lines = self.log_path.read_text(errors="replace").splitlines()
        except (OSError, ExportError):
            return ""
        errors = [line for line in lines[:-_LOG_TAIL_LINES] if line.startswith("E")]
        return "\n".join([*errors, *lines[-_LOG_TAIL_LINES:]])

    def _backends(self, workdir: Path) -> Path:
        python_backend = workdir / "backends" / "python"
        python_backend.mkdir(parents=True)
        for source in (self.install.backend_library, self.install.backend_utils):
            (python_backend / source.name).symlink_to(source)
        shutil.copy2(self.install.stub, python_backend / "triton_python_backend_stub")
        return workdir / "backends"

    def _environment(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k not in ("PYTHONHOME", "PYTHONPATH")}
        libraries = [str(self.install.python_libdir), str(self.install.bundled_libs)]
        if env.get("LD_LIBRARY_PATH"):
            libraries.append(env["LD_LIBRARY_PATH"])
        env["LD_LIBRARY_PATH"] = ":".join(libraries)
        env["PATH"] = f"{self.install.env / 'bin'}:{env.get('PATH', '')}"
        return env

    def start(self) -> None:
        if self._process is not None:
            raise ExportError("the Triton server is already running")
        self._workdir = Path(tempfile.mkdtemp(prefix="vidsearch-triton-"))
        command = [
            str(self.install.server), f"--model-repository={self.repository.absolute()}",
            f"--backend-directory={self._backends(self._workdir)}", "--allow-http=false",
            "--allow-metrics=false", "--grpc-address=127.0.0.1", "--grpc-port=0", "--exit-timeout-secs=10",
            *self.extra_args,
        ]
        with self.log_path.open("wb") as log_file:
            self._process = subprocess.Popen(command, stdout=log_file, stderr=subprocess.STDOUT,
                                             env=self._environment(), cwd=self._workdir)
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise
        log.info("Triton server %d ready on %s", self._process.pid, self.url)

    def _wait_ready(self) -> None:
        import tritonclient.grpc as grpcclient
        from tritonclient.utils import InferenceServerException

        assert self._process is not None
        deadline = time.monotonic() + self.startup_timeout_s
        client = None
        try:
            while time.monotonic() < deadline:
                if self._process.poll() is not None:
                    raise ExportError(f"tritonserver exited with status {self._process.returncode} while "
                                      f"starting; its log ends:\n{self.log_tail()}")
                if self.port is None:
                    ports = listening_ports(self._process.pid)
                    self.port = ports[0] if ports else None
                if self.port is not None:
                    client = client or grpcclient.InferenceServerClient(self.url)
                    try:
                        if client.is_server_ready():
                            return
                    except InferenceServerException:
                        pass
                time.sleep(_POLL_S)
        finally:
            if client is not None:
                client.close()
        raise ExportError(f"tritonserver was not ready within {self.startup_timeout_s:.0f} s; its log ends:\n"
                          f"{self.log_tail()}")

    def stop(self) -> None:
        """Stop the server (SIGTERM, then SIGKILL after the grace time) and remove its work directory."""
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        self.port = None
        if self._workdir is not None:
            shutil.rmtree(self._workdir, ignore_errors=True)
            self._workdir = None

    def __enter__(self) -> "TritonServer":
        self.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        self.stop()
