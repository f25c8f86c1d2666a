"""Output piped to a file or another program is not wrapped at 80 columns (rich's default when
stdout is not a terminal); a terminal still gets lines fitted to its width."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path

from gateway.cli.common import Console

ROOT = Path(__file__).resolve().parent.parent
LONG = "discrepancy " + " ".join(f"word{i}" for i in range(60))  # ~420 characters


def test_a_pipe_gets_whole_lines() -> None:
    out = io.StringIO()
    Console(file=out).print(LONG)
    assert out.getvalue() == LONG + "\n"


def test_a_terminal_still_gets_lines_fitted_to_its_width() -> None:
    out = io.StringIO()
    Console(file=out, force_terminal=True, width=80, color_system=None).print(LONG)
    assert max(len(line) for line in out.getvalue().splitlines()) <= 80


def test_a_command_piped_prints_its_long_lines_whole(tmp_path: Path) -> None:
    data = tmp_path / ("a-data-directory-with-a-rather-long-name-" * 2)
    env = {k: v for k, v in os.environ.items() if k != "COLUMNS"}
    done = subprocess.run(
        [sys.executable, "-m", "gateway.cli", "deploy", "--network", "embedded", "--data-dir", str(data)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    line = next(line for line in done.stdout.splitlines() if line.startswith("deployed CoalitionPoints"))
    assert line.endswith(f"record in {data / 'deployment.json'}") and len(line) > 120


def test_a_pipe_gets_tables_at_their_natural_width() -> None:
    from rich.table import Table

    table = Table("partner", "signer", "allowance left")
    table.add_row("1", "0x" + "ab" * 20, "1,000,000,000")
    out = io.StringIO()
    Console(file=out).print(table)
    assert "0x" + "ab" * 20 in out.getvalue()  # not broken over two lines
    assert max(len(line) for line in out.getvalue().splitlines()) < 120  # and not padded to 400
