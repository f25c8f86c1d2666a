"""Group commit: one writer thread commits many accepted writes per database transaction.

Each write (an accept job) runs in its own SAVEPOINT, so one refused write (a duplicate
receipt, a lost idempotency race) rolls back alone. Callers wait until the transaction that
holds their write has committed: a 202 still means "on disk". What goes away is a
transaction, a lock hand-over and an fsync per request.

A job submitted with `refuses_before_writing=True` promises that it raises its domain errors
(`LoyaltyError`) before its first write, so it needs no savepoint of its own: such jobs run
bare, and only if one of them fails any other way (the database refused a row: a race lost
to another process) is the group rolled back and run again, every job in its savepoint.
Savepoints cost two statements per write on the busiest path, the earn. Bare jobs also
leave their rows to the group (`deferred(session)`), which writes each kind of row with one
executemany before the commit, and skip the look-ups that the unique constraints make
redundant: a duplicate fails that insert, and the careful re-run finds it and says which.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, InvalidStateError
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from gateway.core.errors import LoyaltyError

GROUP = "write_group"  # the Session.info key of the running group's deferred rows


class Group:
    """Rows the bare jobs of one transaction leave to be written together before its commit."""

    def __init__(self) -> None:
        self._pending: dict[Callable[[Session, list[Any]], None], list[Any]] = {}

    def add(self, flush: Callable[[Session, list[Any]], None], item: Any) -> None:
        """`flush(session, items)` runs once for every item added with it, in order."""
        self._pending.setdefault(flush, []).append(item)

    def flush(self, session: Session) -> None:
        pending, self._pending = self._pending, {}
        for flush, items in pending.items():
            flush(session, items)


def deferred(session: Session) -> Group | None:
    """The group to leave rows to, when this transaction runs bare jobs; else None (write now)."""
    return session.info.get(GROUP)


class _Redo(Exception):
    """A bare job failed after it may have written: roll the group back, redo it with savepoints."""


@dataclass
class _Job:
    work: Callable[[Session], Any]
    bare: bool = False  # refuses before writing: may run without a savepoint
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

    def submit(self, work: Callable[[Session], Any], *, refuses_before_writing: bool = False) -> Future[Any]:
        """Queues `work(session)`; the future resolves once its transaction has committed
        (an event loop awaits it with asyncio.wrap_future, holding no thread)."""
        job = _Job(work, bare=refuses_before_writing)
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
            if any(job.bare for job in jobs):
                try:
                    self._transaction(jobs, savepoints=False)
                except _Redo:
                    self._transaction(jobs, savepoints=True)
            else:
                self._transaction(jobs, savepoints=True)
        except Exception as exc:  # noqa: BLE001 - the commit failed: none of these writes happened
            for job in jobs:
                if job.error is None:
                    job.error, job.result = exc, None
        self.batches += 1
        self.jobs += len(jobs)
        self._resolve(jobs)

    def _transaction(self, jobs: list[_Job], *, savepoints: bool) -> None:
        with self._sessions.begin() as session:
            group = session.info[GROUP] = Group() if not savepoints else None
            for job in jobs:
                job.error = job.result = None
                if group is not None and job.bare:
                    try:
                        job.result = job.work(session)
                    except LoyaltyError as exc:  # refused before writing anything
                        job.error = exc
                    except Exception as exc:  # noqa: BLE001 - a write failed: the group is redone
                        raise _Redo from exc
                    continue
                if group is not None:
                    self._flush(group, session)  # a careful job sees every row before it
                try:
                    with session.begin_nested():
                        job.result = job.work(session)
                except Exception as exc:  # noqa: BLE001 - the job's own error goes back to its caller
                    job.error = exc
            if group is not None:
                self._flush(group, session)
            session.info.pop(GROUP, None)

    @staticmethod
    def _flush(group: Group, session: Session) -> None:
        try:
            group.flush(session)
        except Exception as exc:  # noqa: BLE001 - a duplicate, a lost race: redo the group carefully
            raise _Redo from exc

    @staticmethod
    def _resolve(jobs: list[_Job]) -> None:
        for job in jobs:
            # A caller that stopped waiting (its request task was cancelled: a client gone, a
            # shutdown) cancelled its future; its write stands, and the writer must go on.
            if job.future.cancelled():
                continue
            try:
                if job.error is not None:
                    job.future.set_exception(job.error)
                else:
                    job.future.set_result(job.result)
            except InvalidStateError:  # cancelled between the check and here
                continue
