"""Dynamic batching: single requests that arrive within a short window run as one forward pass.

One worker thread owns the model: it takes the first waiting item, gathers more for at most `window_ms`
(or until `max_batch_size`), runs them together and hands each caller its own result. The queue is
bounded in items; a request that does not fit is refused at once (`Overloaded`, the service's 503)
instead of waiting in a queue that grows without limit. Callers await from the event loop, which never
runs model work.
"""
from __future__ import annotations

import asyncio
import math
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

_STOP = object()


class Overloaded(Exception):
    """The queue cannot take a request now; `retry_after` is a guess in whole seconds."""

    def __init__(self, retry_after: int):
        super().__init__(f"the server is busy: its queue is full; retry after {retry_after} s")
        self.retry_after = retry_after


@dataclass
class _Item:
    value: Any
    future: asyncio.Future
    loop: asyncio.AbstractEventLoop


class DynamicBatcher:
    """`await batcher.submit(values)` → `run_batch`'s result for each value, computed in batches of up to
    `max_batch_size` items gathered over `window_ms`. `run_batch(values) -> results` runs on the worker
    thread; an exception it raises is raised to every caller of that batch, and the worker goes on.
    `on_batch(size, seconds)` is told about each batch (metrics)."""

    def __init__(self, run_batch: Callable[[list], list], *, max_batch_size: int = 32, window_ms: float = 5.0,
                 max_queue: int = 256, name: str = "batcher", on_batch: Callable[[int, float], None] | None = None):
        if max_batch_size < 1 or max_queue < 1 or window_ms < 0:
            raise ValueError("max_batch_size and max_queue must be at least 1, window_ms at least 0")
        self.run_batch, self.max_batch_size, self.window = run_batch, max_batch_size, window_ms / 1000
        self.max_queue, self.on_batch = max_queue, on_batch
        self._queue: queue.Queue = queue.Queue()
        self._waiting = 0  # items submitted and not yet taken by the worker
        self._lock = threading.Lock()
        self._seconds_per_batch = 0.0
        self._thread = threading.Thread(target=self._work, name=name, daemon=True)

    @property
    def depth(self) -> int:
        return self._waiting

    def start(self) -> DynamicBatcher:
        self._thread.start()
        return self

    def stop(self, timeout: float = 10.0) -> None:
        if self._thread.is_alive():
            self._queue.put(_STOP)
            self._thread.join(timeout)

    async def submit(self, values: list) -> list:
        """All of `values` enter the queue or none do (`Overloaded`). They enter as one piece, so that a
        request of up to `max_batch_size` images always runs in one forward pass."""
        loop = asyncio.get_running_loop()
        items = [_Item(v, loop.create_future(), loop) for v in values]
        with self._lock:
            if self._waiting + len(items) > self.max_queue:
                raise Overloaded(self._retry_after())
            self._waiting += len(items)
        self._queue.put(items)
        return list(await asyncio.gather(*(item.future for item in items)))

    def _retry_after(self) -> int:
        batches = math.ceil(self._waiting / self.max_batch_size)
        return max(1, math.ceil(batches * self._seconds_per_batch))

    def _work(self) -> None:
        carry: list[_Item] = []  # the rest of a request that did not fit into the last batch
        stop = False
        while not stop:
            if not carry:
                first = self._queue.get()
                if first is _STOP:
                    return
                carry = first
            batch, carry = carry[:self.max_batch_size], carry[self.max_batch_size:]
            deadline = time.monotonic() + self.window
            while len(batch) < self.max_batch_size and not carry:
                try:
                    items = self._queue.get(True, max(0.0, deadline - time.monotonic()))
                except queue.Empty:
                    break
                if items is _STOP:
                    stop = True
                    break
                room = self.max_batch_size - len(batch)
                batch, carry = batch + items[:room], items[room:]
            with self._lock:
                self._waiting -= len(batch)
            self._run(batch)
        while carry:  # stopping: what was already taken still runs
            batch, carry = carry[:self.max_batch_size], carry[self.max_batch_size:]
            with self._lock:
                self._waiting -= len(batch)
            self._run(batch)

    def _run(self, batch: list[_Item]) -> None:
        live = [item for item in batch if not item.future.cancelled()]  # a client that left costs nothing
        if not live:
            return
        start = time.perf_counter()
        try:
            results = self.run_batch([item.value for item in live])
        except Exception as error:  # noqa: BLE001 - the callers of this batch get it; the worker goes on
            for item in live:
                item.loop.call_soon_threadsafe(_settle, item.future, None, error)
        else:
            for item, result in zip(live, results):
                item.loop.call_soon_threadsafe(_settle, item.future, result, None)
        seconds = time.perf_counter() - start
        self._seconds_per_batch = 0.8 * self._seconds_per_batch + 0.2 * seconds if self._seconds_per_batch else seconds
        if self.on_batch is not None:
            self.on_batch(len(live), seconds)


def _settle(future: asyncio.Future, result, error) -> None:
    if future.done():  # cancelled meanwhile
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)
