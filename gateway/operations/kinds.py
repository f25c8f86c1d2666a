"""The kinds of operation and the states operations and batches go through (stored as their values)."""

from __future__ import annotations

from enum import StrEnum


class Kind(StrEnum):
    EARN = "earn"
    REDEMPTION = "redemption"
    REVERSAL = "reversal"
    AWARD = "award"  # (r2) points without a purchase, for a reason code
    REFUND = "refund"  # (r2) points given back of a redemption (returned goods)
    MIGRATION = "migration"  # (r2) a member's whole account moved to a new address of its own


class Status(StrEnum):
    """An operation: accepted (in the outbox) -> submitted (in a signed batch) -> confirmed or rejected."""

    ACCEPTED = "accepted"
    SUBMITTED = "submitted"
    CONFIRMED = "confirmed"
    REJECTED = "rejected"


class BatchStatus(StrEnum):
    """A batch transaction: signed (stored, maybe broadcast) -> mined -> confirmed; or reverted."""

    SIGNED = "signed"
    MINED = "mined"
    CONFIRMED = "confirmed"
    REVERTED = "reverted"


# Operations still on their way to the chain (what /metrics calls the queue).
IN_FLIGHT = (Status.ACCEPTED, Status.SUBMITTED)
# Kinds whose signature is the partner's (its nonces) and the member's (redemptions, migrations).
PARTNER_SIGNED = (Kind.EARN, Kind.REVERSAL, Kind.AWARD, Kind.REFUND)
MEMBER_SIGNED = (Kind.REDEMPTION, Kind.MIGRATION)
# Kinds whose signature names the member's address (a migration since makes them stale).
ADDRESSED = (Kind.EARN, Kind.AWARD, Kind.REDEMPTION)
