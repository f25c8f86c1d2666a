"""Campaigns (SPEC section 7, r2): `loyalty campaign add` and `loyalty campaign list`, through a
running gateway's API with a partner's API key (`--gateway URL --api-key-file FILE`), by the
partner SDK. A self-custody partner gives `--signing-key-file`: the campaign is signed here."""

from __future__ import annotations

from pathlib import Path

import click
from rich.table import Table

from gateway.cli.common import console
from gateway.cli.root import main
from partners.client import Campaign, PartnerClient
from partners.errors import GatewayError, GatewayUnreachable

_GATEWAY = click.option(
    "--gateway",
    "gateway_url",
    envvar="LOYALTY_URL",
    default="http://127.0.0.1:8000",
    show_default=True,
    help="the gateway's URL",
)
_KEY_FILE = click.option(
    "--api-key-file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    required=True,
    help="a partner's API key (list: an admin or auditor key sees every campaign)",
)


@main.group()
def campaign() -> None:
    """A partner's campaigns: bonus points on purchases in a window, within a budget."""


@campaign.command("add")
@_GATEWAY
@_KEY_FILE
@click.option("--starts-at", required=True, help="RFC 3339 with a time zone, e.g. 2026-12-01T00:00:00+00:00")
@click.option("--ends-at", required=True, help="RFC 3339 with a time zone (excluded)")
@click.option("--budget", type=click.IntRange(min=1), required=True, help="bonus points it may issue in all")
@click.option("--multiplier-bps", type=click.IntRange(min=0), default=0, help="bonus = base x this / 10,000 ...")
@click.option("--fixed-bonus", type=click.IntRange(min=0), default=0, help="... + this, per qualifying purchase")
@click.option("--min-spend", type=click.IntRange(min=0), default=0, help="minimum spend, in minor units")
@click.option("--tier", "tiers", type=click.IntRange(0, 7), multiple=True, help="a tier index (repeat); default all")
@click.option("--name", default=None)
@click.option(
    "--signing-key-file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="a self-custody partner's private key (hex): the campaign is signed here",
)
def campaign_add(
    gateway_url: str,
    api_key_file: Path,
    starts_at: str,
    ends_at: str,
    budget: int,
    multiplier_bps: int,
    fixed_bonus: int,
    min_spend: int,
    tiers: tuple[int, ...],
    name: str | None,
    signing_key_file: Path | None,
) -> None:
    """Register a campaign on-chain; prints its id once mined."""
    signing_key = signing_key_file.read_text().strip() if signing_key_file else None
    with PartnerClient(gateway_url, api_key_file.read_text().strip(), signing_key=signing_key, timeout=120) as client:
        try:
            created = client.create_campaign(
                starts_at=starts_at,
                ends_at=ends_at,
                budget=budget,
                name=name,
                multiplier_bps=multiplier_bps,
                fixed_bonus=fixed_bonus,
                min_spend_minor=min_spend,
                tiers=list(tiers) if tiers else None,
            )
        except (GatewayError, GatewayUnreachable, ValueError) as exc:
            raise click.ClickException(str(exc)) from exc
    console.print(f"campaign [bold]{created.campaign_id}[/bold] registered")
    console.print(_table([created]))


@campaign.command("list")
@_GATEWAY
@_KEY_FILE
def campaign_list(gateway_url: str, api_key_file: Path) -> None:
    """The key's partner's campaigns (an admin or auditor key: all), newest first."""
    with PartnerClient(gateway_url, api_key_file.read_text().strip(), timeout=60) as client:
        try:
            found = client.campaigns()
        except (GatewayError, GatewayUnreachable) as exc:
            raise click.ClickException(str(exc)) from exc
    if not found:
        console.print("no campaigns")
        return
    console.print(_table(found))


def _table(campaigns: list[Campaign]) -> Table:
    table = Table("id", "partner", "name", "window", "bonus", "min spend", "tiers", "spent / budget", "purchases")
    for c in campaigns:
        multiplier = f"+{c.multiplier_bps / 100:g}%" if c.multiplier_bps else ""
        bonus = " ".join(p for p in (multiplier, f"+{c.fixed_bonus}" if c.fixed_bonus else "") if p)
        table.add_row(
            str(c.campaign_id),
            str(c.partner_id),
            c.name or "",
            f"{c.starts_at} to {c.ends_at}",
            bonus,
            str(c.min_spend_minor),
            ",".join(str(t) for t in c.tiers),
            f"{c.spent:,} / {c.budget:,}",
            str(c.purchases),
        )
    return table
