"""The programme watch of a gateway process (a thread of `create_app`): every
`gateway.programme_watch_seconds` it reads the ledger's changes, announces those first seen
pending (`programme.change_scheduled`), applies due ones with the operator's key when the
gateway holds it and `gateway.apply_due_changes` is on, and after any change applied (here or
elsewhere) makes the earn quotes read the chain's new terms."""

import logging
import threading

from gateway.accounts.changes import ChangeWatch, WatchStep
from gateway.app.runtime import Runtime
from gateway.webhooks.programme import announce_changes

log = logging.getLogger("gateway.console")


def follow(runtime: Runtime, watch: ChangeWatch, *, apply_due: bool) -> WatchStep:
    """One look at the ledger's changes."""
    step = watch.step(apply_due=apply_due and runtime.operator is not None)
    if step.new_pending:
        with runtime.writes.begin() as session:
            announce_changes(session, step.new_pending)
    return step


def run(runtime: Runtime, watch: ChangeWatch, stop: threading.Event) -> None:
    g = runtime.settings.gateway
    while not stop.wait(g.programme_watch_seconds):
        try:
            follow(runtime, watch, apply_due=g.apply_due_changes)
        except Exception:  # noqa: BLE001 - a chain or database hiccup: the next look tries again
            log.exception("programme watch failed")
