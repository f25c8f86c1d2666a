"""Every route declares what it answers (OpenAPI shows response schemas), and real answers
match the declared models."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
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


def test_the_openapi_document_tells_the_truth_about_errors_and_keys(gw: Gateway) -> None:
    doc = gw.client.get("/openapi.json").json()
    error = {"$ref": "#/components/schemas/ErrorBody"}
    assert "HTTPValidationError" not in doc["components"]["schemas"]  # FastAPI's {"detail": [...]}
    assert doc["components"]["securitySchemes"]["ApiKey"] == {
        "type": "http",
        "scheme": "bearer",
        "bearerFormat": "lk_<id>_<secret>",
        "description": "An API key (partner, auditor or admin) as `Authorization: Bearer <key>`",
    }
    for path, methods in doc["paths"].items():
        if not path.startswith("/v1/") or path == "/v1/ledger":
            continue
        for method, operation in methods.items():
            where = f"{method.upper()} {path}"
            assert operation.get("security") == [{"ApiKey": []}], where
            assert not any(p["name"].lower() == "authorization" for p in operation.get("parameters", [])), where
            for status in ("400", "401", "403", "404", "409", "422", "429"):
                schema = operation["responses"][status]["content"]["application/json"]["schema"]
                assert schema == error, f"{where} {status}"
    assert list(doc["paths"]["/metrics"]["get"]["responses"]["200"]["content"]) == ["text/plain"]
    # What the document promises is what the gateway answers.
    refused = gw.client.post("/v1/earn", json={"member_id": 1}, headers=gw.headers(gw.partner()["api_key"]))
    _matches(responses.ErrorBody, refused.json())
    assert refused.status_code == 422 and refused.json()["error"]["details"]


def test_a_wrong_method_is_405_with_allow(gw: Gateway) -> None:
    response = gw.client.put("/v1/earn", headers=gw.headers(gw.admin_key))
    assert response.status_code == 405 and response.headers["Allow"] == "POST"
    assert response.json()["error"]["code"] == "method_not_allowed"
    assert gw.client.delete("/v1/members/x").headers["Allow"] in ("GET", "GET, HEAD")


def test_the_api_docs_work_without_the_internet(gw: Gateway) -> None:
    page = gw.client.get("/docs")
    assert page.status_code == 200 and "/openapi.json" in page.text
    assert "cdn" not in page.text.lower() and "https://" not in page.text.replace("https://fastapi", "")
    for asset in ("/docs/static/swagger-ui-bundle.js", "/docs/static/swagger-ui.css"):
        assert asset in page.text
        served = gw.client.get(asset)
        assert served.status_code == 200 and len(served.content) > 10_000, asset
    assert gw.client.get("/redoc").status_code == 404


def test_metrics_show_latency_per_route_allowances_and_the_webhook_backlog(gw: Gateway) -> None:
    partner = gw.partner()
    key = partner["api_key"]
    gw.post("/v1/members", key, {"member_id": "card-1", "pin": "1234"})
    for member in ("card-1", "card-2", "card-3"):
        gw.get(f"/v1/members/{member}", key)  # one route, whatever the id
    earn = {"member_id": "card-1", "receipt_id": "R-1", "amount_minor": 1000, "currency": "EUR"}
    assert gw.post("/v1/earn", key, earn).status_code == 202
    gw.settle()
    text = gw.client.get("/metrics").text
    lines = set(text.splitlines())
    route = 'method="GET",route="/v1/members/{member_id}"'
    assert f'loyalty_request_duration_seconds_count{{{route},status="2xx"}} 1.0' in lines, text
    assert f'loyalty_request_duration_seconds_count{{{route},status="4xx"}} 2.0' in lines
    assert "/v1/members/card-2" not in text
    assert 'loyalty_request_duration_seconds_bucket{le="+Inf",method="POST",route="/v1/earn",status="2xx"} 1.0' in lines
    assert "loyalty_submit_to_confirm_seconds_count 1.0" in lines
    assert any(line.startswith('loyalty_submit_to_confirm_seconds_bucket{le="1.0"}') for line in lines)
    assert f'loyalty_partner_allowance_points{{partner_id="{partner["partner_id"]}"}} {10**9 - 10}' in lines
    assert "loyalty_webhook_backlog 0" in lines and "loyalty_queue_depth 0" in lines
    assert gw.client.get("/metrics").headers["content-type"].startswith("text/plain")


def test_metrics_add_up_across_processes_in_multiprocess_mode(tmp_path: Path) -> None:
    """What `loyalty serve --workers N` sets up: each process counts in PROMETHEUS_MULTIPROC_DIR."""
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}
    count = "from gateway.core.metrics import Metrics; m = Metrics(); m.add('operations_accepted_total', {n})"
    for n in (2, 5):
        subprocess.run([sys.executable, "-c", count.format(n=n)], env=env, check=True, timeout=120)
    show = "from gateway.core.metrics import Metrics; print(Metrics().exposition().decode())"
    shown = subprocess.run(
        [sys.executable, "-c", show], env=env, check=True, timeout=120, capture_output=True, text=True
    )
    assert "loyalty_operations_accepted_total 7.0" in shown.stdout.splitlines(), shown.stdout
