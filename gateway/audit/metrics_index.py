"""The programme metrics from the gateway's index, to cross-check the chain replay: the
figures the index can know (it holds no expiry), computed by the same code from the
confirmed operations as the events the chain should hold.

(r2) Awards are issued points (not purchases); a refund is a `Refunded` of its redemption
(redemptions count net of refunds); a reversal's recorded debt (`Operation.debt`) is a
`DebtRecorded` before its `Reversed`. An earn's confirmed `points` include a campaign bonus,
so `issued` agrees; the index keeps no campaign id or bonus and no debt repayment, so the
bonus, campaign results and debt outstanding are checked from the chain only."""

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
INDEX_EVENT = {
    "earn": "Earned",
    "award": "Awarded",
    "redemption": "Redeemed",
    "reversal": "Reversed",
    "refund": "Refunded",
}


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
    refs = {op.id: op.receipt_ref for op, _ in rows if op.kind == "redemption"}
    events = []
    for op, address in rows:
        name = INDEX_EVENT.get(op.kind)
        if name is None or op.points is None or op.log_index is None or op.block_number is None:
            continue
        # The address the operation was credited or debited at (a member may have migrated since).
        args: dict[str, Any] = {"partnerId": op.partner_id, "member": op.member_address or address, "points": op.points}
        if name == "Earned":
            args.update(spend=op.amount_minor or 0, expiryMonth=NEVER)
        elif name == "Redeemed":
            args.update(receiptRef=bytes.fromhex(op.receipt_ref.removeprefix("0x")))
        elif name == "Refunded":
            redemption = refs.get(op.original_id or "", "")
            args.update(redemptionReceiptRef=bytes.fromhex(redemption.removeprefix("0x")), expiryMonth=NEVER)
        elif name == "Reversed" and op.debt:
            debt = {"partnerId": op.partner_id, "member": args["member"], "points": op.debt}
            events.append(LedgerEvent("DebtRecorded", debt, op.block_number, op.tx_hash or "", op.log_index))
        events.append(LedgerEvent(name, args, op.block_number, op.tx_hash or "", op.log_index))
    return events


def cross_check(chain: Metrics, index: Metrics) -> list[str]:
    """The figures where the index and the chain disagree (empty: they agree)."""
    return [
        f"{name}: chain {getattr(chain, name)}, index {getattr(index, name)}"
        for name in CROSS_CHECKED
        if getattr(chain, name) != getattr(index, name)
    ]
