"""Commands on the chain itself: compile, deploy, balance."""

from __future__ import annotations

import json
from pathlib import Path

import click

from gateway.app.bootstrap import operator_key
from gateway.app.deployment import Deployment
from gateway.chain.ledger import Ledger, Sender
from gateway.cli.common import (
    console,
    open_chain,
    open_ledger,
)
from gateway.cli.root import main
from gateway.core.config import get_settings
from gateway.core.errors import ConfigError
from gateway.points.rules import month_label


@main.command()
def compile() -> None:
    """Compile contracts/ and write contracts/artifacts/ (committed)."""
    from gateway.chain.compiler import compile_contracts, find_compiler, write_artifacts

    settings = get_settings()
    compiler = find_compiler(settings.compiler)
    console.print(f"compiling with solc {compiler.version} ({compiler.origin}: {compiler.path})")
    for path in write_artifacts(compile_contracts(settings.compiler, compiler)):
        console.print(f"wrote {path}")


@main.command()
@click.option("--network", default="embedded", show_default=True, help="network name or http(s):// URL")
@click.option("--data-dir", type=click.Path(path_type=Path), default=None, help="where to write deployment.json")
@click.option("--json", "as_json", is_flag=True, help="print the deployment record as JSON")
def deploy(network: str, data_dir: Path | None, as_json: bool) -> None:
    """Deploy the ledger and apply the coalition policy from the settings."""
    settings = get_settings()
    chain, name = open_chain(settings, network)
    try:
        try:
            sender = Sender(chain.w3, operator_key(settings, chain))
        except ConfigError as exc:
            raise click.UsageError(exc.message) from exc
        ledger = Ledger.deploy(sender, settings.coalition)
        record = Deployment.of(ledger, network=name)
        directory = data_dir or settings.gateway.data_dir
        directory.mkdir(parents=True, exist_ok=True)
        path = record.save(directory)
    finally:
        chain.close()
    if as_json:
        click.echo(json.dumps(record.as_json(), indent=2))
    else:
        console.print(
            f"deployed CoalitionPoints at {record.address} on chain {record.chain_id} "
            f"(block {record.deployment_block}); record in {path}"
        )
        if chain.name == "embedded":
            console.print("[yellow]note: this embedded chain lived in this process only[/yellow]")


@main.command()
@click.argument("member")
@click.option("--network", default=None, help="network name or URL (default: the deployment record's)")
@click.option("--data-dir", type=click.Path(path_type=Path), default=None)
def balance(member: str, network: str | None, data_dir: Path | None) -> None:
    """Read a member's balance, tier and expiring points from the chain itself."""
    settings = get_settings()
    directory = data_dir or settings.gateway.data_dir
    # The data directory's own chain: for `embedded`, the one stored there, not a new one.
    chain, ledger, _ = open_ledger(settings, directory, network)
    try:
        block = chain.w3.eth.block_number
        console.print(
            f"{member}: {ledger.balance_of(member, block)} points at block {block}, "
            f"tier {ledger.tier_of(member, block)}, "
            f"qualifying {ledger.qualifying_points(member, block)}"
        )
        for month, points in ledger.expiring_of(member, block):
            console.print(f"  {points} expiring at the end of {month_label(month)}")
    finally:
        chain.close()
