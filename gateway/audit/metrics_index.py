"""The programme metrics from the gateway's index, to cross-check the chain replay: the
figures the index can know (it holds no expiry), computed by the same code from the
confirmed operations as the events the chain should hold."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from gateway.audit.metrics import Metrics
from gateway.chain.ledger import LedgerEvent
from gateway.db.models import Member, Operation
from gateway.points.rules import NEVER

CROSS_CHECKED = (
    "members_active",
    "new_members",
    "purchasers",
    "repeat_purchasers",
    "purchase_gaps",
    "purchase_gap_seconds",
    "issued",
    "redeemed",
    "reversed",
)
INDEX_EVENT = {"earn": "Earned", "award": "Awarded", "redemption": "Redeemed", "reversal": "Reversed"}


def index_events(session: Session) -> list[LedgerEvent]:
    """The gateway's confirmed operations as the events the chain should hold, in chain order.

    What the index knows of each: kind, partner, member, points, spend, position. Not expiry
    (the policy in force is on-chain), so the figures that depend on it (breakage, liability,
    churn risk, the flow matrix) are not cross-checked from here; `CROSS_CHECKED` are."""
    rows = session.execute(
        select(Operation, Member.address)
        .join(Member, Member.member_id == Operation.member_id)
        .where(Operation.status == "confirmed", Operation.block_number.is_not(None))
        .order_by(Operation.block_number, Operation.log_index)
    ).all()
    events = []
    for op, address in rows:
        name = INDEX_EVENT.get(op.kind)
        if name is None or op.points is None or op.log_index is None or op.block_number is None:
            continue
        # The address the operation was credited or debited at (a member may have migrated since).
        args: dict[str, Any] = {"partnerId": op.partner_id, "member": op.member_address or address, "points": op.points}
        if name == "Earned":
            args.update(spend=op.amount_minor or 0, expiryMonth=NEVER)
        events.append(LedgerEvent(name, args, op.block_number, op.tx_hash or "", op.log_index))
    return events


def cross_check(chain: Metrics, index: Metrics) -> list[str]:
    """The figures where the index and the chain disagree (empty: they agree)."""
    return [
        f"{name}: chain {getattr(chain, name)}, index {getattr(index, name)}"
        for name in CROSS_CHECKED
        if getattr(chain, name) != getattr(index, name)
    ]
