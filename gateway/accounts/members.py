"""Members: enrolment (custodial with a PIN, or self-custody), their view from the chain, PIN lockout."""

from __future__ import annotations

from typing import Any

from eth_utils import to_checksum_address
from sqlalchemy import select
from sqlalchemy.orm import Session

from gateway.app.runtime import Runtime
from gateway.core.errors import Conflict, ErrorCode, Forbidden, Invalid, NotFound
from gateway.core.security import (
    Caller,
    encrypt_private_key,
    hash_pin,
    new_private_key,
)
from gateway.db.models import Member
from gateway.points.rules import month_label
from partners.signing import address_of

MAX_PIN_ATTEMPTS = 5


def create_member(
    runtime: Runtime, session: Session, *, caller: Caller, member_id: str, address: str | None, pin: str | None
) -> dict[str, Any]:
    if session.get(Member, member_id) is not None:
        raise Conflict(f"member {member_id} already exists", code=ErrorCode.DUPLICATE_MEMBER)
    if address is None:
        if pin is None:
            raise Invalid("a custodial member (no address) needs a PIN", code=ErrorCode.PIN_REQUIRED)
        private_key = new_private_key()
        member = Member(
            member_id=member_id,
            address=address_of(private_key),
            custodial=True,
            encrypted_key=encrypt_private_key(private_key, runtime.kek),
            pin_hash=hash_pin(pin),
            enrolled_by=caller.partner_id,
        )
    else:
        checksummed = to_checksum_address(address)
        if session.scalar(select(Member).where(Member.address == checksummed)) is not None:
            raise Conflict(f"address {checksummed} already belongs to a member", code=ErrorCode.DUPLICATE_ADDRESS)
        member = Member(member_id=member_id, address=checksummed, custodial=False, enrolled_by=caller.partner_id)
    session.add(member)
    return {"member_id": member_id, "address": member.address, "custodial": member.custodial}


def member_view(runtime: Runtime, session: Session, *, member_id: str) -> dict[str, Any]:
    member = get_member(session, member_id)
    ledger = runtime.ledger
    block = runtime.chain.w3.eth.block_number
    balance, tier, qualifying, (months, points) = ledger.views(
        [
            ("balanceOf", (member.address,)),
            ("tierOf", (member.address,)),
            ("qualifyingPoints", (member.address,)),
            ("expiringOf", (member.address,)),
        ],
        block,
    )
    tiers = runtime.settings.coalition.tiers
    return {
        "member_id": member.member_id,
        "address": member.address,
        "custodial": member.custodial,
        "balance": balance,
        "tier": tiers[tier].name if tier < len(tiers) else tier,
        "tier_index": tier,
        "qualifying_points": qualifying,
        "expiring": [{"month": month_label(m), "points": p} for m, p in zip(months, points, strict=True)],
        "block_number": block,
    }


def get_member(session: Session, member_id: str, *, for_update: bool = False) -> Member:
    query = select(Member).where(Member.member_id == member_id)
    member = session.scalar(query.with_for_update() if for_update else query)
    if member is None:
        raise NotFound(f"no member {member_id}", code=ErrorCode.UNKNOWN_MEMBER)
    return member


class WrongPin(Forbidden):
    code = ErrorCode.INVALID_PIN

    def __init__(self, member_id: str) -> None:
        super().__init__("the PIN is wrong")
        self.member_id = member_id


def record_wrong_pin(runtime: Runtime, member_id: str) -> None:
    """Counts a wrong PIN in its own transaction (the redemption itself changed nothing)."""
    with runtime.writes.begin() as session:
        member = get_member(session, member_id, for_update=True)
        member.failed_pin_attempts += 1
        if member.failed_pin_attempts >= MAX_PIN_ATTEMPTS:
            member.locked = True


def unlock_member(session: Session, *, member_id: str) -> None:
    member = get_member(session, member_id, for_update=True)
    member.locked, member.failed_pin_attempts = False, 0
