"""How the ledger reports each operation's outcome: the event of each kind's result, the kind
of a rejected operation, and the gateway's code of a contract error."""

from __future__ import annotations

from gateway.chain.ledger import KIND_AWARD, KIND_EARN, KIND_REDEEM, KIND_REFUND, KIND_REVERSE

RESULT_EVENT = {"earn": "Earned", "redemption": "Redeemed", "reversal": "Reversed"}
KIND_OF_EVENT = {event: kind for kind, event in RESULT_EVENT.items()}
# OperationRejected(kind, ...) numbers the kinds as the contract does.
KIND_OF_REJECTION = {KIND_EARN: "earn", KIND_REDEEM: "redemption", KIND_REVERSE: "reversal"}
REJECTED = "OperationRejected"


def error_code(contract_error: str) -> str:
    """A contract error's name as the gateway's snake_case code: InsufficientPoints -> insufficient_points."""
    return "".join("_" + c.lower() if c.isupper() else c for c in contract_error).lstrip("_")


# (r2) Awards and refunds. (A migration is one call that reverts rather than a batch that
# rejects, and its `Migrated` event carries no receipt reference: the submitter reads it.)
RESULT_EVENT.update(award="Awarded", refund="Refunded")
KIND_OF_EVENT.update(Awarded="award", Refunded="refund")
KIND_OF_REJECTION.update({KIND_AWARD: "award", KIND_REFUND: "refund"})
