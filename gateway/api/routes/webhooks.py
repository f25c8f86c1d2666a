"""Webhook routes (SPEC section 6, r2): a partner manages its own subscriptions, the operator
(admin) its own and can read any."""

from typing import Annotated, Any

from fastapi import APIRouter, Path
from fastapi.responses import JSONResponse, Response
from sqlalchemy.orm import Session

from gateway.api.deps import AnyCaller, IdempotencyDep, RuntimeDep
from gateway.api.schemas.programme import DeliveryList, WebhookCreate, WebhookCreated, WebhookList
from gateway.api.schemas.requests import MAX_INT64
from gateway.api.schemas.responses import API_ERRORS
from gateway.core.errors import ErrorCode, Forbidden
from gateway.core.security import Caller
from gateway.operations.idempotency import Response as Stored
from gateway.webhooks import store

router = APIRouter(tags=["webhooks"], responses=API_ERRORS)


def _owner(who: Caller) -> int | None:
    """The partner whose webhooks these are; None for the operator's. Auditors have none."""
    if who.role == "partner":
        return who.partner_id
    if who.role == "admin":
        return None
    raise Forbidden("webhooks belong to a partner or to the operator (admin)", code=ErrorCode.WRONG_ROLE)


@router.post("/v1/webhooks", status_code=201, response_model=WebhookCreated)
def create_webhook(body: WebhookCreate, who: AnyCaller, idem: IdempotencyDep) -> JSONResponse:
    """Registers a URL for the given event types; the answer carries the signing secret once."""
    owner = _owner(who)
    settings = idem.runtime.settings

    def effect(session: Session) -> Stored:
        sub, secret = store.create_webhook(
            session,
            partner_id=owner,
            url=body.url,
            events=body.events,
            kek=settings.key_encryption_key.get_secret_value(),
            production=settings.env == "production",
        )
        return Stored(201, {**sub.as_json(), "secret": secret})

    return idem.run(who, body, effect)


@router.get("/v1/webhooks", response_model=WebhookList)
def list_webhooks(who: AnyCaller, runtime: RuntimeDep) -> dict[str, Any]:
    owner = _owner(who)
    with runtime.sessions() as session:
        return {"items": [s.as_json() for s in store.list_webhooks(session, partner_id=owner)]}


@router.delete("/v1/webhooks/{webhook_id}", status_code=204, response_class=Response)
def delete_webhook(webhook_id: str, who: AnyCaller, runtime: RuntimeDep) -> Response:
    owner = _owner(who)
    with runtime.writes.begin() as session:
        store.delete_webhook(session, webhook_id, partner_id=owner)
    return Response(status_code=204)


@router.get("/v1/webhooks/{webhook_id}/deliveries", response_model=DeliveryList)
def deliveries(webhook_id: str, who: AnyCaller, runtime: RuntimeDep) -> dict[str, Any]:
    """Every delivery of the webhook, newest first, with each attempt (the delivery log)."""
    owner = _owner(who)
    with runtime.sessions() as session:
        return {"items": store.deliveries(session, webhook_id, partner_id=owner)}


@router.post("/v1/webhooks/{webhook_id}/deliveries/{delivery_id}/retry", status_code=202, response_model=DeliveryList)
def retry(
    webhook_id: str, delivery_id: Annotated[int, Path(ge=0, le=MAX_INT64)], who: AnyCaller, runtime: RuntimeDep
) -> JSONResponse:
    """Sends a failed (or still pending) delivery again now."""
    owner = _owner(who)
    with runtime.writes.begin() as session:
        store.retry(session, webhook_id, delivery_id, partner_id=owner)
    with runtime.sessions() as session:
        items = [d for d in store.deliveries(session, webhook_id, partner_id=owner) if d["delivery_id"] == delivery_id]
    return JSONResponse({"items": items}, status_code=202)
