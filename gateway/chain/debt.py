"""Member debt (SPEC section 2, r2) as a batch's events tell it.

A reversal beyond the points its holder still has takes them all and, under the operator's
debt policy, records the rest as the holder's debt: `DebtRecorded` comes just before that
reversal's `Reversed`, whose `points` are the whole reversal. Points later issued or refunded
to a member in debt pay it first: `DebtRepaid` comes just before the `Earned`, `Awarded` or
`Refunded` whose `points` include the part that paid the debt.
"""

from __future__ import annotations

from dataclasses import dataclass

from gateway.chain.ledger import BatchResult, LedgerEvent

DEBT_POLICY_CHANGE = 7  # the kind of the scheduled change `setDebtPolicy(bool)` makes


@dataclass(frozen=True)
class ReversalOutcome:
    """What one applied reversal did: `points` reversed in all (the partner's total and its
    allowance count them all), `taken` from the holder's balance, `debt` recorded."""

    receipt_ref: bytes
    member: str
    points: int
    taken: int
    debt: int


def _debt_by_ref(events: list[LedgerEvent], name: str) -> dict[tuple[str, bytes], int]:
    out: dict[tuple[str, bytes], int] = {}
    for e in events:
        if e.name == name:
            key = (e.args["member"].lower(), bytes(e.args["receiptRef"]))
            out[key] = out.get(key, 0) + int(e.args["points"])
    return out


def debts_recorded(events: list[LedgerEvent]) -> dict[tuple[str, bytes], int]:
    """(member lower-cased, receipt reference) -> points its reversal left as debt, from a
    transaction's `DebtRecorded` events (what `debt_of` reads a `Reversed` against)."""
    return _debt_by_ref(events, "DebtRecorded")


def debts_repaid(events: list[LedgerEvent]) -> dict[tuple[str, bytes], int]:
    """(member lower-cased, receipt reference) -> points of that issue or refund that paid a debt."""
    return _debt_by_ref(events, "DebtRepaid")


def debt_of(event: LedgerEvent, by_ref: dict[tuple[str, bytes], int]) -> int:
    """The debt the operation `event` moved: of a `Reversed`, the part its holder lacked (with
    `debts_recorded`); of an `Earned`, `Awarded` or `Refunded`, the part that paid a debt (with
    `debts_repaid`)."""
    return by_ref.get((str(event.args["member"]).lower(), bytes(event.args["receiptRef"])), 0)


def reversal_outcomes(result: BatchResult) -> list[ReversalOutcome]:
    """Each applied reversal of a reversal batch with the points taken and those that became
    debt (what the gateway reports for a reversal)."""
    debts = _debt_by_ref(result.events, "DebtRecorded")
    outcomes = []
    for e in result.named("Reversed"):
        ref, member, points = bytes(e.args["receiptRef"]), e.args["member"], int(e.args["points"])
        debt = debts.get((member.lower(), ref), 0)
        outcomes.append(ReversalOutcome(ref, member, points, points - debt, debt))
    return outcomes


def debt_repaid(result: BatchResult) -> dict[bytes, int]:
    """Receipt reference -> points of that operation (earn, award, refund) that paid a debt."""
    return {ref: points for (_, ref), points in _debt_by_ref(result.events, "DebtRepaid").items()}
