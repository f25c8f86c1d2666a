"""Every route declares what it answers (OpenAPI shows response schemas), and real answers
match the declared models."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from gateway.api.schemas import responses
from tests.gateway.conftest import Gateway


def test_every_api_route_declares_its_response(gw: Gateway) -> None:
    paths = gw.client.get("/openapi.json").json()["paths"]
    assert "/v1/earn" in paths
    for path, methods in paths.items():
        for method, operation in methods.items():
            successes = {code: r for code, r in operation["responses"].items() if code.startswith("2")}
            assert successes, f"{method} {path}: no success response"
            for code, response in successes.items():
                content = response.get("content", {})
                if code == "204" or "text/plain" in content:
                    continue
                # Without a response_model FastAPI documents an empty schema: {}.
                schema = content.get("application/json", {}).get("schema")
                assert schema, f"{method.upper()} {path} {code} declares no response schema"
    earn = paths["/v1/earn"]["post"]["responses"]["202"]["content"]["application/json"]["schema"]
    assert earn == {"$ref": "#/components/schemas/Accepted"}


def _matches(model: type[BaseModel], body: dict[str, Any]) -> None:
    parsed = model.model_validate(body)
    assert set(body) <= set(parsed.model_dump()), f"{model.__name__} lacks {set(body) - set(parsed.model_dump())}"
    required = {name for name, field in model.model_fields.items() if field.is_required()}
    assert required <= set(body), f"{model.__name__}: {required - set(body)} not sent"


def test_answers_match_their_models(gw: Gateway) -> None:
    partner = gw.partner()
    _matches(responses.PartnerCreated, partner)
    key = partner["api_key"]
    _matches(responses.MemberCreated, gw.post("/v1/members", key, {"member_id": "card-1", "pin": "1234"}).json())
    accepted = gw.post(
        "/v1/earn", key, {"member_id": "card-1", "receipt_id": "R1", "amount_minor": 1000, "currency": "EUR"}
    ).json()
    _matches(responses.Accepted, accepted)
    gw.settle()
    _matches(responses.OperationView, gw.get(f"/v1/operations/{accepted['operation_id']}", key).json())
    _matches(responses.MemberView, gw.get("/v1/members/card-1", key).json())
    _matches(responses.Activity, gw.get("/v1/members/card-1/activity", key).json())
    _matches(responses.Health, gw.client.get("/healthz").json())
    _matches(responses.LedgerInfo, gw.client.get("/v1/ledger").json())
    refused = gw.get("/v1/members/nobody", key).json()
    _matches(responses.ErrorBody, refused)
