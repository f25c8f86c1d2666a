"""The committed artifacts are what the committed sources compile to."""

from __future__ import annotations

import pytest

from gateway.chain.compiler import ARTIFACT_CONTRACTS, collect_sources, compile_contracts, sources_hash
from gateway.chain.ledger import artifact
from gateway.core.config import get_settings

EIP170_LIMIT = 24_576


def test_artifacts_record_their_origin() -> None:
    settings = get_settings().compiler
    for name in ARTIFACT_CONTRACTS:
        art = artifact(name)
        assert art["_generated"].startswith("by `loyalty compile`")
        assert art["compiler"]["version"].startswith(settings.version)
        assert art["compiler"]["optimizerRuns"] == settings.optimizer_runs


def test_sources_unchanged_since_compile() -> None:
    """Cheap check first: a source edited without `loyalty compile` fails here, in seconds."""
    assert artifact()["sourcesHash"] == sources_hash(collect_sources()), "run `loyalty compile` and commit"


@pytest.mark.slow(seconds=100)
def test_recompiling_gives_the_committed_bytecode() -> None:
    fresh = compile_contracts(get_settings().compiler)
    for name in ARTIFACT_CONTRACTS:
        committed = artifact(name)
        assert fresh[name]["abi"] == committed["abi"], f"{name}: ABI is stale; run `loyalty compile`"
        assert fresh[name]["bytecode"] == committed["bytecode"], f"{name}: bytecode is stale; run `loyalty compile`"


@pytest.mark.parametrize("name", ["CoalitionPoints", "CoalitionPointsAdmin", "CoalitionPointsPrograms"])
def test_ledger_and_its_modules_fit_the_code_size_limit(name: str) -> None:
    size = len(bytes.fromhex(artifact(name)["deployedBytecode"][2:]))
    assert size <= EIP170_LIMIT, f"{name}: deployed code is {size} bytes, over EIP-170's {EIP170_LIMIT}"


def test_the_ledgers_abi_covers_its_modules() -> None:
    """The ledger's fallback runs its modules' functions: its ABI must list them too."""
    ledger = {(i["type"], i.get("name")) for i in artifact()["abi"]}
    for module in ("CoalitionPointsAdmin", "CoalitionPointsPrograms"):
        for item in artifact(module)["abi"]:
            if item["type"] in ("function", "event", "error"):
                assert (item["type"], item["name"]) in ledger, f"{module}.{item['name']} missing"
