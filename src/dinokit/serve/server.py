"""Running the application under uvicorn on a socket dinokit binds itself, so that `--port 0` works (the
system picks a free port) and the address is printed once it is known."""
from __future__ import annotations

import ipaddress
import socket
import sys

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
