"""Group commit: one writer thread commits many accepted writes per database transaction.

Each write (an accept job) runs in its own SAVEPOINT, so one refused write (a duplicate
receipt, a lost idempotency race) rolls back alone. Callers wait until the transaction that
holds their write has committed: a 202 still means "on disk". What goes away is a
transaction, a lock hand-over and an fsync per request.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.orm import Session, sessionmaker


@dataclass
class _Job:
    work: Callable[[Session], Any]
    future: Future[Any] = field(default_factory=Future)
    result: Any = None
    error: BaseException | None = None


class WriteQueue:
    def __init__(self, sessions: sessionmaker[Session], *, max_batch: int = 200, linger: float = 0.0) -> None:
        # No lingering: a group is what queued up while the previous group committed (an
        # fsync each), which is as large as the load makes it without delaying a lone write.
        self._sessions = sessions
        self._max_batch = max_batch
        self._linger = linger
        self._queue: queue.Queue[_Job | None] = queue.Queue()
        self._thread: threading.Thread | None = None
        self.batches = 0
        self.jobs = 0

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="writer", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join(timeout=30)
            self._thread = None

    def run(self, work: Callable[[Session], Any]) -> Any:
        """Runs `work(session)` in the next group transaction; returns once it has committed."""
        return self.submit(work).result()

    def submit(self, work: Callable[[Session], Any]) -> Future[Any]:
        """Queues `work(session)`; the future resolves once its transaction has committed
        (an event loop awaits it with asyncio.wrap_future, holding no thread)."""
        job = _Job(work)
        if self._thread is None:  # not started (tools, tests): a transaction of its own
            try:
                with self._sessions.begin() as session:
                    job.future.set_result(work(session))
            except BaseException as exc:  # noqa: BLE001 - handed to the caller through the future
                job.future.set_exception(exc)
            return job.future
        self._queue.put(job)
        return job.future

    def _run(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            jobs = [first]
            deadline = time.monotonic() + self._linger
            while len(jobs) < self._max_batch:
                try:
                    nxt = self._queue.get(timeout=max(0.0, deadline - time.monotonic()))
                except queue.Empty:
                    break
                if nxt is None:
                    self._queue.put(None)  # stop after this group
                    break
                jobs.append(nxt)
            self._commit(jobs)

    def _commit(self, jobs: list[_Job]) -> None:
        try:
            with self._sessions.begin() as session:
                for job in jobs:
                    try:
                        with session.begin_nested():
                            job.result = job.work(session)
                    except Exception as exc:  # noqa: BLE001 - the job's own error goes back to its caller
                        job.error = exc
        except Exception as exc:  # noqa: BLE001 - the commit failed: none of these writes happened
            for job in jobs:
                if job.error is None:
                    job.error, job.result = exc, None
        self.batches += 1
        self.jobs += len(jobs)
        for job in jobs:
            if job.error is not None:
                job.future.set_exception(job.error)
            else:
                job.future.set_result(job.result)
