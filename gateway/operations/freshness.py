"""Checks of what a write carries from outside the gateway, before it is accepted: a receipt's
issue time and salt, and a signature made by a partner or a member (expired? its nonce spent?)."""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from sqlalchemy import select
from sqlalchemy.orm import Session

from gateway.app.runtime import Runtime
from gateway.core.errors import Conflict, ErrorCode, Invalid
from gateway.db.models import Operation
from gateway.operations.kinds import IN_FLIGHT, MEMBER_SIGNED, PARTNER_SIGNED
from gateway.operations.randomness import token_hex16
from gateway.operations.signatures import SignedFields, signing_time

# How far ahead of the gateway's clock (or the chain's, when a development chain's is ahead)
# a receipt's issued_at may be: tills' clocks drift and time zones get mixed up, but a receipt
# from next week is a mistake that would be hashed on-chain for ever.
ISSUED_AT_AHEAD_SECONDS = 86_400


@dataclass(frozen=True)
class Fresh:
    """What the chain said about a signature made outside the gateway, read before the write
    transaction: the latest block's time and whether its nonce is already spent."""

    chain_now: int
    nonce_used: bool


def check_issued_at(runtime: Runtime, issued_at: str | None) -> None:
    """An RFC 3339 time with its zone, not more than ISSUED_AT_AHEAD_SECONDS ahead."""
    if issued_at is None:
        return
    try:
        moment = datetime.fromisoformat(issued_at)
    except ValueError:
        moment = None
    if moment is None or moment.tzinfo is None or "T" not in issued_at:
        raise Invalid("issued_at must be an RFC 3339 time with its zone", code=ErrorCode.VALIDATION_ERROR)
    at = moment.timestamp()
    # The machine's clock first: the chain's is read only for a receipt that seems ahead.
    if at - time.time() > ISSUED_AT_AHEAD_SECONDS and at - signing_time(runtime) > ISSUED_AT_AHEAD_SECONDS:
        raise Invalid("issued_at is more than a day in the future", code=ErrorCode.VALIDATION_ERROR)


def read_fresh(runtime: Runtime, function: str, signer: int | str, nonce: int) -> Fresh:
    """The chain's clock and whether the signer's nonce is spent (`partnerNonceUsed` or
    `memberNonceUsed`), in one round trip where the chain allows."""
    (used,) = runtime.ledger.views([(function, (signer, nonce))])
    return Fresh(chain_now=runtime.chain.latest_timestamp(), nonce_used=bool(used))


def check_fresh(fresh: Fresh | None, given: SignedFields | None, in_flight: bool) -> None:
    """Refuses a signature the contract would refuse: expired, or its nonce spent on-chain or
    by an operation already on its way there (`in_flight`). Better a 4xx now than a 202
    whose receipt id is used up by a rejection."""
    if given is None or fresh is None:
        return
    if given.deadline <= fresh.chain_now:
        raise Invalid(
            f"the signature expired at {given.deadline}; the chain's time is {fresh.chain_now}",
            code=ErrorCode.SIGNATURE_EXPIRED,
        )
    if fresh.nonce_used or in_flight:
        raise Conflict(
            f"nonce {given.nonce} is already used by this signer"
            + (" on-chain" if fresh.nonce_used else " (an operation on its way to the chain)"),
            code=ErrorCode.NONCE_ALREADY_USED,
        )


def nonce_in_flight(
    session: Session, *, nonce: int, partner_id: int | None = None, member_id: str | None = None
) -> bool:
    """Whether an accepted, not yet confirmed operation of this signer carries `nonce`."""
    query = select(Operation.id).where(Operation.status.in_(IN_FLIGHT), Operation.nonce == Decimal(nonce))
    if member_id is not None:
        query = query.where(Operation.member_id == member_id, Operation.kind.in_(MEMBER_SIGNED))
    else:
        query = query.where(Operation.partner_id == partner_id, Operation.kind.in_(PARTNER_SIGNED))
    return session.scalar(query.limit(1)) is not None


def salt_for(given: str | None, signature: SignedFields | None) -> str:
    """The receipt's salt (SPEC section 4, r2): the one sent with the operation; for one the
    gateway signs, a fresh one if none was sent; for one signed outside the gateway without a
    salt, none (the signer hashed the receipt without it: an SDK from before the salt)."""
    if given is not None:
        return given
    return "" if signature is not None else token_hex16()  # as new_receipt_salt(), drawn from a buffer
