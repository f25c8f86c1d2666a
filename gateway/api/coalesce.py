"""Cache misses of concurrent requests, loaded together: one worker-thread call for all the
misses that arrived while the previous load ran."""

import asyncio
from collections.abc import Callable, Sequence
from typing import Generic, TypeVar

from starlette.concurrency import run_in_threadpool

T = TypeVar("T")
R = TypeVar("R")


class Coalesced(Generic[T, R]):
    """`await coalesced(item)` answers `load(items)[i]` for its item, where `load` ran once, in
    a worker thread, for every item that was waiting. A result that is an exception is raised
    to its own caller; an exception raised by `load` goes to every caller of that load.

    With a million members nearly every earn misses the member and tier caches: one query
    and one JSON-RPC batch for the misses of the moment cost far less than a query, a chain
    call and a thread hop each, and the loads never pile up more than one deep.
    """

    def __init__(self, load: Callable[[list[T]], Sequence[R | BaseException]]) -> None:
        self._load = load
        self._waiting: list[tuple[T, asyncio.Future[R]]] = []
        self._running = False

    async def __call__(self, item: T) -> R:
        future: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        self._waiting.append((item, future))
        if not self._running:
            self._running = True
            asyncio.get_running_loop().create_task(self._drain())
        return await future

    async def _drain(self) -> None:
        try:
            while self._waiting:
                batch, self._waiting = self._waiting, []
                try:
                    results = await run_in_threadpool(self._load, [item for item, _ in batch])
                except Exception as exc:  # noqa: BLE001 - the load failed: each caller gets the error
                    for _, future in batch:
                        if not future.done():
                            future.set_exception(exc)
                    continue
                for (_, future), result in zip(batch, results, strict=True):
                    if future.done():  # its request was cancelled meanwhile
                        continue
                    if isinstance(result, BaseException):
                        future.set_exception(result)
                    else:
                        future.set_result(result)
        finally:
            self._running = False
