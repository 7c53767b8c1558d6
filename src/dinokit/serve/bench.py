"""The service's benchmark (`dinokit bench --serve`): requests per second and p50/p99 latency of
`dinokit serve` with dynamic batching against the same server answering one request per forward pass —
same model, same machine, same clients, one after the other. Every request embeds one photo."""
from __future__ import annotations

import asyncio
import time
from pathlib import Path

import numpy as np

from ..data import list_images
from .server import SpawnedServer

MODES = {  # name → the server's batching options
    "one per forward": ["--max-batch-size", "1", "--batch-window-ms", "0"],
    "dynamic batching": [],  # filled in with the chosen size and window
}


def bench_serve(model, photos, *, clients: int = 32, requests: int = 256, max_batch_size: int = 32,
                window_ms: float = 5.0, limit: int = 32) -> dict:
    """{"one per forward": stats, "dynamic batching": stats, "speedup": rps ratio, ...}; stats are requests/s,
    p50 and p99 latency in ms, and errors (any answer but 200)."""
    bodies = [(p.name, p.read_bytes()) for p in map(Path, list_images(photos)[:limit])]
    if not bodies:
        raise ValueError(f"no photos in {photos}")
    modes = {**MODES, "dynamic batching": ["--max-batch-size", str(max_batch_size), "--batch-window-ms", str(window_ms)]}
    result: dict = {"clients": clients, "requests": requests, "photos": len(bodies), "max_batch_size": max_batch_size,
                    "window_ms": window_ms}
    for name, options in modes.items():
        with SpawnedServer(["--model", str(model), "--max-queue", str(max(256, 4 * clients)), "--device", "cpu",
                            *options]) as server:
            asyncio.run(_load(server.url, bodies, clients, clients))  # warm-up: caches, allocator, threads
            result[name] = asyncio.run(_load(server.url, bodies, clients, requests))
    result["speedup"] = result["dynamic batching"]["requests_per_s"] / result["one per forward"]["requests_per_s"]
    return result


async def _load(url: str, bodies: list, clients: int, requests: int) -> dict:
    import httpx

    latencies: list[float] = []
    errors = 0
    next_request = iter(range(requests))

    async def client(http):
        nonlocal errors
        for i in next_request:
            name, data = bodies[i % len(bodies)]
            start = time.perf_counter()
            answer = await http.post(url + "/v1/embed", files=[("image", (name, data))])
            latencies.append(time.perf_counter() - start)
            errors += answer.status_code != 200

    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(timeout=600, limits=limits) as http:
        start = time.perf_counter()
        await asyncio.gather(*(client(http) for _ in range(clients)))
        seconds = time.perf_counter() - start
    ms = np.asarray(latencies) * 1000
    return {"requests_per_s": requests / seconds, "p50_ms": float(np.percentile(ms, 50)),
            "p99_ms": float(np.percentile(ms, 99)), "errors": errors, "seconds": seconds}


def serve_table(result: dict) -> str:
    lines = [f"| server ({result['clients']} clients, {result['requests']} requests of one image) | requests/s | "
             "p50 ms | p99 ms | errors |", "|---|---|---|---|---|"]
    for name in MODES:
        r = result[name]
        lines.append(f"| {name} | {r['requests_per_s']:.1f} | {r['p50_ms']:.0f} | {r['p99_ms']:.0f} | {r['errors']} |")
    lines.append(f"\ndynamic batching (up to {result['max_batch_size']}, {result['window_ms']:g} ms window): "
                 f"x{result['speedup']:.2f} the requests per second of one request per forward pass")
    return "\n".join(lines)
