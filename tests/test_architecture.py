"""The import rules of docs/architecture.md, checked on the source of every module (AST, no import).

Layers, bottom up: core; points and db; chain; app (the runtime container); the domain
(accounts, operations, submitter, index, audit); the edge (web, api, cli). A folder imports
only the folders listed for it below; the domain never imports FastAPI or Starlette; the
partner SDK never imports the gateway.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
FOUNDATION = {"core"}
INFRASTRUCTURE = FOUNDATION | {"points", "db", "chain"}
CONTAINER = INFRASTRUCTURE | {"app"}
ALLOWED: dict[str, set[str]] = {
    "core": set(),
    "points": {"core"},
    "db": {"core"},
    "chain": {"core", "points"},
    "app": INFRASTRUCTURE,
    "accounts": CONTAINER,
    "operations": CONTAINER | {"accounts"},
    "submitter": CONTAINER | {"operations", "webhooks"},
    "index": CONTAINER | {"operations", "submitter"},
    "audit": CONTAINER,
    "webhooks": CONTAINER,
    "web": CONTAINER | {"accounts", "operations", "audit"},
    "api": CONTAINER | {"accounts", "operations", "submitter", "audit", "web", "webhooks"},
    "cli": CONTAINER | {"accounts", "operations", "submitter", "index", "audit", "api", "webhooks"},
}
# Single modules a folder may import beyond its layers: the pages answer errors with the
# API's status table, a leaf that imports only core.
ALSO = {"web": {"gateway.api.errors"}}
# Import paths of the layout before the renovation; the ledger v2 work has moved off them.
OLD_PATHS = {"gateway.ledger", "gateway.config", "gateway.errors"}
TOP_LEVEL = {"core"}
DOMAIN = {"core", "points", "db", "chain", "app", "accounts", "operations", "submitter", "index", "audit", "webhooks"}
WEB_FRAMEWORKS = {"fastapi", "starlette"}
LONG_FILE_LINES = 400
LONG_FILE_REASON = "Longer than 400 lines:"
LONG_FILE_EXEMPT: set[str] = set()  # every long file says why at its top


def modules(package: str) -> list[Path]:
    return sorted(p for p in (ROOT / package).rglob("*.py") if "migrations" not in p.parts)


def imported(path: Path) -> set[str]:
    """Every module named by an import statement anywhere in the file (functions included)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def area(path: Path) -> str:
    parts = path.relative_to(ROOT / "gateway").parts
    return parts[0] if len(parts) > 1 else "gateway"


def test_every_folder_of_the_gateway_has_rules() -> None:
    folders = {p.name for p in (ROOT / "gateway").iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    assert folders == set(ALLOWED)


@pytest.mark.parametrize("path", modules("gateway"), ids=lambda p: str(p.relative_to(ROOT)))
def test_imports_follow_the_layers(path: Path) -> None:
    here = area(path)
    allowed = (TOP_LEVEL if here == "gateway" else ALLOWED[here]) | {here}
    wrong = set()
    for name in imported(path):
        parts = name.split(".")
        also = any(name == m or name.startswith(m + ".") for m in ALSO.get(here, ()))
        if parts[0] == "gateway" and len(parts) > 1 and parts[1] in ALLOWED and parts[1] not in allowed and not also:
            wrong.add(name)
        if here in DOMAIN and parts[0] in WEB_FRAMEWORKS:
            wrong.add(name)
    assert not wrong, f"{path.relative_to(ROOT)} ({here}) may not import {sorted(wrong)}"


def test_nothing_imports_the_old_paths() -> None:
    for path in modules("gateway") + modules("scripts") + modules("tests"):
        old = {n for n in imported(path) if ".".join(n.split(".")[:2]) in OLD_PATHS}
        assert not old, f"{path.relative_to(ROOT)} imports the old paths {sorted(old)}"


@pytest.mark.parametrize("path", modules("partners"), ids=lambda p: str(p.relative_to(ROOT)))
def test_the_partner_sdk_never_imports_the_gateway(path: Path) -> None:
    assert not {n for n in imported(path) if n.split(".")[0] == "gateway"}


@pytest.mark.parametrize("path", modules("gateway") + modules("partners"), ids=lambda p: str(p.relative_to(ROOT)))
def test_long_files_say_why_at_their_top(path: Path) -> None:
    text = path.read_text()
    if text.count("\n") > LONG_FILE_LINES and str(path.relative_to(ROOT)) not in LONG_FILE_EXEMPT:
        docstring = ast.get_docstring(ast.parse(text)) or ""
        assert LONG_FILE_REASON in docstring, f"{path.relative_to(ROOT)} is long: say why in its docstring"


def test_the_rules_catch_a_wrong_import(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text("from fastapi import APIRouter\nimport gateway.api.deps\n")
    assert {"fastapi", "fastapi.APIRouter", "gateway.api.deps"} <= imported(bad)
