"""`loyalty programme show|change|cancel|apply` and `loyalty pause|unpause` (SPEC section 7):
through a gateway's admin API or signed with a key file, like the partner commands (console.py)."""

from __future__ import annotations

from typing import Any

import click
from rich.table import Table

from gateway.cli.common import console
from gateway.cli.console import Target, _print_change, _signed, _when, connection
from gateway.cli.operator import _countdown, print_changes, print_terms
from gateway.cli.root import main


@main.group()
def programme() -> None:
    """The programme's terms and its changes under notice."""


@programme.command("show")
@click.option("--all", "show_all", is_flag=True, help="applied and cancelled changes too")
@connection
def programme_show(target: Target, show_all: bool) -> None:
    """Tiers, expiry, point value, transfers, pause, notice period and the scheduled changes."""
    if target.api is None:
        print_terms(target.op)
        print_changes(target.op, show_all)
        return
    p = target.api.call("GET", "/v1/programme")
    value = p["point_value"]
    console.print(
        f"expiry {p['expiry_months']} months, point value {value['minor_units']} minor units of {value['currency']}, "
        f"transfers {'on' if p['transfers_enabled'] else 'off'}, {'PAUSED' if p['paused'] else 'running'}, "
        f"notice period {p['notice_period_seconds'] // 3600} h, "
        f"debt {'allowed' if p.get('debt_allowed') else 'rejected'}"
    )
    tiers = Table("tier", "name", "qualifying points from", "multiplier", title="tiers")
    for t in p["tiers"]:
        tiers.add_row(str(t["index"]), t["name"] or "", f"{t['threshold']:,}", f"{t['multiplier_bps'] / 10_000:g}x")
    console.print(tiers)
    table = Table("id", "kind", "partner", "state", "effective", "countdown", "sets", title="scheduled changes")
    for c in p["changes"]:
        if c["state"] != "pending" and not show_all:
            continue
        countdown = _countdown(c["seconds_left"]) if c["state"] == "pending" else ""
        table.add_row(str(c["change_id"]), c["kind"], str(c["partner_id"] or ""), c["state"],
                      _when(c["effective_at"]), countdown, str(c["terms"]))  # fmt: skip
    console.print(table)


def _tier_rows(text: str) -> list[tuple[int, int]]:
    try:
        rows = [tuple(int(x) for x in row.split(":")) for row in text.split(",")]
        if any(len(r) != 2 or not 0 <= r[0] < 2**64 or not 0 <= r[1] < 2**32 for r in rows):
            raise ValueError
    except ValueError:
        hint = "THRESHOLD:BPS pairs separated by commas, e.g. 0:10000,500:12500"
        raise click.BadParameter(hint, param_hint="--tiers") from None
    return [(r[0], r[1]) for r in rows]


@programme.command("change")
@click.option("--tiers", default=None, help="a new tier table: THRESHOLD:BPS,... e.g. 0:10000,500:12500")
@click.option("--expiry", type=click.IntRange(0, 120), default=None, help="months until points expire (0: never)")
@click.option("--point-value", default=None, help="MINOR_UNITS:CURRENCY, e.g. 1:EUR")
@click.option("--transfers", type=click.Choice(["on", "off"]), default=None, help="acts at once (not scheduled)")
@click.option(
    "--debt",
    type=click.Choice(["allow", "reject"]),
    default=None,
    help="(r2) reversals beyond a balance: debt or refused",
)
@connection
def programme_change(
    target: Target,
    tiers: str | None,
    expiry: int | None,
    point_value: str | None,
    transfers: str | None,
    debt: str | None,
) -> None:
    """Schedule programme changes (each effective after the notice period)."""
    rows = _tier_rows(tiers) if tiers is not None else None
    value = None
    if point_value is not None:
        units, _, currency = point_value.partition(":")
        if not units.isdigit() or len(currency) != 3 or not currency.isalpha():
            raise click.BadParameter("MINOR_UNITS:CURRENCY, e.g. 1:EUR", param_hint="--point-value")
        value = (int(units), currency.upper())
    if rows is None and expiry is None and value is None and transfers is None and debt is None:
        raise click.UsageError("nothing to change: give --tiers, --expiry, --point-value, --debt and/or --transfers")
    if target.api is not None:
        body: dict[str, Any] = {}
        if rows is not None:
            body["tiers"] = [{"threshold": t, "multiplier_bps": b} for t, b in rows]
        if expiry is not None:
            body["expiry_months"] = expiry
        if value is not None:
            body["point_value"] = {"minor_units": value[0], "currency": value[1]}
        if transfers is not None:
            body["transfers_enabled"] = transfers == "on"
        if debt is not None:
            body["debt_allowed"] = debt == "allow"
        done = target.api.call("POST", "/v1/programme/changes", body)
        for change in done["changes"]:
            _print_change(change)
    else:
        op = target.op
        if rows is not None:
            _signed(op, "setTiers", rows)
        if expiry is not None:
            _signed(op, "setExpiryMonths", expiry)
        if value is not None:
            _signed(op, "setPointValue", value[0], value[1].encode())
        if debt is not None:
            _signed(op, "setDebtPolicy", debt == "allow")
        if transfers is not None:
            op.send("setTransfersEnabled", transfers == "on")
    if transfers is not None:
        console.print(f"transfers {transfers}")


@programme.command("cancel")
@click.argument("change_id", type=click.IntRange(1, 2**63 - 1))
@connection
def programme_cancel(target: Target, change_id: int) -> None:
    """Withdraw a scheduled change before it applies."""
    if target.api is not None:
        _print_change(target.api.call("DELETE", f"/v1/programme/changes/{change_id}"))
    else:
        target.op.send("cancelChange", change_id)
        console.print(f"change {change_id} cancelled")


@programme.command("apply")
@click.argument("change_id", type=click.IntRange(1, 2**63 - 1))
@connection
def programme_apply(target: Target, change_id: int) -> None:
    """Apply a change whose notice period is over (a gateway holding the key also does it by itself)."""
    if target.api is not None:
        _print_change(target.api.call("POST", f"/v1/programme/changes/{change_id}/apply"))
    else:
        target.op.send("applyChange", change_id)
        console.print(f"change {change_id} applied")


@main.command("pause")
@connection
def pause(target: Target) -> None:
    """Stop every balance change at once."""
    if target.api is not None:
        target.api.call("POST", "/v1/ledger/pause")
    else:
        target.op.send("pause")
    console.print("ledger paused")


@main.command("unpause")
@connection
def unpause(target: Target) -> None:
    """Let balances change again."""
    if target.api is not None:
        target.api.call("POST", "/v1/ledger/unpause")
    else:
        target.op.send("unpause")
    console.print("ledger running")
