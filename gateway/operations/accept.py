"""Accepting earns, redemptions and reversals (of earns and awards) durably (the outbox); raises domain errors.

Longer than 400 lines: the three acceptances share their preparation (`Prepared`) and checks,
and the earn's row is built apart from its transaction (`earn_operation`) so that a batch of
earns (operations/batches.py) reuses the same checks and signing.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from decimal import Decimal
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from gateway.accounts.members import WrongPin, get_member, pin_locked, record_right_pin, record_wrong_pin
from gateway.accounts.partners import get_partner
from gateway.app.runtime import Runtime
from gateway.chain.campaigns import Campaign, campaign
from gateway.core.errors import Conflict, ErrorCode, Forbidden, Invalid, NotFound
from gateway.core.security import Caller, verify_pin
from gateway.db.models import Operation, Partner
from gateway.operations.awards import issue_of
from gateway.operations.freshness import Fresh, check_fresh, check_issued_at, nonce_in_flight, read_fresh, salt_for
from gateway.operations.idempotency import Response
from gateway.operations.kinds import IN_FLIGHT, Kind, Status
from gateway.operations.migration import check_not_migrating
from gateway.operations.signatures import (
    MANAGED_DEADLINE_SECONDS,
    SignedFields,
    now,
    sign_for_partner,
    signing_time,
    verify_signature,
)
from gateway.operations.store import check_duplicate, new_operation, store_accepted
from gateway.points.rules import BPS, MAX_OP_POINTS, CampaignModel, points_for
from partners.signing import (
    CampaignEarnMessage,
    EarnMessage,
    Receipt,
    RedeemMessage,
    ReverseMessage,
    earn_leaf,
    sign,
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
    fresh: Fresh | None = None  # for a signature made by the partner or the member
    terms: tuple[int, int, tuple[int, ...]] | None = None  # on-chain rate and tier multipliers
    campaign: Campaign | None = None  # (r2) the campaign the earn names, read from the chain
    clock: int = 0  # (r2) the chain's time when the campaign was read: the bonus estimate's


def read_campaign(runtime: Runtime, partner_id: int, campaign_id: int) -> tuple[Campaign, int]:
    """(r2) The campaign an earn names, from the chain, and the chain's time: refused
    `unknown_campaign` when there is none of that id or it is another partner's (the contract
    would reject the earn `UnknownCampaign`)."""
    found = campaign(runtime.ledger, campaign_id) if 0 < campaign_id < 2**64 else None
    if found is None or found.partner_id != partner_id:
        raise NotFound(f"no campaign {campaign_id} of this partner", code=ErrorCode.UNKNOWN_CAMPAIGN)
    return found, runtime.chain_clock()


def prepare_earn(
    runtime: Runtime, *, caller: Caller, member_id: str, self_signed: bool, signed: SignedFields | None = None
) -> Prepared:
    found = runtime.member_address(member_id)
    if found is None:
        raise NotFound(f"no member {member_id}", code=ErrorCode.UNKNOWN_MEMBER)
    assert caller.partner_id is not None
    # A managed partner's nonce is reserved here, outside the write transaction (a nonce
    # left unused by a refused request is harmless: the contract's nonces are a bitmap).
    nonce = None if self_signed else runtime.partner_nonce(caller.partner_id)
    fresh = read_fresh(runtime, "partnerNonceUsed", caller.partner_id, signed.nonce) if signed else None
    terms = runtime.earn_terms(caller.partner_id)
    return Prepared(found[0], tier=runtime.tier_of(found[0]), nonce=nonce, fresh=fresh, terms=terms)


def prepare_earn_cached(runtime: Runtime, *, caller: Caller, member_id: str, self_signed: bool) -> Prepared | None:
    """`prepare_earn` from this process's caches alone (no database, no chain), or None: the
    event loop takes this path and hands a miss to a worker thread."""
    found = runtime.cached_member(member_id)
    tier = runtime.cached_tier(found[0]) if found else None
    assert caller.partner_id is not None
    terms = runtime.cached_earn_terms(caller.partner_id)
    if found is None or tier is None or terms is None:
        return None
    nonce = None
    if not self_signed:
        nonce = runtime.reserved_nonce(caller.partner_id)
        if nonce is None:
            return None
    return Prepared(found[0], tier=tier, nonce=nonce, terms=terms)


def prepare_redemption(
    runtime: Runtime, *, caller: Caller, member_id: str, pin: str | None, signed: SignedFields | None = None
) -> Prepared:
    assert caller.partner_id is not None
    with runtime.sessions() as session:
        member = get_member(session, member_id)
        locked = pin_locked(session, member, caller.partner_id)
    pin_ok = False
    if member.custodial and pin is not None and not locked:
        if not verify_pin(pin, str(member.pin_hash)):
            raise WrongPin(member_id, caller.partner_id)
        pin_ok = True
    fresh = None
    if signed is not None and not member.custodial:
        fresh = read_fresh(runtime, "memberNonceUsed", member.address, signed.nonce)
    return Prepared(member.address, balance=runtime.ledger.balance_of(member.address), pin_ok=pin_ok, fresh=fresh)


def expected_points(
    runtime: Runtime, partner: Partner, tier: int, spend: int, terms: tuple[int, int, tuple[int, ...]] | None = None
) -> int:
    """The 202's quote from the terms the contract applies: the partner's rate and the tier
    table on-chain (runtime.earn_terms), not the settings or the partner's row."""
    rate_points, per_minor_units, multipliers = terms or runtime.earn_terms(partner.id)
    multiplier = multipliers[tier] if tier < len(multipliers) else BPS
    return points_for(spend, rate_points, per_minor_units, multiplier)


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
    receipt_salt: str | None = None,
) -> Response:
    assert caller.partner_id is not None
    partner = runtime.partner_terms(caller.partner_id)
    check_currency(partner, currency)
    check_duplicate(session, partner.id, Kind.EARN, receipt_id)
    pending = pending_bonus(session, prepared.campaign.campaign_id) if prepared.campaign else 0
    in_flight = partner_signature is not None and nonce_in_flight(
        session, nonce=partner_signature.nonce, partner_id=partner.id
    )
    op = earn_operation(
        runtime,
        partner=partner,
        member_id=member_id,
        receipt_id=receipt_id,
        amount_minor=amount_minor,
        currency=currency,
        issued_at=issued_at,
        partner_signature=partner_signature,
        prepared=prepared,
        receipt_salt=receipt_salt,
        in_flight=in_flight,
        pending_bonus=pending,
    )
    return store_accepted(session, op, **({"bonus": op["bonus"]} if prepared.campaign else {}))


def pending_bonus(session: Session, campaign_id: int) -> int:
    """(r2) The bonus earns of this campaign still on their way to the chain expect: the budget
    the next estimate may not count on."""
    return int(
        session.scalar(
            select(func.coalesce(func.sum(Operation.bonus), 0)).where(
                Operation.campaign_id == campaign_id,
                Operation.kind == Kind.EARN.value,
                Operation.status.in_([s.value for s in IN_FLIGHT]),
            )
        )
        or 0
    )


def check_currency(partner: Partner, currency: str) -> None:
    if currency != partner.currency:
        raise Invalid(
            f"{partner.name} issues points for {partner.currency}, not {currency}", code=ErrorCode.WRONG_CURRENCY
        )


def earn_operation(
    runtime: Runtime,
    *,
    partner: Partner,
    member_id: str,
    receipt_id: str,
    amount_minor: int,
    currency: str,
    issued_at: str | None,
    partner_signature: SignedFields | None,
    prepared: Prepared,
    receipt_salt: str | None,
    in_flight: bool,
    pending_bonus: int = 0,
) -> dict[str, Any]:
    """An earn's outbox row, checked and signed, without the database: the duplicate check and
    whether the partner's nonce is `in_flight` are the caller's (`accept_earn` reads both in its
    transaction; a batch reads them for all its records at once)."""
    check_issued_at(runtime, issued_at)
    if partner_signature is not None:
        check_fresh(prepared.fresh, partner_signature, in_flight)
    points = expected_points(runtime, partner, prepared.tier, amount_minor, prepared.terms)
    if points == 0:
        raise Invalid("this purchase earns no points at the member's rate", code=ErrorCode.ZERO_POINTS)
    bonus = 0
    found = prepared.campaign
    if found is not None:  # (r2) the estimate from the terms on-chain at acceptance
        left = replace(found, spent=min(found.budget, found.spent + pending_bonus))
        bonus = campaign_bonus(left, base=points, spend=amount_minor, tier=prepared.tier, now=prepared.clock)
        points += bonus
    if points > MAX_OP_POINTS:
        raise Invalid("this purchase would earn more points than one operation may", code=ErrorCode.AMOUNT_OUT_OF_RANGE)
    receipt = Receipt(
        kind=Kind.EARN,
        partner_id=partner.id,
        receipt_id=receipt_id,
        member_id=member_id,
        amount_minor=amount_minor,
        currency=currency,
        issued_at=issued_at or now().isoformat(),
        salt=salt_for(receipt_salt, partner_signature),
    )
    nonce, deadline, signature = sign_for_partner(
        runtime,
        partner,
        partner_signature,
        issued_at,
        lambda n, d: (
            CampaignEarnMessage(partner.id, prepared.address, amount_minor, found.campaign_id, receipt.ref(), n, d)
            if found is not None
            else EarnMessage(partner.id, prepared.address, amount_minor, receipt.ref(), n, d)
        ),
        reserved_nonce=prepared.nonce,
    )
    return new_operation(
        kind=Kind.EARN,
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
        member_address=prepared.address,
        campaign_id=found.campaign_id if found is not None else None,
        bonus=bonus if found is not None else None,
    )


def campaign_bonus(found: Campaign, *, base: int, spend: int, tier: int, now: int) -> int:
    """The contract's bonus rule (points/rules.py `CampaignModel.bonus`) over on-chain terms."""
    model = CampaignModel(
        found.partner_id,
        found.start,
        found.end,
        found.bonus_bps,
        found.fixed_bonus,
        found.min_spend,
        found.tier_mask,
        found.budget,
        found.spent,
    )
    return model.bonus(base=base, spend=spend, tier=tier, now=now)


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
    receipt_salt: str | None = None,
) -> Response:
    assert caller.partner_id is not None
    partner = get_partner(session, caller.partner_id)
    member = get_member(session, member_id, for_update=True)
    check_not_migrating(session, member_id)
    check_duplicate(session, partner.id, Kind.REDEMPTION, receipt_id)
    check_issued_at(runtime, issued_at)
    receipt = Receipt(
        kind=Kind.REDEMPTION,
        partner_id=partner.id,
        receipt_id=receipt_id,
        member_id=member_id,
        points=points,
        issued_at=issued_at or now().isoformat(),
        salt=salt_for(receipt_salt, member_signature),
    )
    domain = runtime.ledger.domain
    if member.custodial:
        if pin is None:
            raise Invalid("a custodial member authorizes with a PIN", code=ErrorCode.PIN_REQUIRED)
        if pin_locked(session, member, partner.id):
            raise Forbidden(
                "redemptions with this PIN are locked here after too many wrong PINs; an admin can unlock",
                code=ErrorCode.PIN_LOCKED,
            )
        if not prepared.pin_ok and not verify_pin(pin, str(member.pin_hash)):
            raise WrongPin(member_id, partner.id)
        record_right_pin(session, member, partner.id)
        nonce, deadline = member.next_nonce, signing_time(runtime) + MANAGED_DEADLINE_SECONDS
        member.next_nonce += 1
        message = RedeemMessage(member.address, partner.id, points, receipt.ref(), nonce, deadline)
        signature = sign(domain, message, runtime.private_key(str(member.encrypted_key))).hex()
    else:
        if member_signature is None or issued_at is None:
            raise Invalid(
                "a self-custody member signs the redemption: send signature, nonce, deadline and issued_at",
                code=ErrorCode.SIGNATURE_REQUIRED,
            )
        in_flight = nonce_in_flight(session, nonce=member_signature.nonce, member_id=member_id)
        check_fresh(prepared.fresh, member_signature, in_flight)
        nonce, deadline = member_signature.nonce, member_signature.deadline
        message = RedeemMessage(member.address, partner.id, points, receipt.ref(), nonce, deadline)
        signature = verify_signature(domain, message, member_signature.signature, member.address).hex()
    balance = prepared.balance
    pending = session.scalar(
        select(func.coalesce(func.sum(Operation.points), 0)).where(
            Operation.member_id == member_id,
            Operation.kind.in_((Kind.REDEMPTION, Kind.REVERSAL)),
            Operation.status.in_(IN_FLIGHT),
        )
    )
    if balance - int(pending or 0) < points:
        raise Conflict(
            f"member {member_id} has {balance} points ({pending} already being spent), not {points}",
            code=ErrorCode.INSUFFICIENT_POINTS,
            balance=balance,
        )
    op = new_operation(
        kind=Kind.REDEMPTION,
        partner_id=partner.id,
        member_id=member_id,
        receipt_id=receipt_id,
        receipt=receipt,
        points=points,
        nonce=Decimal(nonce),
        deadline=deadline,
        signature=signature,
        member_address=member.address,
    )
    return store_accepted(session, op)


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
    receipt_salt: str | None = None,
) -> Response:
    assert caller.partner_id is not None
    partner = get_partner(session, caller.partner_id, for_update=partner_signature is None)
    earn = issue_of(session, partner.id, receipt_id)  # an earn, else an award (r2)
    if earn is None:
        raise NotFound(f"no earn for receipt {receipt_id}", code=ErrorCode.UNKNOWN_RECEIPT)
    if earn.status != Status.CONFIRMED or earn.earn_batch_id is None or earn.points is None:
        raise Conflict(
            f"the earn for receipt {receipt_id} is {earn.status}, not confirmed yet",
            code=ErrorCode.EARN_NOT_CONFIRMED,
            operation_id=earn.id,
        )
    if (points is None) == (amount_minor is None):
        raise Invalid("give exactly one of points and amount_minor", code=ErrorCode.VALIDATION_ERROR)
    if points is None:
        if not earn.amount_minor:
            raise Invalid("an award is reversed by points, not by an amount", code=ErrorCode.VALIDATION_ERROR)
        assert amount_minor is not None
        if amount_minor > earn.amount_minor:
            raise Invalid("the refund is larger than the purchase", code=ErrorCode.REVERSAL_EXCEEDS_EARN)
        points = earn.points * amount_minor // earn.amount_minor
        if points == 0:
            raise Invalid("this refund takes back no points", code=ErrorCode.ZERO_POINTS)
    already = session.scalar(
        select(func.coalesce(func.sum(Operation.points), 0)).where(
            Operation.original_id == earn.id, Operation.status != Status.REJECTED
        )
    )
    if points > earn.points - int(already or 0):
        raise Invalid(
            f"the earn issued {earn.points} points and {already} are already reversed",
            code=ErrorCode.REVERSAL_EXCEEDS_EARN,
        )
    refund = refund_id or receipt_id
    check_duplicate(session, partner.id, Kind.REVERSAL, refund)
    check_issued_at(runtime, issued_at)
    if partner_signature is not None:  # rare enough to read the chain inside the transaction
        fresh = read_fresh(runtime, "partnerNonceUsed", partner.id, partner_signature.nonce)
        in_flight = nonce_in_flight(session, nonce=partner_signature.nonce, partner_id=partner.id)
        check_fresh(fresh, partner_signature, in_flight)
    member = get_member(session, earn.member_id)
    receipt = Receipt(
        kind=Kind.REVERSAL,
        partner_id=partner.id,
        receipt_id=refund,
        member_id=earn.member_id,
        amount_minor=amount_minor,
        currency=partner.currency if amount_minor else None,
        points=points,
        issued_at=issued_at or now().isoformat(),
        extra={"original_receipt_id": receipt_id, "reason": reason},
        salt=salt_for(receipt_salt, partner_signature),
    )
    leaf = earn_leaf(
        partner_id=partner.id,
        member=earn.member_address or member.address,  # the address it was issued to (r2: a migration since)
        receipt_ref=bytes.fromhex(earn.receipt_ref[2:]),
        spend=int(earn.amount_minor or 0),
        points=earn.points,
        earn_month=int(earn.earn_month or 0),
        bonus=int(earn.bonus or 0),  # (r2) a campaign earn's leaf has its bonus
    )
    nonce, deadline, signature = sign_for_partner(
        runtime,
        partner,
        partner_signature,
        issued_at,
        lambda n, d: ReverseMessage(partner.id, leaf, points, receipt.ref(), n, d),
    )
    op = new_operation(
        kind=Kind.REVERSAL,
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
        member_address=earn.member_address or member.address,
    )
    return store_accepted(session, op, earn_leaf="0x" + leaf.hex())


def redeem(
    runtime: Runtime,
    *,
    store: Callable[[Callable[[Session], Response]], Response],
    caller: Caller,
    member_id: str,
    receipt_id: str,
    points: int,
    pin: str | None,
    member_signature: SignedFields | None,
    issued_at: str | None,
    receipt_salt: str | None = None,
) -> Response:
    """Checks the PIN (or the member's signature) and accepts the redemption through `store`
    (the idempotent write). A wrong PIN is counted in its own transaction before the refusal
    goes up: MAX_PIN_ATTEMPTS in a row at one partner lock the member's PIN there (see
    gateway/accounts/members.py)."""
    assert caller.partner_id is not None
    try:
        prepared = prepare_redemption(runtime, caller=caller, member_id=member_id, pin=pin, signed=member_signature)
        return store(
            lambda session: accept_redemption(
                runtime,
                session,
                caller=caller,
                member_id=member_id,
                receipt_id=receipt_id,
                points=points,
                pin=pin,
                member_signature=member_signature,
                issued_at=issued_at,
                prepared=prepared,
                receipt_salt=receipt_salt,
            )
        )
    except WrongPin as exc:
        record_wrong_pin(runtime, exc.member_id, exc.partner_id)
        raise
