"""Verification jobs: `loyalty audit verify` as a background job an auditor starts and polls
(the routes are gateway/api/routes/audit.py).

The job runs the same verification as the command: every ledger event replayed with the
rules and compared with the contract's views, then the gateway's index and stored receipts
matched with the events. One job runs at a time (it reads the whole chain); the last few
are kept in this process's memory, so a restarted gateway starts from none.
"""

from __future__ import annotations

import logging
import secrets
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from gateway.app.runtime import Runtime
from gateway.audit.verify import AuditReport, Discrepancy, GatewayIndex, read_index, verify_chain
from gateway.core.errors import ErrorCode, NotFound

log = logging.getLogger("gateway.audit")
KEEP_JOBS = 20


class Cancelled(Exception):
    """The gateway is stopping: the job gives up between two pages of events."""


def _plain(value: Any) -> Any:
    """A discrepancy's values as JSON (they are ints, strings, or tuples of them)."""
    if isinstance(value, bytes):
        return "0x" + value.hex()
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return str(value)


def discrepancy_json(d: Discrepancy) -> dict[str, Any]:
    return {"kind": d.kind, "where": d.where, "expected": _plain(d.expected), "found": _plain(d.found), "text": str(d)}


@dataclass
class VerifyJob:
    id: str
    started_at: datetime
    status: str = "running"  # running | done | failed
    phase: str = "starting"
    blocks_read: int = 0
    blocks_total: int = 0
    finished_at: datetime | None = None
    report: AuditReport | None = None
    error: str | None = None

    def as_json(self) -> dict[str, Any]:
        r = self.report
        return {
            "job_id": self.id,
            "status": self.status,
            "started_at": self.started_at.isoformat(),
            "finished_at": self.finished_at.isoformat() if self.finished_at else None,
            "progress": {"phase": self.phase, "blocks_read": self.blocks_read, "blocks_total": self.blocks_total},
            "from_block": r.from_block if r else None,
            "to_block": r.to_block if r else None,
            "events": r.events if r else None,
            "operations": r.operations if r else None,
            "members": r.members if r else None,
            "supply": r.supply if r else None,
            "index_operations": r.index_operations if r else None,
            "discrepancies": [discrepancy_json(d) for d in r.discrepancies] if r else [],
            "ok": r.ok if r and self.status == "done" else None,
            "error": self.error,
        }


@dataclass
class VerifyJobs:
    """Starts verifications in a thread, one at a time, and remembers the last few."""

    runtime: Runtime
    jobs: OrderedDict[str, VerifyJob] = field(default_factory=OrderedDict)
    lock: threading.Lock = field(default_factory=threading.Lock)
    stopping: threading.Event = field(default_factory=threading.Event)
    thread: threading.Thread | None = None

    def start(self) -> tuple[VerifyJob, bool]:
        """(the job, whether it is new): a running job is returned instead of a second one."""
        with self.lock:
            running = next((j for j in self.jobs.values() if j.status == "running"), None)
            if running is not None:
                return running, False
            job = VerifyJob(secrets.token_hex(8), datetime.now(UTC))
            self.jobs[job.id] = job
            while len(self.jobs) > KEEP_JOBS:
                self.jobs.popitem(last=False)
            self.thread = threading.Thread(target=self._run, args=(job,), name=f"audit-{job.id}", daemon=True)
            self.thread.start()
            return job, True

    def get(self, job_id: str) -> VerifyJob:
        job = self.jobs.get(job_id)
        if job is None:
            raise NotFound(
                f"no verification job {job_id} (jobs live in the gateway's memory)", code=ErrorCode.UNKNOWN_JOB
            )
        return job

    def latest(self) -> VerifyJob | None:
        with self.lock:
            return next(reversed(self.jobs.values()), None)

    def stop(self) -> None:
        self.stopping.set()
        if self.thread is not None:
            self.thread.join(timeout=30)

    def _run(self, job: VerifyJob) -> None:
        rt = self.runtime

        def progress(done: int, total: int) -> None:
            if self.stopping.is_set():
                raise Cancelled
            job.blocks_read, job.blocks_total = done, total

        def stage(name: str) -> None:
            job.phase = name

        def index() -> GatewayIndex:
            with rt.sessions() as session:
                return read_index(session)

        try:
            job.report = verify_chain(
                rt.chain.w3,
                rt.ledger,
                from_block=rt.ledger.deployment_block,
                progress=progress,
                index=index,
                stage=stage,
            )
            job.status, job.phase = "done", "done"
        except Cancelled:
            job.status, job.error = "failed", "cancelled: the gateway stopped"
        except Exception as exc:  # noqa: BLE001 - the auditor reads why; the gateway carries on
            log.exception("verification job %s failed", job.id)
            job.status, job.error = "failed", f"{type(exc).__name__}: {exc}"
        job.finished_at = datetime.now(UTC)
