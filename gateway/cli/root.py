"""The `loyalty` command group and its entry point; the commands live beside this module, by area."""

from __future__ import annotations

import sys

import click

from gateway.cli.common import console
from gateway.core.errors import LoyaltyError


@click.group()
def main() -> None:
    """Coalition points network: ledger, gateway and audit tools."""


def run() -> None:
    from pydantic import ValidationError

    try:
        main(standalone_mode=True)
    except LoyaltyError as exc:
        console.print(f"[red]error:[/red] {exc.message}")
        sys.exit(1)
    except ValidationError as exc:  # the settings: say which one and why, no traceback
        for error in exc.errors():
            where = ".".join(str(p) for p in error["loc"]) or "settings"
            console.print(f"[red]error in the settings[/red] ({where}): {error['msg']}")
        sys.exit(1)
