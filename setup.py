"""Build step of the package (the rest of its metadata is in pyproject.toml).

The contract artifacts (contracts/artifacts, what `loyalty compile` writes) and the default
settings (hardhat-free-config.toml) live outside the `gateway` package in a checkout; a built
package carries copies of them under gateway/_data/, with the same relative paths, so that an
installed `loyalty` finds them wherever it runs (gateway.core.config.shipped).
"""

from __future__ import annotations

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

ROOT = Path(__file__).resolve().parent
SHIPPED = ["hardhat-free-config.toml", *(str(p.relative_to(ROOT)) for p in ROOT.glob("contracts/artifacts/*.json"))]


class BuildWithData(build_py):
    def run(self) -> None:
        super().run()
        if not SHIPPED[1:]:
            raise SystemExit("contracts/artifacts/*.json missing: run `loyalty compile` before building")
        for relative in SHIPPED:
            target = Path(self.build_lib) / "gateway" / "_data" / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(ROOT / relative, target)


setup(cmdclass={"build_py": BuildWithData})
