"""Members: enrolment (custodial with a PIN, or self-custody), their view from the chain, PIN lockout.

PIN lockout is counted per member and partner: MAX_PIN_ATTEMPTS wrong PINs in a row at one
partner lock the member's PIN at that partner only. One partner's key (a stolen till, a
rogue integration) can therefore not lock a member out of the whole coalition. Guessing
across partners is still bounded: after GLOBAL_LOCK_ATTEMPTS wrong PINs in a row in all
(which takes at least three partners' tills) the PIN is locked everywhere. A right PIN
resets the member's count and the partner's; an admin's unlock resets everything.
"""

from __future__ import annotations

from typing import Any

from eth_utils import to_checksum_address
from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from gateway.app.runtime import Runtime
from gateway.core.errors import Conflict, ErrorCode, Forbidden, Invalid, NotFound
from gateway.core.security import (
    Caller,
    encrypt_private_key,
    hash_pin,
    new_private_key,
)
from gateway.db.models import Member, PinFailure
from gateway.points.rules import month_label
from partners.signing import address_of

MAX_PIN_ATTEMPTS = 5  # in a row at one partner: the PIN is locked there
GLOBAL_LOCK_ATTEMPTS = 3 * MAX_PIN_ATTEMPTS  # in a row in all: locked everywhere
ZERO_ADDRESS = "0x" + "0" * 40


def create_member(
    runtime: Runtime, session: Session, *, caller: Caller, member_id: str, address: str | None, pin: str | None
) -> dict[str, Any]:
    if member_id in (".", ".."):
        raise Invalid("'.' and '..' cannot be used in a URL path", code=ErrorCode.VALIDATION_ERROR)
    if address is not None and pin is not None:
        raise Invalid(
            "give a pin (custodial member) or an address (self-custody), not both", code=ErrorCode.VALIDATION_ERROR
        )
    if address is not None:
        check_member_address(runtime, address)
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


def check_member_address(runtime: Runtime, address: str) -> None:
    """Refuses addresses that no member can hold points at: the zero address (points minted
    there are burnt) and the ledger's own contract (no key can ever move them)."""
    checksummed = to_checksum_address(address)
    if checksummed == ZERO_ADDRESS:
        raise Invalid("the zero address cannot hold points", code=ErrorCode.VALIDATION_ERROR)
    if checksummed == to_checksum_address(runtime.ledger.address):
        raise Invalid("that is the ledger contract's own address, not a member's", code=ErrorCode.VALIDATION_ERROR)
    digits = address[2:]
    if digits != digits.lower() and digits != digits.upper() and checksummed != address:
        raise Invalid("the address's mixed case is not its EIP-55 checksum (a typo?)", code=ErrorCode.VALIDATION_ERROR)


def member_view(runtime: Runtime, session: Session, *, member_id: str) -> dict[str, Any]:
    member = get_member(session, member_id)
    ledger = runtime.ledger
    block = runtime.chain.w3.eth.block_number
    balance, tier, qualifying, (months, points), debt = ledger.views(
        [
            ("balanceOf", (member.address,)),
            ("tierOf", (member.address,)),
            ("qualifyingPoints", (member.address,)),
            ("expiringOf", (member.address,)),
            ("debtOf", (member.address,)),  # (r2) what reversals left it owing
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
        "debt": int(debt),
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

    def __init__(self, member_id: str, partner_id: int) -> None:
        super().__init__("the PIN is wrong")
        self.member_id, self.partner_id = member_id, partner_id


def pin_locked(session: Session, member: Member, partner_id: int) -> bool:
    """Whether the member's PIN is locked at this partner (or everywhere)."""
    if member.locked:
        return True
    row = session.get(PinFailure, (member.member_id, partner_id))
    return row is not None and row.locked


def record_wrong_pin(runtime: Runtime, member_id: str, partner_id: int) -> None:
    """Counts a wrong PIN in its own transaction (the redemption itself changed nothing)."""
    with runtime.writes.begin() as session:
        member = get_member(session, member_id, for_update=True)  # serializes the member's counts
        row = session.get(PinFailure, (member_id, partner_id))
        if row is None:
            row = PinFailure(member_id=member_id, partner_id=partner_id, failures=0, locked=False)
            session.add(row)
        row.failures += 1
        row.locked = row.failures >= MAX_PIN_ATTEMPTS
        member.failed_pin_attempts += 1
        if member.failed_pin_attempts >= GLOBAL_LOCK_ATTEMPTS:
            member.locked = True


def record_right_pin(session: Session, member: Member, partner_id: int) -> None:
    """A right PIN (in the redemption's transaction): the counts start again."""
    member.failed_pin_attempts = 0
    row = session.get(PinFailure, (member.member_id, partner_id))
    if row is not None:
        session.delete(row)


def unlock_member(session: Session, *, member_id: str) -> None:
    member = get_member(session, member_id, for_update=True)
    member.locked, member.failed_pin_attempts = False, 0
    session.execute(delete(PinFailure).where(PinFailure.member_id == member_id))
