"""Campaigns (SPEC section 6, r2): `POST /v1/campaigns` registers one on-chain and answers 201
once mined (gateway/operations/campaigns.py); `GET /v1/campaigns` and `/v1/campaigns/{id}`
read terms and spent budget from the chain, results from the index. A repeated
Idempotency-Key answers the first response without a second transaction."""

from typing import Annotated, Any

from fastapi import APIRouter, Path
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from gateway.api.deps import AnyCaller, IdempotencyDep, PartnerCaller, RuntimeDep, reply
from gateway.api.schemas.campaigns import CampaignCreate, CampaignList, CampaignView
from gateway.api.schemas.responses import API_ERRORS
from gateway.operations import campaigns
from gateway.operations.idempotency import Response as Stored
from gateway.operations.idempotency import _stored, request_hash
from gateway.operations.signatures import SignedFields

router = APIRouter(tags=["campaigns"], responses=API_ERRORS)
CampaignId = Annotated[int, Path(ge=1, le=2**64 - 1)]


@router.post("/v1/campaigns", status_code=201, response_model=CampaignView)
def create_campaign(body: CampaignCreate, who: PartnerCaller, idem: IdempotencyDep) -> JSONResponse:
    """Registers one of the partner's campaigns on-chain (synchronously: 201 once mined)."""
    runtime = idem.runtime
    if idem.key is not None:
        with runtime.sessions() as session:
            stored = _stored(session, idem.scope(who), idem.key, request_hash(body.model_dump()))
        if stored is not None:
            return reply(stored)
    given = body.partner_signature
    terms = campaigns.CampaignTerms(
        name=body.name or "",
        start=campaigns.unix_seconds(body.starts_at),
        end=campaigns.unix_seconds(body.ends_at),
        bonus_bps=body.multiplier_bps,
        fixed_bonus=body.fixed_bonus,
        min_spend=body.min_spend_minor,
        tiers=body.tiers,
        budget=body.budget,
    )
    answer = Stored(
        201,
        campaigns.create(
            runtime,
            caller=who,
            terms=terms,
            signed=SignedFields(given.signature, given.nonce, given.deadline) if given else None,
        ),
    )
    return idem.run(who, body, lambda _session: answer)


@router.get("/v1/campaigns", response_model=CampaignList)
async def list_campaigns(who: AnyCaller, runtime: RuntimeDep) -> dict[str, Any]:
    """A partner's own campaigns; every campaign for admins and auditors."""
    return await run_in_threadpool(campaigns.listing, runtime, caller=who)


@router.get("/v1/campaigns/{campaign_id}", response_model=CampaignView)
async def get_campaign(campaign_id: CampaignId, who: AnyCaller, runtime: RuntimeDep) -> dict[str, Any]:
    return await run_in_threadpool(campaigns.get, runtime, caller=who, campaign_id=campaign_id)
