"""What the gateway does for its callers: keys, partners, members, and durable acceptance of
earns, redemptions and reversals. Raises domain errors (gateway.errors); never HTTP ones.

Every write is accepted in one database transaction together with its Idempotency-Key
record (the outbox): once the caller has its 202, the submitter will put the operation on
the chain exactly once.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from eth_keys import keys
from eth_utils import to_checksum_address
from sqlalchemy import bindparam, func, insert, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from gateway.chain.ledger import LedgerRevert
from gateway.db.models import ApiKey, Base, Member, Operation, Partner, utcnow
from gateway.errors import Conflict, Forbidden, Invalid, NotFound, Unauthorized
from gateway.ledger.rules import BPS, MAX_OP_POINTS, month_label
from gateway.ledger.runtime import Runtime
from gateway.ledger.writer import deferred
from gateway.security import (
    encrypt_private_key,
    hash_api_key,
    hash_pin,
    new_api_key,
    new_private_key,
    verify_pin,
)
from partners.signing import (
    CompactSignature,
    Domain,
    EarnMessage,
    Message,
    Receipt,
    RedeemMessage,
    ReverseMessage,
    address_of,
    earn_leaf,
    sign,
)

MANAGED_DEADLINE_SECONDS = 90 * 86_400  # a signature the gateway makes stays valid this long
MAX_PIN_ATTEMPTS = 5


@dataclass(frozen=True)
class Caller:
    """The authenticated API key."""

    key_id: str
    role: str
    partner_id: int | None


@dataclass(frozen=True)
class Response:
    status: int
    body: dict[str, Any]


# ------------------------------------------------------------------ API keys


def authenticate(session: Session, key: str | None) -> Caller:
    if not key:
        raise Unauthorized("an API key is required: Authorization: Bearer <key>", code="missing_api_key")
    row = session.scalar(select(ApiKey).where(ApiKey.key_hash == hash_api_key(key)))
    if row is None or row.revoked_at is not None:
        raise Unauthorized("this API key is not valid", code="invalid_api_key")
    return Caller(row.id, row.role, row.partner_id)


def cached_caller(runtime: Runtime, key: str | None) -> Caller | None:
    """The caller of a key authenticated a moment ago (no database read), else None."""
    if not key:
        return None
    found = runtime.cached_caller(hash_api_key(key))
    return found if isinstance(found, Caller) else None


def authenticate_and_remember(runtime: Runtime, key: str | None) -> Caller:
    with runtime.sessions() as session:
        who = authenticate(session, key)
    assert key is not None
    runtime.remember_caller(hash_api_key(key), who)
    return who


def create_api_key(session: Session, *, role: str, partner_id: int | None) -> tuple[ApiKey, str]:
    if role == "partner":
        if partner_id is None or session.get(Partner, partner_id) is None:
            raise NotFound(f"no partner {partner_id}", code="unknown_partner")
    elif partner_id is not None:
        raise Invalid("only partner keys belong to a partner", code="validation_error")
    key_id, key, key_hash = new_api_key()
    row = ApiKey(id=key_id, key_hash=key_hash, role=role, partner_id=partner_id)
    session.add(row)
    return row, key


def revoke_api_key(session: Session, *, key_id: str) -> None:
    row = session.get(ApiKey, key_id)
    if row is None or row.revoked_at is not None:
        raise NotFound(f"no active API key {key_id}", code="unknown_api_key")
    row.revoked_at = datetime.now(UTC)


# ------------------------------------------------------------------ idempotency


def request_hash(body: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def idempotent(
    runtime: Runtime, *, scope: str, key: str | None, body: dict[str, Any], effect: Callable[[Session], Response]
) -> Response:
    """Runs `effect` and stores its response under (scope, key) in the same transaction.

    Same key, same body: the stored response. Same key, other body: idempotency_mismatch.
    Two concurrent first requests: the unique constraints (receipt, idempotency key) let one
    commit; the other rolls back and returns the winner's response.
    """
    digest = request_hash(body)
    try:
        result: Response = runtime.writer.run(_idempotent_work(scope, key, digest, effect))
    except (IntegrityError, Conflict) as exc:
        return _race_winner(runtime, scope, key, digest, exc)
    runtime.work_ready.set()
    return result


async def idempotent_async(
    runtime: Runtime,
    *,
    scope: str,
    key: str | None,
    body: dict[str, Any],
    effect: Callable[[Session], Response],
    refuses_before_writing: bool = False,
) -> Response:
    """`idempotent` for an event loop: waits for the group commit without holding a thread.

    `refuses_before_writing`: `effect` raises its domain errors before its first write (see
    WriteQueue), as `accept_earn` does."""
    digest = request_hash(body)
    try:
        work = _idempotent_work(scope, key, digest, effect)
        future = runtime.writer.submit(work, refuses_before_writing=refuses_before_writing)
        result: Response = await asyncio.wrap_future(future)
    except (IntegrityError, Conflict) as exc:
        return _race_winner(runtime, scope, key, digest, exc)
    runtime.work_ready.set()
    return result


def _idempotent_work(
    scope: str, key: str | None, digest: str, effect: Callable[[Session], Response]
) -> Callable[[Session], Response]:
    def work(session: Session) -> Response:
        group = deferred(session)
        # A retry: the first answer, looked up inside the write transaction. In a group of
        # bare jobs not looked up: a used key fails the group's insert and the careful re-run
        # of the group finds it here.
        if key is not None and group is None:
            stored = _stored(session, scope, key, digest)
            if stored is not None:
                return stored
        response = effect(session)
        if key is not None:
            row = {
                "scope": scope,
                "key": key,
                "request_hash": digest,
                "status_code": response.status,
                "response_body": json.dumps(response.body),
                "created_at": utcnow(),
            }
            if group is not None:
                group.add(_insert_idempotency, row)
            else:  # a lost race on the key fails here, inside this write's savepoint
                session.connection().execute(_INSERT_IDEMPOTENCY, row)
        return response

    return work


def _race_winner(runtime: Runtime, scope: str, key: str | None, digest: str, error: Exception) -> Response:
    """After a refused write: a concurrent request with the same key (another process, on
    PostgreSQL) may have committed first; its response is the answer. Else the error stands."""
    if key is not None:
        with runtime.sessions() as session:
            stored = _stored(session, scope, key, digest)
        if stored is not None:
            return stored
    raise error


def _stored(session: Session, scope: str, key: str, digest: str) -> Response | None:
    row = session.connection().execute(_STORED_RESPONSE, {"scope": scope, "key": key}).first()
    if row is None:
        return None
    if row.request_hash != digest:
        raise Invalid("this Idempotency-Key was used with a different request body", code="idempotency_mismatch")
    return Response(row.status_code, json.loads(row.response_body))


# ------------------------------------------------------------------ partners and members


def create_partner(
    runtime: Runtime,
    session: Session,
    *,
    name: str,
    currency: str,
    rate_points: int,
    rate_per_minor_units: int,
    allowance: int,
    signer_address: str | None,
) -> Response:
    managed = signer_address is None
    encrypted = None
    if managed:
        private_key = new_private_key()
        signer = address_of(private_key)
        encrypted = encrypt_private_key(private_key, runtime.kek)
    else:
        signer = to_checksum_address(str(signer_address))
    with runtime.operator_lock:
        try:
            partner_id = runtime.ledger.add_partner(
                runtime.operator,
                signer=signer,
                rate_points=rate_points,
                rate_per_minor_units=rate_per_minor_units,
                currency=currency,
                allowance=allowance,
            )
        except LedgerRevert as exc:
            raise Invalid(f"the ledger refused the partner: {exc.error}", code="invalid_partner") from exc
    session.add(
        Partner(
            id=partner_id,
            name=name,
            currency=currency,
            rate_points=rate_points,
            rate_per_minor_units=rate_per_minor_units,
            signer_address=signer,
            managed=managed,
            encrypted_key=encrypted,
        )
    )
    session.flush()
    _, key = create_api_key(session, role="partner", partner_id=partner_id)
    return Response(
        201,
        {
            "partner_id": partner_id,
            "api_key": key,
            "signer_address": signer,
            "managed": managed,
            "name": name,
            "currency": currency,
            "allowance": allowance,
            "earn_rate": {"points": rate_points, "per_minor_units": rate_per_minor_units},
        },
    )


def create_member(
    runtime: Runtime, session: Session, *, caller: Caller, member_id: str, address: str | None, pin: str | None
) -> Response:
    if session.get(Member, member_id) is not None:
        raise Conflict(f"member {member_id} already exists", code="duplicate_member")
    if address is None:
        if pin is None:
            raise Invalid("a custodial member (no address) needs a PIN", code="pin_required")
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
            raise Conflict(f"address {checksummed} already belongs to a member", code="duplicate_address")
        member = Member(member_id=member_id, address=checksummed, custodial=False, enrolled_by=caller.partner_id)
    session.add(member)
    return Response(201, {"member_id": member_id, "address": member.address, "custodial": member.custodial})


def member_view(runtime: Runtime, session: Session, *, member_id: str) -> dict[str, Any]:
    member = _member(session, member_id)
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


def _member(session: Session, member_id: str, *, for_update: bool = False) -> Member:
    query = select(Member).where(Member.member_id == member_id)
    member = session.scalar(query.with_for_update() if for_update else query)
    if member is None:
        raise NotFound(f"no member {member_id}", code="unknown_member")
    return member


def _partner(session: Session, partner_id: int, *, for_update: bool = False) -> Partner:
    query = select(Partner).where(Partner.id == partner_id)
    partner = session.scalar(query.with_for_update() if for_update else query)
    if partner is None:
        raise NotFound(f"no partner {partner_id}", code="unknown_partner")
    return partner


# ------------------------------------------------------------------ operations


@dataclass(frozen=True)
class SignedFields:
    signature: str
    nonce: int
    deadline: int


def _now() -> datetime:
    return datetime.now(UTC)


def _signing_time(runtime: Runtime) -> int:
    """What a deadline the gateway signs counts from: the contract checks deadlines against
    the chain's clock, which a development chain may have moved ahead of this machine's."""
    return max(int(_now().timestamp()), runtime.chain_clock())


def _verify(domain: Domain, message: Message, signature: str, expected: str) -> CompactSignature:
    try:
        compact = CompactSignature.from_bytes(bytes.fromhex(signature.removeprefix("0x")))
        vs = int.from_bytes(compact.vs, "big")
        sig = keys.Signature(vrs=(vs >> 255, int.from_bytes(compact.r, "big"), vs & ((1 << 255) - 1)))
        recovered = sig.recover_public_key_from_msg_hash(domain.digest(message)).to_checksum_address()
    except Exception as exc:  # noqa: BLE001 - any malformed signature is the same client error
        raise Invalid("the signature could not be read", code="invalid_signature") from exc
    if recovered != to_checksum_address(expected):
        raise Invalid(f"the signature is not from {expected}", code="invalid_signature")
    return compact


def _partner_signature(
    runtime: Runtime,
    partner: Partner,
    given: SignedFields | None,
    issued_at: str | None,
    message: Callable[[int, int], Message],
    reserved_nonce: int | None = None,
) -> tuple[int, int, str]:
    """(nonce, deadline, signature) of a partner's earn or reversal: made here with the
    partner's managed key, or checked here when the partner signed it itself."""
    if given is None:
        if not partner.managed or partner.encrypted_key is None:
            raise Invalid("this partner keeps its own key: send partner_signature", code="signature_required")
        deadline = _signing_time(runtime) + MANAGED_DEADLINE_SECONDS
        if reserved_nonce is not None:
            nonce = reserved_nonce
        else:  # taken in the caller's transaction, which holds the partner row
            nonce = partner.next_nonce
            partner.next_nonce += 1
        return (
            nonce,
            deadline,
            sign(runtime.ledger.domain, message(nonce, deadline), runtime.private_key(partner.encrypted_key)).hex(),
        )
    if issued_at is None:
        raise Invalid(
            "a signed operation names its issued_at: the signature covers the receipt", code="validation_error"
        )
    signed = message(given.nonce, given.deadline)
    return (
        given.nonce,
        given.deadline,
        _verify(runtime.ledger.domain, signed, given.signature, partner.signer_address).hex(),
    )


def _new_operation(*, receipt: Receipt, **fields: Any) -> dict[str, Any]:
    """An accepted operation's row, with its canonical receipt document and that document's
    hash. A plain dict: on the hot path an ORM instance costs more than the row it holds."""
    return {
        "id": secrets.token_hex(16),
        "status": "accepted",
        "receipt_doc": receipt.canonical().decode(),
        "receipt_ref": "0x" + receipt.ref().hex(),
        **fields,
    }


# Core, on the session's connection: no ORM compile and bookkeeping on the hot path.
_OPERATIONS = Base.metadata.tables["operations"]
_OPERATION_KEYS = [c.key for c in _OPERATIONS.columns if c.key != "seq"]
_INSERT_OPERATION_SEQ = insert(_OPERATIONS).returning(_OPERATIONS.c.id, _OPERATIONS.c.seq)
_RECEIPTS = Base.metadata.tables["receipts"]
_INSERT_RECEIPT = insert(_RECEIPTS)
_IDEMPOTENCY = Base.metadata.tables["idempotency_keys"]
_INSERT_IDEMPOTENCY = insert(_IDEMPOTENCY)
_STORED_RESPONSE = select(_IDEMPOTENCY.c.request_hash, _IDEMPOTENCY.c.status_code, _IDEMPOTENCY.c.response_body).where(
    _IDEMPOTENCY.c.scope == bindparam("scope"), _IDEMPOTENCY.c.key == bindparam("key")
)
_RECEIPT_TAKEN = select(_OPERATIONS.c.id).where(
    _OPERATIONS.c.partner_id == bindparam("partner_id"),
    _OPERATIONS.c.kind == bindparam("kind"),
    _OPERATIONS.c.receipt_id == bindparam("receipt_id"),
)


# The custody copy's columns that it shares with the operation, under the same names.
_RECEIPT_FROM_OPERATION = [c.key for c in _RECEIPTS.columns if c.key not in ("operation_id", "accepted_at")]


def _accepted(session: Session, op: dict[str, Any], **extra: Any) -> Response:
    """Stores the operation (in the caller's transaction) and the 202 the caller is owed."""
    # Core inserts: the unit of work's bookkeeping costs more than the rows on the hot path.
    values = {c: v for c in _OPERATION_KEYS if (v := op.get(c)) is not None}
    values["created_at"] = values["updated_at"] = utcnow()  # the machine clock: the batch window counts from it
    # The custody copy `loyalty reindex` rebuilds the operation's index row from.
    receipt = {c: values.get(c) for c in _RECEIPT_FROM_OPERATION}
    receipt.update(operation_id=values["id"], accepted_at=values["created_at"])
    group = deferred(session)
    if group is not None:
        group.add(_insert_accepted, (values, receipt))
    else:
        _insert_accepted(session, [(values, receipt)])
    return Response(
        202,
        {
            "operation_id": values["id"],
            "status": values["status"],
            "points": values.get("points"),
            "receipt_ref": values["receipt_ref"],
            **extra,
        },
    )


def _insert_accepted(session: Session, accepted: list[tuple[dict[str, Any], dict[str, Any]]]) -> None:
    """Operations and their custody copies, one executemany per shape of row."""
    connection = session.connection()
    shapes: dict[tuple[str, ...], list[dict[str, Any]]] = {}
    for values, _ in accepted:  # an executemany takes rows with the same columns
        shapes.setdefault(tuple(values), []).append(values)
    seqs: dict[str, int] = {}
    for rows in shapes.values():
        inserted = connection.execute(_INSERT_OPERATION_SEQ, rows)
        seqs.update((row.id, row.seq) for row in inserted)
    receipts = [{**receipt, "seq": seqs[values["id"]]} for values, receipt in accepted]
    connection.execute(_INSERT_RECEIPT, receipts)


def _insert_idempotency(session: Session, rows: list[dict[str, Any]]) -> None:
    session.connection().execute(_INSERT_IDEMPOTENCY, rows)


def _duplicate_check(session: Session, partner_id: int, kind: str, receipt_id: str) -> None:
    if deferred(session) is not None:
        return  # the unique constraint refuses the group's insert; the careful re-run says which
    exists = (
        session.connection()
        .execute(_RECEIPT_TAKEN, {"partner_id": partner_id, "kind": kind, "receipt_id": receipt_id})
        .scalar()
    )
    if exists is not None:
        raise Conflict(
            f"receipt {receipt_id} already has an {kind} (operation {exists})",
            code="duplicate_receipt",
            operation_id=exists,
        )


@dataclass(frozen=True)
class Prepared:
    """What a write needs from the chain (and the PIN check), gathered before its database
    transaction so that no lock is held while the chain or scrypt is busy."""

    address: str
    tier: int = 0
    balance: int = 0
    pin_ok: bool = False
    nonce: int | None = None  # a managed partner's signature nonce, reserved in advance


def prepare_earn(runtime: Runtime, *, caller: Caller, member_id: str, self_signed: bool) -> Prepared:
    found = runtime.member_address(member_id)
    if found is None:
        raise NotFound(f"no member {member_id}", code="unknown_member")
    assert caller.partner_id is not None
    # A managed partner's nonce is reserved here, outside the write transaction (a nonce
    # left unused by a refused request is harmless: the contract's nonces are a bitmap).
    nonce = None if self_signed else runtime.partner_nonce(caller.partner_id)
    return Prepared(found[0], tier=runtime.tier_of(found[0]), nonce=nonce)


def prepare_earn_cached(runtime: Runtime, *, caller: Caller, member_id: str, self_signed: bool) -> Prepared | None:
    """`prepare_earn` from this process's caches alone (no database, no chain), or None: the
    event loop takes this path and hands a miss to a worker thread."""
    found = runtime.cached_member(member_id)
    tier = runtime.cached_tier(found[0]) if found else None
    if found is None or tier is None:
        return None
    nonce = None
    if not self_signed:
        assert caller.partner_id is not None
        nonce = runtime.reserved_nonce(caller.partner_id)
        if nonce is None:
            return None
    return Prepared(found[0], tier=tier, nonce=nonce)


def prepare_redemption(runtime: Runtime, *, member_id: str, pin: str | None) -> Prepared:
    with runtime.sessions() as session:
        member = _member(session, member_id)
    pin_ok = False
    if member.custodial and pin is not None and not member.locked:
        if not verify_pin(pin, str(member.pin_hash)):
            raise WrongPin(member_id)
        pin_ok = True
    return Prepared(member.address, balance=runtime.ledger.balance_of(member.address), pin_ok=pin_ok)


def expected_points(runtime: Runtime, partner: Partner, tier: int, spend: int) -> int:
    tiers = runtime.settings.coalition.tiers
    multiplier = tiers[tier].multiplier_bps if tier < len(tiers) else BPS
    return spend * partner.rate_points * multiplier // (partner.rate_per_minor_units * BPS)


def accept_earn(
    runtime: Runtime,
    session: Session,
    *,  # raises every domain error before its first write (the writer runs it without a savepoint)
    caller: Caller,
    member_id: str,
    receipt_id: str,
    amount_minor: int,
    currency: str,
    issued_at: str | None,
    partner_signature: SignedFields | None,
    prepared: Prepared,
) -> Response:
    assert caller.partner_id is not None
    partner = runtime.partner_terms(caller.partner_id)
    if currency != partner.currency:
        raise Invalid(f"{partner.name} issues points for {partner.currency}, not {currency}", code="wrong_currency")
    _duplicate_check(session, partner.id, "earn", receipt_id)
    points = expected_points(runtime, partner, prepared.tier, amount_minor)
    if points == 0:
        raise Invalid("this purchase earns no points at the member's rate", code="zero_points")
    if points > MAX_OP_POINTS:
        raise Invalid("this purchase would earn more points than one operation may", code="amount_out_of_range")
    receipt = Receipt(
        kind="earn",
        partner_id=partner.id,
        receipt_id=receipt_id,
        member_id=member_id,
        amount_minor=amount_minor,
        currency=currency,
        issued_at=issued_at or _now().isoformat(),
    )
    nonce, deadline, signature = _partner_signature(
        runtime,
        partner,
        partner_signature,
        issued_at,
        lambda n, d: EarnMessage(partner.id, prepared.address, amount_minor, receipt.ref(), n, d),
        reserved_nonce=prepared.nonce,
    )
    op = _new_operation(
        kind="earn",
        partner_id=partner.id,
        member_id=member_id,
        receipt_id=receipt_id,
        receipt=receipt,
        amount_minor=amount_minor,
        currency=currency,
        points=points,
        nonce=Decimal(nonce),
        deadline=deadline,
        signature=signature,
    )
    return _accepted(session, op)


def accept_redemption(
    runtime: Runtime,
    session: Session,
    *,
    caller: Caller,
    member_id: str,
    receipt_id: str,
    points: int,
    pin: str | None,
    member_signature: SignedFields | None,
    issued_at: str | None,
    prepared: Prepared,
) -> Response:
    assert caller.partner_id is not None
    partner = _partner(session, caller.partner_id)
    member = _member(session, member_id, for_update=True)
    _duplicate_check(session, partner.id, "redemption", receipt_id)
    receipt = Receipt(
        kind="redemption",
        partner_id=partner.id,
        receipt_id=receipt_id,
        member_id=member_id,
        points=points,
        issued_at=issued_at or _now().isoformat(),
    )
    domain = runtime.ledger.domain
    if member.custodial:
        if pin is None:
            raise Invalid("a custodial member authorizes with a PIN", code="pin_required")
        if member.locked:
            raise Forbidden("redemptions are locked after too many wrong PINs; an admin can unlock", code="pin_locked")
        if not verify_pin(pin, str(member.pin_hash)):
            raise WrongPin(member_id)
        member.failed_pin_attempts = 0
        nonce, deadline = member.next_nonce, _signing_time(runtime) + MANAGED_DEADLINE_SECONDS
        member.next_nonce += 1
        message = RedeemMessage(member.address, partner.id, points, receipt.ref(), nonce, deadline)
        signature = sign(domain, message, runtime.private_key(str(member.encrypted_key))).hex()
    else:
        if member_signature is None or issued_at is None:
            raise Invalid(
                "a self-custody member signs the redemption: send signature, nonce, deadline and issued_at",
                code="signature_required",
            )
        nonce, deadline = member_signature.nonce, member_signature.deadline
        message = RedeemMessage(member.address, partner.id, points, receipt.ref(), nonce, deadline)
        signature = _verify(domain, message, member_signature.signature, member.address).hex()
    balance = prepared.balance
    pending = session.scalar(
        select(func.coalesce(func.sum(Operation.points), 0)).where(
            Operation.member_id == member_id,
            Operation.kind.in_(("redemption", "reversal")),
            Operation.status.in_(("accepted", "submitted")),
        )
    )
    if balance - int(pending or 0) < points:
        raise Conflict(
            f"member {member_id} has {balance} points ({pending} already being spent), not {points}",
            code="insufficient_points",
            balance=balance,
        )
    op = _new_operation(
        kind="redemption",
        partner_id=partner.id,
        member_id=member_id,
        receipt_id=receipt_id,
        receipt=receipt,
        points=points,
        nonce=Decimal(nonce),
        deadline=deadline,
        signature=signature,
    )
    return _accepted(session, op)


class WrongPin(Forbidden):
    code = "invalid_pin"

    def __init__(self, member_id: str) -> None:
        super().__init__("the PIN is wrong")
        self.member_id = member_id


def record_wrong_pin(runtime: Runtime, member_id: str) -> None:
    """Counts a wrong PIN in its own transaction (the redemption itself changed nothing)."""
    with runtime.writes.begin() as session:
        member = _member(session, member_id, for_update=True)
        member.failed_pin_attempts += 1
        if member.failed_pin_attempts >= MAX_PIN_ATTEMPTS:
            member.locked = True


def unlock_member(session: Session, *, member_id: str) -> None:
    member = _member(session, member_id, for_update=True)
    member.locked, member.failed_pin_attempts = False, 0


def accept_reversal(
    runtime: Runtime,
    session: Session,
    *,
    caller: Caller,
    receipt_id: str,
    refund_id: str | None,
    points: int | None,
    amount_minor: int | None,
    reason: str,
    partner_signature: SignedFields | None,
    issued_at: str | None,
) -> Response:
    assert caller.partner_id is not None
    partner = _partner(session, caller.partner_id, for_update=partner_signature is None)
    earn = session.scalar(
        select(Operation).where(
            Operation.partner_id == partner.id, Operation.kind == "earn", Operation.receipt_id == receipt_id
        )
    )
    if earn is None:
        raise NotFound(f"no earn for receipt {receipt_id}", code="unknown_receipt")
    if earn.status != "confirmed" or earn.earn_batch_id is None or earn.points is None:
        raise Conflict(
            f"the earn for receipt {receipt_id} is {earn.status}, not confirmed yet",
            code="earn_not_confirmed",
            operation_id=earn.id,
        )
    if (points is None) == (amount_minor is None):
        raise Invalid("give exactly one of points and amount_minor", code="validation_error")
    if points is None:
        assert amount_minor is not None and earn.amount_minor
        if amount_minor > earn.amount_minor:
            raise Invalid("the refund is larger than the purchase", code="reversal_exceeds_earn")
        points = earn.points * amount_minor // earn.amount_minor
        if points == 0:
            raise Invalid("this refund takes back no points", code="zero_points")
    already = session.scalar(
        select(func.coalesce(func.sum(Operation.points), 0)).where(
            Operation.original_id == earn.id, Operation.status != "rejected"
        )
    )
    if points > earn.points - int(already or 0):
        raise Invalid(
            f"the earn issued {earn.points} points and {already} are already reversed", code="reversal_exceeds_earn"
        )
    refund = refund_id or receipt_id
    _duplicate_check(session, partner.id, "reversal", refund)
    member = _member(session, earn.member_id)
    receipt = Receipt(
        kind="reversal",
        partner_id=partner.id,
        receipt_id=refund,
        member_id=earn.member_id,
        amount_minor=amount_minor,
        currency=partner.currency if amount_minor else None,
        points=points,
        issued_at=issued_at or _now().isoformat(),
        extra={"original_receipt_id": receipt_id, "reason": reason},
    )
    leaf = earn_leaf(
        partner_id=partner.id,
        member=member.address,
        receipt_ref=bytes.fromhex(earn.receipt_ref[2:]),
        spend=int(earn.amount_minor or 0),
        points=earn.points,
        earn_month=int(earn.earn_month or 0),
    )
    nonce, deadline, signature = _partner_signature(
        runtime,
        partner,
        partner_signature,
        issued_at,
        lambda n, d: ReverseMessage(partner.id, leaf, points, receipt.ref(), n, d),
    )
    op = _new_operation(
        kind="reversal",
        partner_id=partner.id,
        member_id=earn.member_id,
        receipt_id=refund,
        receipt=receipt,
        amount_minor=amount_minor,
        currency=receipt.currency,
        points=points,
        nonce=Decimal(nonce),
        deadline=deadline,
        signature=signature,
        original_id=earn.id,
        reason=reason,
    )
    return _accepted(session, op, earn_leaf="0x" + leaf.hex())


def operation_view(op: Operation) -> dict[str, Any]:
    return {
        "operation_id": op.id,
        "kind": op.kind,
        "status": op.status,
        "partner_id": op.partner_id,
        "member_id": op.member_id,
        "receipt_id": op.receipt_id,
        "receipt_ref": op.receipt_ref,
        "points": op.points,
        "amount_minor": op.amount_minor,
        "currency": op.currency,
        "tx_hash": op.tx_hash,
        "block_number": op.block_number,
        "block_hash": op.block_hash,
        "log_index": op.log_index,
        # A confirmed earn's month is part of its on-chain leaf: a self-custody partner
        # needs it to sign a reversal of that earn.
        "earn_month": op.earn_month,
        "error": {"code": op.error_code, "message": op.error_message} if op.error_code else None,
        "accepted_at": op.created_at.isoformat(),
    }


def get_operation(session: Session, *, caller: Caller, operation_id: str) -> dict[str, Any]:
    op = session.scalar(select(Operation).where(Operation.id == operation_id))
    # A partner sees only its own operations: another partner's id answers like a missing one.
    if op is None or (caller.role == "partner" and op.partner_id != caller.partner_id):
        raise NotFound(f"no operation {operation_id}", code="unknown_operation")
    return operation_view(op)


def member_activity(
    session: Session, *, caller: Caller, member_id: str, cursor: int | None, limit: int
) -> dict[str, Any]:
    _member(session, member_id)
    query = select(Operation).where(Operation.member_id == member_id)
    if caller.role == "partner":
        query = query.where(Operation.partner_id == caller.partner_id)
    if cursor is not None:
        query = query.where(Operation.seq < cursor)
    rows = list(session.scalars(query.order_by(Operation.seq.desc()).limit(limit + 1)))
    more = len(rows) > limit
    rows = rows[:limit]
    return {"items": [operation_view(r) for r in rows], "next_cursor": rows[-1].seq if more and rows else None}
