"""Turns accepted operations into batch transactions, exactly once.

The order of writes is what makes it safe across crashes:
1. operations are accepted (the outbox) before anyone is answered;
2. a batch's transaction is signed and stored with its nonce, and its operations are marked
   `submitted`, in one database transaction, before it is broadcast (batches.py);
3. after a restart every stored, unmined transaction is broadcast again, byte for byte, so
   no nonce is skipped and no nonce ever carries two different transactions (receipts.py);
4. results are read from the receipt's events; an operation is `confirmed` once its block
   has the configured depth and its block hash is still canonical (reorgs.py).

One submitter per database (leadership.py). This module is the loop that runs the rounds.
"""

from __future__ import annotations

import logging
import threading
import time

from gateway.app.runtime import Runtime
from gateway.chain.ledger import LedgerRevert
from gateway.chain.transactions import AlreadyKnown, NonceTooLow, send_raw
from gateway.core.errors import ChainError
from gateway.core.metrics import Metrics
from gateway.submitter.batches import KINDS, Batches, Draft
from gateway.submitter.leadership import SubmitterLock
from gateway.submitter.receipts import ReceiptTracker
from gateway.submitter.reorgs import ReorgWatch

log = logging.getLogger("gateway.submitter")

IDLE_POLL_SECONDS = 0.2
PAUSE_AFTER_REVERT_SECONDS = 5


class Submitter:
    def __init__(self, runtime: Runtime, metrics: Metrics | None = None, *, refresh_tiers: bool = True) -> None:
        self.rt = runtime
        gw = runtime.settings.gateway
        self.metrics = metrics or Metrics()
        self.lock = SubmitterLock(runtime.engine, runtime.data_dir)
        self.batches = Batches(runtime, batch_max=gw.batch_max_operations, window=gw.batch_window_ms / 1000)
        self.receipts = ReceiptTracker(
            runtime, self.metrics, confirmations=gw.confirmations, refresh_tiers=refresh_tiers
        )
        self.reorgs = ReorgWatch(
            runtime, self.metrics, confirmations=gw.confirmations, on_reorg=self.receipts.forget_floor
        )
        self._paused_until: dict[str, float] = {}
        self._next_wake = 0.0
        self._filling = False
        # How long an idle round waits for news. In a gateway process, accepted writes wake
        # the submitter at once (runtime.work_ready); alone in its process it looks again.
        self.idle_poll = IDLE_POLL_SECONDS

    # ------------------------------------------------------------ leadership

    @property
    def is_leader(self) -> bool:
        return self.lock.held

    def acquire_leadership(self) -> bool:
        was = self.lock.held
        got = self.lock.acquire()
        if got and not was:
            # Another process may have led meanwhile (batches sent, reorged, put back in the
            # queue): the floors of what this one saw last are no longer worth anything.
            self.batches.queue.rescan()
            self.receipts.forget_floor()
            self.reorgs.floor = 0
        return got

    def someone_leads(self) -> bool:
        """Whether any process holds the submitter lock right now: for /healthz, since with
        several processes or `--submitter-process` the one answering is seldom the submitter."""
        return self.lock.held_by_anyone()

    def release(self) -> None:
        self.lock.release()

    # ------------------------------------------------------------ main loop

    def run(self, stop: threading.Event) -> None:
        while not stop.is_set():
            try:
                if not self.acquire_leadership():
                    stop.wait(1.0)
                    continue
                busy = self.step()
            except Exception:  # noqa: BLE001 - keep serving; the next round retries from the database
                log.exception("submitter round failed; retrying")
                busy = False
                stop.wait(1.0)
            if not busy:
                # Sleep until a filling batch's window ends or, with nothing queued, until this
                # process accepts new work or the poll interval passes (other processes' work).
                pause = max(0.001, min(self.idle_poll, self._next_wake - time.monotonic()))
                if self._filling:
                    stop.wait(pause)
                else:
                    self.rt.work_ready.wait(pause)
                    self.rt.work_ready.clear()
        self.release()

    def step(self) -> bool:
        """One round: follow what is in flight, confirm, then submit new batches."""
        self._next_wake, self._filling = time.monotonic() + self.idle_poll, False
        busy = self.track()
        busy = self.reorgs.confirm() or busy
        self.batches.look()
        for kind in KINDS:
            busy = self.submit(kind) or busy
        return busy

    def track(self) -> bool:
        seen = self.receipts.track(self._broadcast)
        for kind, size in seen.reverted:
            self.batches.reverted(kind, size)
            if size == 1:  # not out of gas (that is refused): e.g. a pause raced it; wait a moment
                self._paused_until[kind] = time.monotonic() + PAUSE_AFTER_REVERT_SECONDS
        for kind in seen.passed:
            self.batches.mined(kind)
        if seen.mined:
            self.reorgs.fresh_mined = True
        return seen.busy

    def submit(self, kind: str) -> bool:
        if time.monotonic() < self._paused_until.get(kind, 0):
            return False
        draft = self.batches.next(kind)
        if draft is None:
            return False
        if not isinstance(draft, Draft):  # filling: wake when its window ends
            self._next_wake = min(self._next_wake, time.monotonic() + draft)
            self._filling = True
            return False
        try:
            raw = self.batches.sign(draft)
        except LedgerRevert as exc:
            # The whole batch would revert (e.g. the ledger is paused): keep the operations
            # accepted and try again later.
            log.warning("batch of %d %s would revert: %s; retrying in 5 s", len(draft.ops), kind, exc.error)
            self._paused_until[kind] = time.monotonic() + PAUSE_AFTER_REVERT_SECONDS
            return False
        self.batches.store(draft, raw)
        # Stored and committed: only now does the transaction leave this process.
        self._broadcast(raw)
        return True

    def _broadcast(self, raw: bytes) -> None:
        try:
            send_raw(self.rt.chain.w3, raw)
        except (AlreadyKnown, NonceTooLow):
            return  # it is in the pool or mined: tracking will see it
        except ChainError as exc:
            log.warning("broadcast failed (%s); it will be sent again", exc)
