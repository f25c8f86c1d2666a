"""The error codes: one catalogue in the gateway, one status table at the edge, and the partner
SDK's own table knows every code."""

from __future__ import annotations

import ast
from pathlib import Path

from gateway.api.errors import STATUS
from gateway.core.errors import CATEGORY, Category, ErrorCode
from partners import errors as sdk

ROOT = Path(__file__).resolve().parent.parent


def test_every_code_has_a_category_and_every_category_a_status() -> None:
    assert set(CATEGORY) == set(ErrorCode)
    assert set(STATUS) == set(Category)


def test_the_sdk_knows_every_gateway_code_with_a_class_of_its_status() -> None:
    table = sdk._BY_CODE
    assert set(ErrorCode) <= set(table), f"partners/errors.py lacks {sorted(set(ErrorCode) - set(table))}"
    for code in ErrorCode:
        status = STATUS[CATEGORY[code]]
        family = sdk._BY_STATUS.get(status, sdk.ServerError if status >= 500 else sdk.GatewayError)
        if code in (ErrorCode.METHOD_NOT_ALLOWED, ErrorCode.HTTP_ERROR):
            continue  # answered with the HTTP error's own status, not the table's
        assert issubclass(table[code], family), f"{code}: {table[code].__name__} is not a {family.__name__}"
        raised = sdk.error_from_response(status, {"error": {"code": str(code), "message": "m"}})
        assert type(raised) is table[code]


def test_no_raise_site_spells_a_code_as_a_string() -> None:
    for path in sorted((ROOT / "gateway").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.keyword) and node.arg == "code" and isinstance(node.value, ast.Constant):
                raise AssertionError(f"{path.relative_to(ROOT)}:{node.value.lineno}: use ErrorCode, not a literal")
            if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "code" for t in node.targets):
                assert not isinstance(node.value, ast.Constant), f"{path.relative_to(ROOT)}: a code literal"
