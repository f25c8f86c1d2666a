"""The Foundry invariant suite (contracts/test/), run by forge from npm: a second, independent
harness over the same entry points and invariants as the hypothesis state machine.

forge deploys the committed artifact, so this checks the same bytecode as the Python suite.
Runs and depth come from foundry.toml (256 x 100); FOUNDRY_INVARIANT_RUNS overrides them.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.support import anvil_required

REPO = Path(__file__).resolve().parents[1]


def forge_binary() -> Path | None:
    local = REPO / "node_modules" / "@foundry-rs" / "forge-linux-amd64" / "bin" / "forge"
    if local.is_file():
        return local
    found = shutil.which("forge")
    return Path(found) if found else None


@pytest.mark.slow
def test_forge_invariants_hold() -> None:
    forge = forge_binary()
    if forge is None:
        if anvil_required():  # CI: scripts/bootstrap installs forge with the other npm packages
            pytest.fail("forge is missing in CI: scripts/bootstrap should have installed @foundry-rs/forge")
        pytest.skip("forge not installed (run scripts/bootstrap)")
    env = {**os.environ, "NO_COLOR": "1"}
    done = subprocess.run(
        [str(forge), "test", "--root", str(REPO), "--match-path", "contracts/test/*"],
        capture_output=True,
        text=True,
        env=env,
        timeout=1_800,
        check=False,
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, f"forge invariant tests failed:\n{output[-20_000:]}"
    # A run that checked nothing would also exit 0: require the campaign's size.
    runs = int(os.environ.get("FOUNDRY_INVARIANT_RUNS", "256"))
    match = re.search(r"invariant_ledgerAgreesWithTheGhost\(\) \(runs: (\d+), calls: (\d+), reverts: (\d+)\)", output)
    assert match, output[-5_000:]
    assert int(match[1]) >= runs and int(match[3]) == 0, match[0]
