"""The Foundry invariant suite (contracts/test/), run by forge from npm: a second, independent
harness over the same entry points and invariants as the hypothesis state machine.

forge deploys the committed artifacts (ledger, admin module, programme module), so this checks
the same bytecode as the Python suite. Runs and depth come from foundry.toml (256 x 100);
FOUNDRY_INVARIANT_RUNS and FOUNDRY_INVARIANT_DEPTH override them.

`test_forge_invariants_catch_an_injected_bug` (opt-in: FORGE_MUTANTS=1, about a minute per
mutant) compiles the ledger with one known bug put back and checks that the suite fails.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import solcx

from gateway.chain.compiler import collect_sources, find_compiler, standard_input
from gateway.core.config import get_settings
from tests.support import anvil_required

REPO = Path(__file__).resolve().parents[1]
MUTANTS_DIR = REPO / "build" / "forge" / "mutants"
CAMPAIGN = re.compile(r"invariant_ledgerAgreesWithTheGhost\(\) \(runs: (\d+), calls: (\d+), reverts: (\d+)\)")

# Each mutant: (source unit, exact text, replacement), one occurrence.
MUTANTS: dict[str, tuple[str, str, str]] = {
    # finding 5 undone: an earn issues more than the partner signed for
    "no-max-points-check": (
        "contracts/CoalitionPoints.sol",
        "if (points > op.maxPoints) return abi.encodeWithSelector(MaxPointsExceeded.selector, op.maxPoints, points);",
        "",
    ),
    # finding 2 made worse: anyone rotates a partner's signer
    "rotate-signer-without-signature": (
        "contracts/CoalitionPointsAdmin.sol",
        "_revertIf(_checkSigner(structHash, r, vs, previous));",
        "",
    ),
    # finding 4 undone: a ring insert without sweeping first keeps expired buckets
    "no-sweep-before-ring-insert": (
        "contracts/LedgerBase.sol",
        "if (a.tailPoints != 0 && expiry < a.tailExpiry) _sweep(a, member, cur);",
        "",
    ),
    # (r2) refunds without their cap: a partner gives back more than the redemption burnt
    "refund-without-cap": (
        "contracts/CoalitionPointsPrograms.sol",
        "if (done + op.points > rd.points) {",
        "if (false) {",
    ),
    # (r2) debt not paid first: an earn to a member in debt credits all its points
    "earn-ignores-debt": (
        "contracts/CoalitionPoints.sol",
        "if (a.flags & _DEBT_FLAG != 0) credit = _repay(a, op.member, credit, op.partnerId, op.receiptRef);",
        "",
    ),
    # (r2) a campaign's bonus not capped by its budget left
    "campaign-beyond-budget": (
        "contracts/CoalitionPoints.sol",
        "plan.bonus = bonus < left ? bonus : left;",
        "plan.bonus = bonus;",
    ),
    # finding 3 undone: reversals of expired earns (in the programme module since r2's debt)
    "reverse-expired-earns": (
        "contracts/CoalitionPointsPrograms.sol",
        "if (expiry < cur) return abi.encodeWithSelector(EarnExpired.selector, leaf, expiry);",
        "",
    ),
}


def forge_binary() -> Path | None:
    local = REPO / "node_modules" / "@foundry-rs" / "forge-linux-amd64" / "bin" / "forge"
    if local.is_file():
        return local
    found = shutil.which("forge")
    return Path(found) if found else None


def run_forge(forge: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(forge), "test", "--root", str(REPO), "--match-path", "contracts/test/*"],
        capture_output=True,
        text=True,
        env={**os.environ, "NO_COLOR": "1", **env},
        timeout=1_800,
        check=False,
    )


@pytest.mark.slow(seconds=300)
def test_forge_invariants_hold() -> None:
    forge = forge_binary()
    if forge is None:
        if anvil_required():  # CI: scripts/bootstrap installs forge with the other npm packages
            pytest.fail("forge is missing in CI: scripts/bootstrap should have installed @foundry-rs/forge")
        pytest.skip("forge not installed (run scripts/bootstrap)")
    done = run_forge(forge)
    output = done.stdout + done.stderr
    assert done.returncode == 0, f"forge invariant tests failed:\n{output[-20_000:]}"
    # A run that checked nothing would also exit 0: require the campaign's size.
    runs = int(os.environ.get("FOUNDRY_INVARIANT_RUNS", "256"))
    depth = int(os.environ.get("FOUNDRY_INVARIANT_DEPTH", "100"))
    match = CAMPAIGN.search(output)
    assert match, output[-5_000:]
    assert int(match[1]) >= runs and int(match[2]) >= runs * depth and int(match[3]) == 0, match[0]


def compile_mutant(name: str) -> Path:
    """The three contracts built from the committed sources with one edit, as `loyalty compile`
    would build them, into build/forge/mutants/<name>/ (where the suite may read)."""
    unit, old, new = MUTANTS[name]
    settings = get_settings().compiler
    sources = collect_sources()
    assert sources[unit]["content"].count(old) == 1, f"{name}: the text to mutate is not in {unit} once"
    sources[unit]["content"] = sources[unit]["content"].replace(old, new)
    out = solcx.compile_standard(standard_input(settings, sources), solc_binary=str(find_compiler(settings).path))
    dest = MUTANTS_DIR / name
    dest.mkdir(parents=True, exist_ok=True)
    for contract in ("CoalitionPoints", "CoalitionPointsAdmin", "CoalitionPointsPrograms"):
        code = out["contracts"][f"contracts/{contract}.sol"][contract]["evm"]["bytecode"]["object"]
        (dest / f"{contract}.json").write_text(json.dumps({"bytecode": "0x" + code}))
    return dest


@pytest.mark.slow
@pytest.mark.skipif(not os.environ.get("FORGE_MUTANTS"), reason="compiles the ledger per mutant: FORGE_MUTANTS=1")
@pytest.mark.parametrize("name", sorted(MUTANTS))
def test_forge_invariants_catch_an_injected_bug(name: str) -> None:
    forge = forge_binary()
    if forge is None:
        pytest.skip("forge not installed (run scripts/bootstrap)")
    dest = compile_mutant(name)
    done = run_forge(
        forge,
        LEDGER_ARTIFACTS=str(dest.relative_to(REPO)),
        # The mutant's shrunk failure is not replayed against the real ledger next time.
        FOUNDRY_INVARIANT_FAILURE_PERSIST_DIR=str(MUTANTS_DIR / "failures" / name),
    )
    output = done.stdout + done.stderr
    assert done.returncode != 0 and "[FAIL" in output, f"{name}: the suite did not catch it:\n{output[-5_000:]}"
    failure = re.search(r"\[FAIL: [^\n]*\]\n\s*\[Sequence\] \(original: \d+, shrunk: \d+\)", output)
    sequence = output[failure.end() :].split(" invariant_", 1)[0] if failure else ""
    calls = re.findall(r"calldata=(\w+)\(", sequence)
    print(f"{name}: {failure[0] if failure else output[-2_000:]} {calls}")
