"""Run a standalone Milvus (from the `milvus` wheel) so that it can be reached on 127.0.0.1 only.

Milvus 2.3 binds its gRPC, HTTP and coordinator ports on every interface, whatever `*.ip` says (that key
only sets the address it advertises). This helper process therefore binds the two ports a client needs
(the proxy's gRPC port and the health/metrics port) on 127.0.0.1 in the machine's network namespace,
moves itself into a private network namespace that holds nothing but a loopback interface, starts
Milvus there, and relays connections from the outer ports to the inner ones. Milvus's other ports are
unreachable from outside the namespace.

    python -m vidsearch.index.milvus.loopback --bin DIR --data DIR --config FILE

prints one JSON line {"grpc": PORT, "http": PORT} once the outer ports are bound, then runs until Milvus
exits (with its exit status), until killed, or until its standard input closes: `local_server.LocalMilvus`
holds the other end of that pipe, so an owner that dies without stopping it (SIGKILL, a test's timeout)
takes this server down with it instead of leaving it running. Milvus itself dies with this process.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import fcntl
import json
import os
import signal
import socket
import struct
import subprocess
import sys
import threading
from pathlib import Path

CLONE_NEWUSER = 0x10000000
CLONE_NEWNET = 0x40000000
_SIOCGIFFLAGS = 0x8913
_SIOCSIFFLAGS = 0x8914
_IFF_UP = 0x1
_IFREQ = struct.Struct("16sh22x")

GRPC_PORT = 19530
"""Milvus's gRPC port inside the namespace (the default: nothing else runs there)."""
HTTP_PORT = 9091
"""Milvus's health and metrics port inside the namespace."""
_CHUNK = 1 << 18


_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """In the Milvus child before exec: the kernel kills it when this launcher dies, however it dies."""
    ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


def _stop_when_owner_gone(milvus: subprocess.Popen[bytes]) -> None:
    """Kill Milvus once standard input reaches its end: the owner closed the pipe or died."""
    sys.stdin.buffer.read()
    milvus.kill()


def _enter_private_network() -> None:
    """Move this (single-threaded) process into a new network namespace and bring its loopback up.

    Root may create one directly; anyone else needs a user namespace too (where the kernel allows it).
    """
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.unshare(CLONE_NEWNET) != 0 and libc.unshare(CLONE_NEWUSER | CLONE_NEWNET) != 0:
        error = ctypes.get_errno()
        raise OSError(error, f"cannot create a private network namespace: {os.strerror(error)}")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        request = _IFREQ.pack(b"lo", 0)
        flags = _IFREQ.unpack(fcntl.ioctl(sock, _SIOCGIFFLAGS, request))[1]
        fcntl.ioctl(sock, _SIOCSIFFLAGS, _IFREQ.pack(b"lo", flags | _IFF_UP))


def _listen(port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", port))
    sock.listen(128)
    return sock


def _pump(source: socket.socket, sink: socket.socket) -> None:
    """Copy bytes one way until either side closes, then close both."""
    try:
        while data := source.recv(_CHUNK):
            sink.sendall(data)
    except OSError:
        pass
    finally:
        for sock in (source, sink):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()


def _relay(listener: socket.socket, inner_port: int) -> None:
    """Accept on the outer port; connect each client to the inner port (inside the namespace)."""
    while True:
        client, _ = listener.accept()
        try:
            server = socket.create_connection(("127.0.0.1", inner_port))
        except OSError:
            client.close()  # Milvus not listening yet: the client sees a closed connection and retries
            continue
        for sock in (client, server):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        threading.Thread(target=_pump, args=(client, server), daemon=True).start()
        threading.Thread(target=_pump, args=(server, client), daemon=True).start()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--bin", type=Path, required=True, help="folder of the milvus binary and libraries")
    parser.add_argument("--data", type=Path, required=True, help="folder of milvus.yaml, data and logs")
    parser.add_argument("--grpc-port", type=int, default=0, help="outer gRPC port (0: any free one)")
    parser.add_argument("--http-port", type=int, default=0, help="outer health port (0: any free one)")
    args = parser.parse_args(argv)
    outer = {"grpc": _listen(args.grpc_port), "http": _listen(args.http_port)}
    _enter_private_network()
    environment = {
        **os.environ,
        "DEPLOY_MODE": "STANDALONE",
        "METRICS_PORT": str(HTTP_PORT),
        "MILVUS_RUN_DIR": str(args.data / "run"),
        "LD_LIBRARY_PATH": f"{args.bin}:{os.environ.get('LD_LIBRARY_PATH', '')}",
    }
    logs = args.data / "logs"
    with open(logs / "milvus-stdout.log", "ab") as out, open(logs / "milvus-stderr.log", "ab") as err:
        milvus = subprocess.Popen(
            [str(args.bin / "milvus"), "run", "standalone"],
            cwd=args.data,
            env=environment,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=err,
            preexec_fn=_die_with_parent,  # this process is single-threaded until the relays start below
        )
    threading.Thread(target=_stop_when_owner_gone, args=(milvus,), daemon=True).start()
    for name, inner in (("grpc", GRPC_PORT), ("http", HTTP_PORT)):
        threading.Thread(target=_relay, args=(outer[name], inner), daemon=True).start()
    ports = {name: sock.getsockname()[1] for name, sock in outer.items()}
    sys.stdout.write(json.dumps(ports) + "\n")
    sys.stdout.flush()
    return milvus.wait()


if __name__ == "__main__":
    sys.exit(main())
