"""`pip install .` (not editable) gives a `loyalty` that works anywhere: the wheel carries the
contract artifacts and the default settings, and `loyalty demo` runs from an empty folder."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def run(command: list[str], **options: object) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(command, capture_output=True, text=True, **options)  # type: ignore[call-overload]
    assert done.returncode == 0, f"{command[:4]} failed:\n{done.stdout[-4000:]}\n{done.stderr[-4000:]}"
    return done  # type: ignore[no-any-return]


@pytest.mark.slow(seconds=30)
def test_the_installed_wheel_runs_the_demo_from_an_empty_folder(tmp_path: Path) -> None:
    # The wheel, built as `pip install .` builds it (in an isolated build environment with the
    # setuptools pyproject.toml asks for), from a copy of the checkout's files: a build/
    # folder left in the checkout by an earlier build could carry files that are gone.
    source = tmp_path / "source"
    files = run(["git", "ls-files", "--cached", "--others", "--exclude-standard"], cwd=ROOT).stdout.split()
    for name in files:
        if (ROOT / name).is_file():
            (source / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, source / name)
    dist = tmp_path / "dist"
    run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-w", str(dist), str(source)], cwd=tmp_path, timeout=600)
    (wheel,) = dist.glob("coalition_loyalty-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for shipped in (
        "gateway/_data/contracts/artifacts/CoalitionPoints.json",
        "gateway/_data/hardhat-free-config.toml",
        "gateway/db/migrations/env.py",
        "gateway/db/migrations/versions/0001_initial_schema.py",
    ):
        assert shipped in names, f"{shipped} is not in the wheel"

    # A fresh virtual environment with the wheel installed. Its dependencies are this
    # environment's (a path file; reinstalling web3 and py-evm would take minutes and the
    # network): what is tested is the package's own files.
    venv = tmp_path / "venv"
    run([sys.executable, "-m", "venv", str(venv)])
    python = venv / "bin" / "python"
    purelib = "import sysconfig; print(sysconfig.get_paths()['purelib'])"
    fresh_site = Path(run([str(python), "-c", purelib]).stdout.strip())
    (fresh_site / "dev-dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    run([str(python), "-m", "pip", "install", "--no-deps", "--no-index", str(wheel)])
    where = run([str(python), "-c", "import gateway; print(gateway.__file__)"], cwd=tmp_path).stdout
    assert where.startswith(str(fresh_site)), f"gateway imported from {where}, not the installed wheel"

    empty = tmp_path / "empty"
    empty.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LOYALTY_", "PYTHON"))}
    demo = run([str(venv / "bin" / "loyalty"), "demo", "--fast"], cwd=empty, env=env, timeout=600)
    assert "no discrepancy" in demo.stdout, demo.stdout[-3000:]
    assert (empty / ".loyalty" / "demo" / "deployment.json").exists()
