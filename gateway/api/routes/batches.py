"""Batch intake routes (SPEC section 6, r2): a partner submits many records in one file (CSV or
JSON lines) and reads back how far each one got."""

import hashlib
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from gateway.api.deps import IdempotencyDep, PartnerCaller, RuntimeDep, reply, role
from gateway.api.schemas.batches import CSV, NDJSON, BatchAccepted, BatchView, media_type, read_batch
from gateway.api.schemas.responses import API_ERRORS
from gateway.core.metrics import Metrics
from gateway.core.security import Caller
from gateway.operations import batch_status, batches

router = APIRouter(tags=["batches"], responses=API_ERRORS)

_FILE = {"schema": {"type": "string"}}
_BODY = {
    "requestBody": {
        "required": True,
        "description": "One record per line: the single-operation endpoint's body plus `kind`. CSV: a "
        "header row (line 1) naming the fields; nested ones as `partner_signature.nonce`.",
        "content": {CSV: _FILE, NDJSON: _FILE},
    }
}

BatchReader = Annotated[Caller, Depends(role("partner", "admin"))]


@router.post("/v1/batches", status_code=202, response_model=BatchAccepted, openapi_extra=_BODY)
async def submit_batch(request: Request, who: PartnerCaller, idem: IdempotencyDep) -> JSONResponse:
    """Accepts up to 10,000 earns, awards, reversals and refunds in one transaction; each record
    is checked on its own, and a refused one changes nothing."""
    content_type = media_type(request.headers.get("content-type"))
    body = await request.body()
    # What an Idempotency-Key's stored answer is matched against: the exact bytes and their type.
    identity = {"content_type": content_type, "sha256": hashlib.sha256(body).hexdigest()}

    def accept() -> Any:
        records, refused = read_batch(body, content_type)
        return batches.accept_batch(
            idem.runtime,
            caller=who,
            scope=idem.scope(who),
            idempotency_key=idem.key,
            request=identity,
            content_type=content_type,
            records=records,
            refused=refused,
        )

    response = await run_in_threadpool(accept)
    metrics: Metrics = request.app.state.metrics
    metrics.add("operations_accepted_total", int(response.body["accepted"]))
    return reply(response)


@router.get("/v1/batches/{batch_id}", response_model=BatchView)
def get_batch(
    batch_id: Annotated[str, Path(min_length=1, max_length=32, pattern=r"^[0-9a-f]+$")],
    who: BatchReader,
    runtime: RuntimeDep,
    cursor: Annotated[int | None, Query(ge=0, le=2**31 - 1, description="the last line of the previous page")] = None,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 1_000,
    status: Literal["accepted", "submitted", "confirmed", "rejected", "refused"] | None = None,
) -> dict[str, Any]:
    """Each line of the batch (the owning partner's, or any for the operator) and how far it got."""
    with runtime.sessions() as session:
        return batch_status.batch_status(
            session, caller=who, batch_id=batch_id, cursor=cursor, limit=limit, status=status
        )
