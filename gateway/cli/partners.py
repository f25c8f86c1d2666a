"""Partners of the coalition: loyalty partner add."""

from __future__ import annotations

from pathlib import Path

import click

from gateway.app.bootstrap import open_runtime
from gateway.cli.common import console
from gateway.cli.root import main
from gateway.core.config import get_settings


@main.group()
def partner() -> None:
    """Partners of the coalition."""


@partner.command("add")
@click.option("--name", required=True)
@click.option("--currency", required=True, help="ISO 4217 code of the partner's sales, e.g. EUR")
@click.option("--points", "rate_points", type=click.IntRange(1), required=True, help="points per --per minor units")
@click.option("--per", "per_minor_units", type=click.IntRange(1), required=True, help="minor units of spend")
@click.option("--allowance", type=click.IntRange(1), required=True, help="points it may issue in all")
@click.option("--signer", default=None, help="its own signing address (self-custody); default: the gateway keeps a key")
@click.option("--network", default=None, help="network name or URL (default: the data dir's)")
@click.option("--data-dir", type=click.Path(path_type=Path), default=None)
def partner_add(
    name: str,
    currency: str,
    rate_points: int,
    per_minor_units: int,
    allowance: int,
    signer: str | None,
    network: str | None,
    data_dir: Path | None,
) -> None:
    """Onboard a partner on-chain and in the gateway; prints its API key once. (With a running
    gateway on the embedded chain, use POST /v1/partners instead: that chain lives in its process.)"""
    from gateway.accounts.partners import create_partner

    settings = get_settings()
    runtime = open_runtime(settings, data_dir=data_dir or settings.gateway.data_dir, network=network, log=False)
    try:
        with runtime.writes.begin() as session:
            body = create_partner(
                runtime,
                session,
                name=name,
                currency=currency.upper(),
                rate_points=rate_points,
                rate_per_minor_units=per_minor_units,
                allowance=allowance,
                signer_address=signer,
            )
    finally:
        runtime.close()
    custody = "the gateway keeps its signing key" if body["managed"] else "it signs with its own key"
    console.print(f"partner {body['partner_id']}: {name}, signer {body['signer_address']} ({custody})")
    console.print(f"API key (shown once, stored only hashed): {body['api_key']}")
