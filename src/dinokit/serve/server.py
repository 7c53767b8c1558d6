"""Running the application under uvicorn on a socket dinokit binds itself, so that `--port 0` works (the
system picks a free port) and the address is printed once it is known."""
from __future__ import annotations

import ipaddress
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

from ..errors import UsageError


def bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as e:
        sock.close()
        raise UsageError(f"cannot listen on {host}:{port} ({e.strerror or e})") from None
    return sock


def is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def run_server(app, host: str = "127.0.0.1", port: int = 8000, *, announce=None) -> None:
    """Serve `app` until interrupted; `announce(url)` is called with the address once the socket is bound."""
    import uvicorn

    sock = bind(host, port)
    shown = f"[{host}]" if ":" in host else host
    url = f"http://{shown}:{sock.getsockname()[1]}/"
    (announce or (lambda u: print(f"dinokit serve: {u}", file=sys.stderr, flush=True)))(url)
    config = uvicorn.Config(app, log_level="warning", access_log=False, timeout_graceful_shutdown=5)
    uvicorn.Server(config).run(sockets=[sock])


class SpawnedServer:
    """`dinokit serve ARGS --port 0` in a child process, for benchmarks and tests: `url` once it answers
    /healthz; `close()` stops it. Its output goes to a log file, named in every error."""

    def __init__(self, args, *, env=None, timeout: float = 300.0):
        self.log = tempfile.NamedTemporaryFile("w+", prefix="dinokit-serve-", suffix=".log", delete=False)
        self.process = subprocess.Popen([sys.executable, "-m", "dinokit", "serve", *map(str, args), "--port", "0"],
                                        stdout=self.log, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})})
        deadline = time.monotonic() + timeout
        self.url = None
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"dinokit serve exited with status {self.process.returncode}: {self.output()}")
            if self.url is None:
                for line in self.output().splitlines():
                    if line.startswith("dinokit serve: http"):
                        self.url = line.split(": ", 1)[1].strip().rstrip("/")
            if self.url is not None:
                try:
                    with urllib.request.urlopen(self.url + "/healthz", timeout=5) as response:
                        if response.status == 200:
                            return
                except OSError:
                    pass
            time.sleep(0.2)
        self.close()
        raise RuntimeError(f"dinokit serve did not answer within {timeout:.0f} s: {self.output()}")

    def output(self) -> str:
        with open(self.log.name) as f:
            return f.read()

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:  # a server that ignores SIGTERM is killed
                self.process.kill()
                self.process.wait()
        self.log.close()
        os.unlink(self.log.name)

    def __enter__(self) -> SpawnedServer:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
