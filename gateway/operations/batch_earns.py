"""Batch intake's earns: all of a batch's earn records prepared together (members, tiers,
nonces, signatures), then each stored in the batch's transaction."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from sqlalchemy.orm import Session

from gateway.app.runtime import Runtime
from gateway.core.errors import Conflict, ErrorCode, LoyaltyError, NotFound
from gateway.core.security import Caller
from gateway.db.models import Partner
from gateway.operations.accept import Prepared, check_currency, earn_operation, pending_bonus, read_campaign
from gateway.operations.batch_records import Record
from gateway.operations.freshness import Fresh, check_fresh, nonce_in_flight
from gateway.operations.idempotency import Response
from gateway.operations.signatures import SignedFields
from gateway.operations.store import store_accepted

SIGNING_THREADS = 2


@dataclass(frozen=True)
class _ReadyEarn:
    op: dict[str, Any]
    signature: SignedFields | None
    fresh: Fresh | None


def prepare_earns(runtime: Runtime, caller: Caller, records: list[Record]) -> list[Any]:
    """`accept.prepare_earn` and `accept.earn_operation` for many earns: the members in one
    query, their tiers in one chain call, the managed partner's nonces in one reservation,
    the signatures of self-signed records checked against the chain in one call."""
    assert caller.partner_id is not None
    partner = runtime.partner_terms(caller.partner_id)
    found = runtime.member_addresses([r.fields["member_id"] for r in records])
    tiers = runtime.tiers_of([address for address, _ in found.values()])
    signed = [r for r in records if r.fields.get("partner_signature") is not None]
    fresh: dict[int, Fresh] = {}
    if signed:
        used = runtime.ledger.views(
            [("partnerNonceUsed", (partner.id, r.fields["partner_signature"].nonce)) for r in signed]
        )
        chain_now = runtime.chain.latest_timestamp()
        fresh = {r.line: Fresh(chain_now=chain_now, nonce_used=bool(u)) for r, u in zip(signed, used, strict=True)}
    unsigned = len(records) - len(signed)
    nonces = iter(range(0))
    if partner.managed and unsigned:
        start = reserve_nonces(runtime, partner.id, unsigned)
        nonces = iter(range(start, start + unsigned))
    campaigns = _campaigns(runtime, partner.id, records)
    out: list[Any] = [None] * len(records)
    jobs: list[tuple[int, Prepared]] = []
    campaign_jobs: list[tuple[int, Prepared]] = []
    for i, record in enumerate(records):
        f = record.fields
        member = found.get(f["member_id"])
        if member is None:
            out[i] = NotFound(f"no member {f['member_id']}", code=ErrorCode.UNKNOWN_MEMBER)
            continue
        campaign = campaigns.get(f.get("campaign_id"))
        if isinstance(campaign, LoyaltyError):
            out[i] = campaign
            continue
        signature: SignedFields | None = f.get("partner_signature")
        prepared = Prepared(
            member[0],
            tier=tiers[member[0]],
            nonce=None if signature is not None else next(nonces, None),
            fresh=fresh.get(record.line),
            campaign=campaign[0] if campaign else None,
            clock=campaign[1] if campaign else 0,
        )
        (campaign_jobs if campaign else jobs).append((i, prepared))
    # (r2) Earns naming a campaign one after another, in line order: each one's bonus estimate
    # counts the budget the earlier ones (and those on their way) expect to use.
    pending: dict[int, int] = {}
    if campaign_jobs:
        with runtime.sessions() as session:
            pending = {cid: pending_bonus(session, cid) for cid in campaigns if isinstance(cid, int)}

    def build(chunk: list[tuple[int, Prepared]]) -> list[tuple[int, Any]]:
        built: list[tuple[int, Any]] = []
        for i, prepared in chunk:
            f = {k: v for k, v in records[i].fields.items() if k != "campaign_id"}
            cid = prepared.campaign.campaign_id if prepared.campaign else 0
            try:
                check_currency(partner, f["currency"])
                op = earn_operation(
                    runtime, partner=partner, prepared=prepared, in_flight=False, pending_bonus=pending.get(cid, 0), **f
                )
                pending[cid] = pending.get(cid, 0) + int(op.get("bonus") or 0)
                built.append((i, op))
            except LoyaltyError as exc:
                built.append((i, exc))
        return built

    for i, result in build(campaign_jobs):
        out[i] = result
    # The signatures in threads: libsecp256k1 lets go of the GIL while it signs.
    size = max(1, -(-len(jobs) // SIGNING_THREADS))
    with ThreadPoolExecutor(SIGNING_THREADS, thread_name_prefix="batch-sign") as pool:
        for chunk in pool.map(build, [jobs[k : k + size] for k in range(0, len(jobs), size)]):
            for i, result in chunk:
                out[i] = result
    nonces_taken: set[int] = set()
    for i, result in enumerate(out):
        if isinstance(result, LoyaltyError):
            continue
        signature = records[i].fields.get("partner_signature")
        if signature is not None:
            if signature.nonce in nonces_taken:
                out[i] = Conflict(
                    f"nonce {signature.nonce} is already used by an earlier record of this batch",
                    code=ErrorCode.NONCE_ALREADY_USED,
                )
                continue
            nonces_taken.add(signature.nonce)
        out[i] = _ReadyEarn(result, signature, fresh.get(records[i].line))
    return out


def _campaigns(runtime: Runtime, partner_id: int, records: list[Record]) -> dict[Any, Any]:
    """(r2) Each campaign the batch's earns name: (its terms, the chain's time), or the refusal
    (`unknown_campaign`) of every record naming it."""
    named = {int(r.fields["campaign_id"]) for r in records if r.fields.get("campaign_id") is not None}
    found: dict[Any, Any] = {}
    for campaign_id in named:
        try:
            found[campaign_id] = read_campaign(runtime, partner_id, campaign_id)
        except LoyaltyError as exc:
            found[campaign_id] = exc
    return found


def accept_earn(runtime: Runtime, session: Session, caller: Caller, record: Record, ready: _ReadyEarn) -> Response:
    if ready.signature is not None:  # spent since it was read, by an operation on its way?
        in_flight = nonce_in_flight(session, nonce=ready.signature.nonce, partner_id=caller.partner_id)
        check_fresh(ready.fresh, ready.signature, in_flight)
    return store_accepted(session, ready.op)


def reserve_nonces(runtime: Runtime, partner_id: int, count: int) -> int:
    """The first of `count` signature nonces of a managed partner, never handed out before
    (like `Runtime.partner_nonce`'s blocks; nonces left unused cost nothing on-chain)."""
    with runtime.writes.begin() as session:
        partner = session.get(Partner, partner_id, with_for_update=True)
        if partner is None:
            raise NotFound(f"no partner {partner_id}", code=ErrorCode.UNKNOWN_PARTNER)
        start = int(partner.next_nonce)
        partner.next_nonce = start + count
    return start
