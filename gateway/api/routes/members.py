"""Member routes: enrolment, the member's view from the chain, activity."""

from typing import Annotated, Any

from fastapi import APIRouter, Query
from fastapi.responses import JSONResponse

from gateway.accounts import members
from gateway.api.deps import AnyCaller, IdempotencyDep, PartnerCaller, RuntimeDep
from gateway.api.schemas.requests import MAX_INT64, MemberCreate
from gateway.api.schemas.responses import API_ERRORS, Activity, MemberCreated, MemberView
from gateway.operations import queries
from gateway.operations.idempotency import Response as Stored

router = APIRouter(tags=["members"], responses=API_ERRORS)


@router.post("/v1/members", status_code=201, response_model=MemberCreated)
def create_member(body: MemberCreate, who: PartnerCaller, idem: IdempotencyDep) -> JSONResponse:
    runtime = idem.runtime
    return idem.run(
        who,
        body,
        lambda session: Stored(
            201,
            members.create_member(
                runtime, session, caller=who, member_id=body.member_id, address=body.address, pin=body.pin
            ),
        ),
    )


@router.get("/v1/members/{member_id}", response_model=MemberView)
def get_member(member_id: str, who: AnyCaller, runtime: RuntimeDep) -> dict[str, Any]:
    """Balance, tier and expiry schedule, read from the chain at the stated block."""
    with runtime.sessions() as session:
        return members.member_view(runtime, session, member_id=member_id)


@router.get("/v1/members/{member_id}/activity", response_model=Activity)
def activity(
    member_id: str,
    who: AnyCaller,
    runtime: RuntimeDep,
    cursor: Annotated[int | None, Query(ge=1, le=MAX_INT64)] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> dict[str, Any]:
    with runtime.sessions() as session:
        return queries.member_activity(session, caller=who, member_id=member_id, cursor=cursor, limit=limit)
