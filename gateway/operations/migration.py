"""Accepting member migrations (r2): a member moves all its points, expiry, tier history and
assigned tier to a new address of its own, authorized by its PIN (a custodial member: the
gateway signs with the custodial key) or its own signature (a self-custody member).

A migration and the member's other operations must not cross on their way to the chain: an
earn signed for the old address and mined after the migration would land on an address no key
can move points from any more. So a migration is refused while the member has operations in
flight (`member_busy`); while it is in flight the member's awards, refunds and redemptions are
refused (`migration_in_progress`), and the submitter holds the member's earns back until it is
confirmed and refuses those signed for the old address (`member_migrated`, submitter/holds.py).
Once confirmed, the member's record points at the new address and is no longer custodial
(submitter/receipts.py calls `migrated`)."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal

from eth_utils import to_checksum_address
from sqlalchemy import select
from sqlalchemy.orm import Session

from gateway.accounts.members import (
    WrongPin,
    check_member_address,
    get_member,
    pin_locked,
    record_right_pin,
    record_wrong_pin,
)
from gateway.app.runtime import Runtime
from gateway.chain.ledger import LedgerRevert, rpc
from gateway.core.errors import Conflict, ErrorCode, Forbidden, Invalid
from gateway.core.security import Caller, verify_pin
from gateway.db.models import Member, Operation
from gateway.operations.freshness import check_fresh, nonce_in_flight, read_fresh
from gateway.operations.idempotency import Response
from gateway.operations.kinds import IN_FLIGHT, Kind
from gateway.operations.signatures import MANAGED_DEADLINE_SECONDS, SignedFields, now, signing_time, verify_signature
from gateway.operations.store import check_duplicate, new_operation, store_accepted
from partners.signing import CompactSignature, MigrateMessage, Receipt, new_receipt_salt, sign


@dataclass(frozen=True)
class MigrationRequest:
    """A validated `POST /v1/members/{member_id}/migrate`."""

    member_id: str
    address: str
    pin: str | None = None
    member_signature: SignedFields | None = None


def check_not_migrating(session: Session, member_id: str) -> None:
    """Refuses an operation of a member whose migration is on its way to the chain."""
    pending = session.scalar(
        select(Operation.id)
        .where(Operation.member_id == member_id, Operation.kind == Kind.MIGRATION, Operation.status.in_(IN_FLIGHT))
        .limit(1)
    )
    if pending is not None:
        raise Conflict(
            f"member {member_id} is moving to a new address (operation {pending}); try again once it is confirmed",
            code=ErrorCode.MIGRATION_IN_PROGRESS,
            operation_id=pending,
        )


def destination(receipt_doc: str) -> str:
    """The new address a stored migration moves to (its receipt document says)."""
    return str(json.loads(receipt_doc)["extra"]["to"])


def migration_calldata(runtime: Runtime, message: MigrateMessage, signature: CompactSignature) -> bytes:
    return runtime.ledger.encode_call(
        "migrate",
        to_checksum_address(message.from_member),
        to_checksum_address(message.to),
        message.nonce,
        message.deadline,
        signature.r,
        signature.vs,
    )


def simulate(runtime: Runtime, data: bytes) -> None:
    """Runs the migration as a call on the latest block; raises LedgerRevert as the chain would."""
    call = {"from": runtime.relayer.address, "to": runtime.ledger.address, "data": "0x" + data.hex()}
    rpc(runtime.chain.w3, "eth_call", [call, "latest"])


def refusal(error: LedgerRevert) -> Exception:
    """The contract's reason for refusing a migration, as the gateway's error."""
    name = error.error.name
    if name == "AccountInUse":
        return Conflict("the new address has held points or taken part in a migration", code=ErrorCode.ADDRESS_IN_USE)
    if name == "InvalidSignature":
        return Invalid("the member's signature does not authorize this migration", code=ErrorCode.INVALID_SIGNATURE)
    if name == "SignatureExpired":
        return Invalid("the member's signature has expired", code=ErrorCode.SIGNATURE_EXPIRED)
    if name == "NonceAlreadyUsed":
        return Conflict("the member's nonce is already used", code=ErrorCode.NONCE_ALREADY_USED)
    return Conflict(f"the ledger refuses this migration: {error.error}", code=ErrorCode.LEDGER_REVERT)


def accept_migration(
    runtime: Runtime, session: Session, *, caller: Caller, request: MigrationRequest, pin_ok: bool = False
) -> Response:
    """Stores the migration (in the caller's transaction) and returns its 202. `pin_ok`: the PIN
    was already checked outside the transaction (see `migrate`)."""
    assert caller.partner_id is not None
    member = get_member(session, request.member_id, for_update=True)
    check_member_address(runtime, request.address)
    to = to_checksum_address(request.address)
    if to == member.address:
        raise Invalid("the member already holds its points at this address", code=ErrorCode.VALIDATION_ERROR)
    owner = session.scalar(select(Member.member_id).where(Member.address == to))
    if owner is not None:
        raise Conflict(f"address {to} already belongs to a member", code=ErrorCode.DUPLICATE_ADDRESS)
    check_not_migrating(session, member.member_id)
    busy = session.scalar(
        select(Operation.id).where(Operation.member_id == member.member_id, Operation.status.in_(IN_FLIGHT)).limit(1)
    )
    if busy is not None:
        raise Conflict(
            f"member {member.member_id} has operations on their way to the chain (operation {busy}); "
            "migrate once they are confirmed",
            code=ErrorCode.MEMBER_BUSY,
            operation_id=busy,
        )
    receipt_id = f"migration/{member.member_id}/{to}"
    check_duplicate(session, caller.partner_id, Kind.MIGRATION, receipt_id)
    domain = runtime.ledger.domain
    if member.custodial:
        if request.pin is None:
            raise Invalid("a custodial member authorizes its migration with its PIN", code=ErrorCode.PIN_REQUIRED)
        if pin_locked(session, member, caller.partner_id):
            raise Forbidden("this member's PIN is locked here; an admin can unlock", code=ErrorCode.PIN_LOCKED)
        if not pin_ok and not verify_pin(request.pin, str(member.pin_hash)):
            raise WrongPin(member.member_id, caller.partner_id)
        record_right_pin(session, member, caller.partner_id)
        nonce, deadline = int(member.next_nonce), signing_time(runtime) + MANAGED_DEADLINE_SECONDS
        member.next_nonce += 1
        message = MigrateMessage(member.address, to, nonce, deadline)
        signature = sign(domain, message, runtime.private_key(str(member.encrypted_key)))
    else:
        given = request.member_signature
        if given is None:
            raise Invalid(
                "a self-custody member signs its migration: send signature, nonce and deadline",
                code=ErrorCode.SIGNATURE_REQUIRED,
            )
        fresh = read_fresh(runtime, "memberNonceUsed", member.address, given.nonce)
        check_fresh(fresh, given, nonce_in_flight(session, nonce=given.nonce, member_id=member.member_id))
        message = MigrateMessage(member.address, to, given.nonce, given.deadline)
        signature = verify_signature(domain, message, given.signature, member.address)
    try:  # the chain is the final word: what it would refuse now is refused now
        simulate(runtime, migration_calldata(runtime, message, signature))
    except LedgerRevert as exc:
        raise refusal(exc) from exc
    receipt = Receipt(
        kind=Kind.MIGRATION,
        partner_id=caller.partner_id,
        receipt_id=receipt_id,
        member_id=member.member_id,
        issued_at=now().isoformat(),
        extra={"from": member.address, "to": to},
        salt=new_receipt_salt(),
    )
    op = new_operation(
        kind=Kind.MIGRATION,
        partner_id=caller.partner_id,
        member_id=member.member_id,
        receipt_id=receipt_id,
        receipt=receipt,
        nonce=Decimal(message.nonce),
        deadline=message.deadline,
        signature=signature.hex(),
        member_address=member.address,
    )
    return store_accepted(session, op, member_id=member.member_id, address=to)


def migrate(
    runtime: Runtime,
    *,
    store: Callable[[Callable[[Session], Response]], Response],
    caller: Caller,
    request: MigrationRequest,
) -> Response:
    """Checks the PIN outside the write transaction (scrypt is slow) and accepts the migration
    through `store` (the idempotent write). A wrong PIN counts like a redemption's: in its own
    transaction, MAX_PIN_ATTEMPTS in a row at one partner lock the PIN there."""
    assert caller.partner_id is not None
    try:
        pin_ok = False
        if request.pin is not None:
            with runtime.sessions() as session:
                member = get_member(session, request.member_id)
                locked = pin_locked(session, member, caller.partner_id)
            if member.custodial and not locked:
                if not verify_pin(request.pin, str(member.pin_hash)):
                    raise WrongPin(member.member_id, caller.partner_id)
                pin_ok = True
        return store(lambda session: accept_migration(runtime, session, caller=caller, request=request, pin_ok=pin_ok))
    except WrongPin as exc:
        record_wrong_pin(runtime, exc.member_id, exc.partner_id)
        raise


def migrated(session: Session, runtime: Runtime, *, member_id: str, source: str, target: str) -> None:
    """A confirmed migration: the member's record follows its points (called by the submitter
    in the transaction that records the outcome). The custodial key and PIN are dropped: the
    old address holds nothing any more and can never move points again."""
    member = session.get(Member, member_id, with_for_update=True)
    if member is None or member.address.lower() != source.lower():
        return  # already moved (a reorg replayed the confirmation)
    member.address = to_checksum_address(target)
    member.custodial = False
    member.encrypted_key = None
    member.pin_hash = None
    runtime.forget_member(member_id)
