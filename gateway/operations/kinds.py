"""The kinds of operation and the states operations and batches go through (stored as their values)."""

from __future__ import annotations

from enum import StrEnum


class Kind(StrEnum):
    EARN = "earn"
    REDEMPTION = "redemption"
    REVERSAL = "reversal"


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
