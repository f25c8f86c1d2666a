"""Admin routes: onboarding partners, API keys, unlocking members."""

from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse, Response
from sqlalchemy.orm import Session

from gateway.accounts import keys, members, partners
from gateway.api.deps import Admin, AnyCaller, IdempotencyDep, RuntimeDep
from gateway.api.schemas.requests import ApiKeyCreate, PartnerCreate
from gateway.api.schemas.responses import API_ERRORS, ApiKeyCreated, ApiKeySelf, MemberUnlocked, PartnerCreated
from gateway.operations.idempotency import Response as Stored

router = APIRouter(tags=["admin"], responses=API_ERRORS)


@router.post("/v1/partners", status_code=201, response_model=PartnerCreated)
def create_partner(body: PartnerCreate, who: Admin, idem: IdempotencyDep) -> JSONResponse:
    """Onboards a partner on-chain. Without signer_address the gateway keeps its key (managed).
    With partner_id, adopts a partner the operator added on-chain (a gateway without the
    operator key onboards partners only so)."""
    runtime = idem.runtime
    return idem.run(
        who,
        body,
        lambda session: Stored(
            201,
            partners.create_partner(
                runtime,
                session,
                name=body.name,
                currency=body.currency,
                rate_points=body.earn_rate.points,
                rate_per_minor_units=body.earn_rate.per_minor_units,
                allowance=body.allowance,
                signer_address=body.signer_address,
                partner_id=body.partner_id,
            ),
        ),
    )


@router.post("/v1/api-keys", status_code=201, response_model=ApiKeyCreated)
def create_api_key(body: ApiKeyCreate, who: Admin, idem: IdempotencyDep) -> JSONResponse:
    def effect(session: Session) -> Stored:
        row, key = keys.create_api_key(session, role=body.role, partner_id=body.partner_id)
        return Stored(201, {"key_id": row.id, "api_key": key, "role": row.role, "partner_id": row.partner_id})

    return idem.run(who, body, effect)


@router.delete("/v1/api-keys/{key_id}", status_code=204, response_class=Response)
def revoke_api_key(key_id: str, who: Admin, runtime: RuntimeDep) -> Response:
    keys.revoke(runtime, key_id=key_id)
    return Response(status_code=204)


@router.post("/v1/members/{member_id}/unlock", response_model=MemberUnlocked)
def unlock(member_id: str, who: Admin, runtime: RuntimeDep) -> dict[str, Any]:
    with runtime.writes.begin() as session:
        members.unlock_member(session, member_id=member_id)
    return {"member_id": member_id, "locked": False}


@router.get("/v1/api-keys/self", include_in_schema=False, response_model=ApiKeySelf)
def whoami(who: AnyCaller, runtime: RuntimeDep) -> dict[str, Any]:
    with runtime.sessions() as session:
        created_at = keys.created_at(session, key_id=who.key_id)
    return {
        "key_id": who.key_id,
        "role": who.role,
        "partner_id": who.partner_id,
        "created_at": created_at.isoformat() if created_at else None,
    }
