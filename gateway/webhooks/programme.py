"""`programme.change_scheduled` (SPEC section 6, r2): raised once per change the ledger
scheduled, whoever scheduled it (this gateway, or `loyalty` commands signed elsewhere: the
programme watch reads every change from the chain). A programme-wide change (tiers, expiry,
point value) goes to the operator's webhooks and every partner's; a change of one partner's
terms (rate, prices, signer) to that partner's and the operator's (see store.publish)."""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from gateway.webhooks.store import publish

EVENT = "programme.change_scheduled"


def announce_changes(session: Session, changes: list[dict[str, Any]]) -> int:
    """Raises the event for each change (in the caller's transaction); returns how many were new."""
    new = 0
    for change in changes:
        data = {k: change[k] for k in ("change_id", "kind", "partner_id", "state", "effective_at", "terms")}
        if publish(
            session, type=EVENT, data=data, partner_id=change["partner_id"], dedupe_key=f"{EVENT}:{change['change_id']}"
        ):
            new += 1
    return new
