"""Campaigns through the gateway (SPEC sections 2 and 6, r2): registering one, reading them back.

A campaign is registered synchronously, like the operator console's writes: the gateway checks
the terms, signs them with a managed partner's key (or checks a self-custody partner's
signature over `partners.signing.CampaignMessage`), sends `createCampaign` with the operator's
key (409 `operator_key_absent` without it) and answers 201 with the campaign's id once the
transaction is mined. A refused request sends nothing (the ledger's refusal comes back from gas
estimation as a clear code). Its terms and spent budget are read from the chain; its results
(purchases, spend, members reached, bonus) from the index of confirmed earns that named it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import distinct, func, select
from sqlalchemy.orm import Session

from gateway.accounts.operator import operator_sender
from gateway.app.runtime import Runtime
from gateway.chain.campaigns import Campaign, campaign, campaign_count, create_campaign_receipt
from gateway.chain.ledger import LedgerRevert
from gateway.core.errors import Conflict, ErrorCode, Forbidden, Invalid, LoyaltyError, NotFound
from gateway.core.security import Caller
from gateway.db.models import CampaignName, Operation
from gateway.operations.kinds import Kind, Status
from gateway.operations.signatures import MANAGED_DEADLINE_SECONDS, SignedFields, signing_time, verify_signature
from gateway.points.rules import MAX_BONUS_BPS
from partners.signing import CampaignMessage, CompactSignature, sign

MAX_TIERS = 8  # the ledger's tier mask is a uint8
MAX_FIXED_BONUS = 2**48 - 1
MAX_MIN_SPEND = 2**64 - 1
MAX_BUDGET = 2**128 - 1
MAX_TIME = 2**40 - 1

_REFUSALS: dict[str, tuple[type[LoyaltyError], ErrorCode]] = {
    "InvalidCampaign": (Invalid, ErrorCode.INVALID_CAMPAIGN),
    "InvalidSignature": (Invalid, ErrorCode.INVALID_SIGNATURE),
    "SignatureExpired": (Invalid, ErrorCode.SIGNATURE_EXPIRED),
    "NonceAlreadyUsed": (Conflict, ErrorCode.NONCE_ALREADY_USED),
    "UnknownPartner": (NotFound, ErrorCode.UNKNOWN_PARTNER),
}


@dataclass(frozen=True)
class CampaignTerms:
    """A campaign as a partner asks for it (times in unix seconds, tiers as indexes)."""

    name: str
    start: int
    end: int
    bonus_bps: int
    fixed_bonus: int
    min_spend: int
    tiers: list[int] | None
    budget: int


def unix_seconds(text: str) -> int:
    """An RFC 3339 time as the ledger's unix seconds (a fraction of a second is dropped)."""
    moment = datetime.fromisoformat(text)
    if moment.tzinfo is None:
        raise Invalid(f"{text} names no time zone", code=ErrorCode.INVALID_CAMPAIGN)
    return int(moment.timestamp())


def iso(seconds: int) -> str:
    return datetime.fromtimestamp(seconds, UTC).isoformat()


def tier_mask(runtime: Runtime, partner_id: int, tiers: list[int] | None) -> int:
    """The ledger's tier mask (bit i: tier i) of `tiers`, every tier of the programme when None."""
    count = len(runtime.earn_terms(partner_id)[2]) or 1
    if tiers is None:
        return (1 << count) - 1
    if not tiers:
        raise Invalid("a campaign applies to at least one tier", code=ErrorCode.INVALID_CAMPAIGN)
    mask = 0
    for tier in tiers:
        if not 0 <= tier < min(count, MAX_TIERS):
            raise Invalid(f"the programme has no tier {tier} (tiers 0 to {count - 1})", code=ErrorCode.INVALID_CAMPAIGN)
        mask |= 1 << tier
    return mask


def check_terms(runtime: Runtime, t: CampaignTerms) -> None:
    """The ledger's `InvalidCampaign` rules, checked before anything is signed or sent."""
    if not 0 <= t.start < t.end <= MAX_TIME:
        raise Invalid("a campaign ends after it starts", code=ErrorCode.INVALID_CAMPAIGN)
    if t.end <= runtime.chain_clock():
        raise Invalid("this campaign would already be over", code=ErrorCode.INVALID_CAMPAIGN)
    if not t.bonus_bps and not t.fixed_bonus:
        raise Invalid("a campaign gives a multiplier_bps, a fixed_bonus or both", code=ErrorCode.INVALID_CAMPAIGN)
    if not 0 <= t.bonus_bps <= MAX_BONUS_BPS:
        raise Invalid(f"multiplier_bps is at most {MAX_BONUS_BPS} (100x)", code=ErrorCode.INVALID_CAMPAIGN)
    if not 0 <= t.fixed_bonus <= MAX_FIXED_BONUS or not 0 <= t.min_spend <= MAX_MIN_SPEND:
        raise Invalid("fixed_bonus or min_spend_minor out of range", code=ErrorCode.INVALID_CAMPAIGN)
    if not 1 <= t.budget <= MAX_BUDGET:
        raise Invalid("a campaign has a budget of at least 1 point", code=ErrorCode.INVALID_CAMPAIGN)


def create(runtime: Runtime, *, caller: Caller, terms: CampaignTerms, signed: SignedFields | None) -> dict[str, Any]:
    """Registers the partner's campaign on-chain; returns its view (201)."""
    assert caller.partner_id is not None
    partner = runtime.partner_terms(caller.partner_id)
    check_terms(runtime, terms)
    mask = tier_mask(runtime, partner.id, terms.tiers)
    sender = operator_sender(runtime, "loyalty campaign add (where the operator key is kept)")

    def message(nonce: int, deadline: int) -> CampaignMessage:
        return CampaignMessage(
            partner.id,
            terms.start,
            terms.end,
            terms.bonus_bps,
            terms.fixed_bonus,
            terms.min_spend,
            mask,
            terms.budget,
            nonce,
            deadline,
        )

    if signed is None:
        if not partner.managed or partner.encrypted_key is None:
            raise Invalid("this partner keeps its own key: send partner_signature", code=ErrorCode.SIGNATURE_REQUIRED)
        msg = message(runtime.partner_nonce(partner.id), signing_time(runtime) + MANAGED_DEADLINE_SECONDS)
        signature = sign(runtime.ledger.domain, msg, runtime.private_key(partner.encrypted_key))
    else:
        msg = message(signed.nonce, signed.deadline)
        signature = verify_signature(runtime.ledger.domain, msg, signed.signature, partner.signer_address)
    campaign_id = _send(runtime, sender, msg, signature)
    with runtime.writes.begin() as session:
        session.add(CampaignName(campaign_id=campaign_id, partner_id=partner.id, name=terms.name))
    return get(runtime, caller=caller, campaign_id=campaign_id)


def _send(runtime: Runtime, sender: Any, msg: CampaignMessage, signature: CompactSignature) -> int:
    try:
        with runtime.operator_lock:
            receipt = create_campaign_receipt(runtime.ledger, sender, msg, signature)
    except LedgerRevert as exc:
        refusal = _REFUSALS.get(exc.error.name)
        if refusal is None:
            raise
        kind, code = refusal
        raise kind(f"the ledger refused the campaign: {exc.error}", code=code, ledger_error=exc.error.name) from exc
    created = [e for e in runtime.ledger.decode_logs(receipt) if e.name == "CampaignCreated"]
    return int(created[0].args["campaignId"])


def _view(c: Campaign, name: str | None, results: dict[str, int]) -> dict[str, Any]:
    return {
        "campaign_id": c.campaign_id,
        "partner_id": c.partner_id,
        "name": name,
        "starts_at": iso(c.start),
        "ends_at": iso(c.end),
        "multiplier_bps": c.bonus_bps,
        "fixed_bonus": c.fixed_bonus,
        "min_spend_minor": c.min_spend,
        "tiers": [i for i in range(MAX_TIERS) if c.tier_mask >> i & 1],
        "budget": c.budget,
        "spent": c.spent,
        "remaining": c.remaining,
        **results,
    }


def _results(session: Session, ids: list[int]) -> dict[int, dict[str, int]]:
    """The index's figures of each campaign: confirmed earns that named it."""
    rows = session.execute(
        select(
            Operation.campaign_id,
            func.count(),
            func.coalesce(func.sum(Operation.amount_minor), 0),
            func.count(distinct(Operation.member_id)),
            func.coalesce(func.sum(Operation.bonus), 0),
        )
        .where(
            Operation.campaign_id.in_(ids),
            Operation.kind == Kind.EARN.value,
            Operation.status == Status.CONFIRMED.value,
        )
        .group_by(Operation.campaign_id)
    ).all()
    found = {int(r[0] or 0): (int(r[1]), int(r[2] or 0), int(r[3]), int(r[4] or 0)) for r in rows}
    names = ("purchases", "spend_minor", "members_reached", "bonus_confirmed")
    return {i: dict(zip(names, found.get(i, (0, 0, 0, 0)), strict=True)) for i in ids}


def _visible(caller: Caller, c: Campaign) -> bool:
    return caller.partner_id is None or caller.partner_id == c.partner_id


def _check_reader(caller: Caller) -> None:
    if caller.partner_id is None and caller.role not in ("admin", "auditor"):
        raise Forbidden("campaigns are for partners, admins and auditors", code=ErrorCode.WRONG_ROLE)


def get(runtime: Runtime, *, caller: Caller, campaign_id: int) -> dict[str, Any]:
    """One campaign (a partner sees its own only: another's is unknown to it)."""
    _check_reader(caller)
    found = campaign(runtime.ledger, campaign_id) if 0 < campaign_id < 2**64 else None
    if found is None or not _visible(caller, found):
        raise NotFound(f"no campaign {campaign_id}", code=ErrorCode.UNKNOWN_CAMPAIGN)
    with runtime.sessions() as session:
        name = session.scalar(select(CampaignName.name).where(CampaignName.campaign_id == campaign_id))
        return _view(found, name, _results(session, [campaign_id])[campaign_id])


def listing(runtime: Runtime, *, caller: Caller) -> dict[str, Any]:
    """Every campaign the caller may see, newest first: a partner's own, all for admins and auditors."""
    _check_reader(caller)
    count = campaign_count(runtime.ledger)
    found = [c for i in range(count, 0, -1) if (c := campaign(runtime.ledger, i)) is not None and _visible(caller, c)]
    ids = [c.campaign_id for c in found]
    with runtime.sessions() as session:
        names = dict(
            session.execute(
                select(CampaignName.campaign_id, CampaignName.name).where(CampaignName.campaign_id.in_(ids))
            ).all()
        )
        results = _results(session, ids)
    return {"items": [_view(c, names.get(c.campaign_id), results[c.campaign_id]) for c in found]}
