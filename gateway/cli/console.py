"""The operator console on the command line (SPEC section 7): `loyalty partner list|show|update|
allowance|suspend|resume|rotate-signer` here, `loyalty programme ...` and `loyalty pause|unpause`
in programme.py, with the connection options they share.

Each command works two ways:
- through a gateway's admin API: `--gateway URL --api-key-file FILE` (the gateway signs with
  the operator key it holds);
- signed here with the operator's key: `--key-file FILE` against `--rpc URL --ledger ADDRESS`
  (or a data directory's deployment), as `loyalty operator` does, for a gateway that holds no
  operator key. The gateway reads every change from the chain.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click
import httpx
from rich.table import Table

from gateway.cli.common import console
from gateway.cli.operator import Operator, _address, _countdown, open_operator, print_partners
from gateway.cli.partners import partner
from partners.signing import CompactSignature

PARTNER_ID = click.IntRange(1, 2**31 - 1)


class Api:
    """A gateway's admin API, answering JSON or a clear error."""

    def __init__(self, url: str, key_file: Path) -> None:
        self.url = url.rstrip("/")
        key = key_file.read_text().strip()
        self.client = httpx.Client(base_url=self.url, headers={"Authorization": f"Bearer {key}"}, timeout=120)

    def call(self, method: str, path: str, body: Any = None) -> dict[str, Any]:
        try:
            answer = self.client.request(method, path, json=body)
        except httpx.HTTPError as exc:
            raise click.ClickException(f"the gateway at {self.url} does not answer: {exc}") from exc
        try:
            data: dict[str, Any] = answer.json()
        except ValueError:
            raise click.ClickException(f"{self.url}{path} answered {answer.status_code} without JSON") from None
        if answer.status_code >= 400:
            error = data.get("error", {})
            raise click.ClickException(f"{answer.status_code} {error.get('code')}: {error.get('message')}")
        return data


class Target:
    """Where a command acts: the gateway's API, or the ledger with a key file."""

    def __init__(self, api: Api | None, op: Operator | None) -> None:
        self.api, self._op = api, op

    @property
    def op(self) -> Operator:
        assert self._op is not None
        return self._op


def connection(command: Callable[..., None]) -> Callable[..., None]:
    """The options choosing the target; the command gets it as `target`."""

    @click.option("--gateway", "gateway_url", default=None, help="act through this gateway's admin API")
    @click.option(
        "--api-key-file", type=click.Path(exists=True, dir_okay=False, path_type=Path), help="an admin API key"
    )
    @click.option("--rpc", "network", default=None, help="sign here: network name or JSON-RPC URL")
    @click.option("--ledger", "ledger_address", default=None, help="the ledger's address (default: the data dir's)")
    @click.option("--data-dir", type=click.Path(path_type=Path), default=None)
    @click.option(
        "--key-file", type=click.Path(exists=True, dir_okay=False, path_type=Path), help="the operator's private key"
    )
    @functools.wraps(command)
    def wrapper(
        gateway_url: str | None,
        api_key_file: Path | None,
        network: str | None,
        ledger_address: str | None,
        data_dir: Path | None,
        key_file: Path | None,
        **kwargs: Any,
    ) -> None:
        if gateway_url is not None:
            if api_key_file is None:
                raise click.UsageError("--gateway needs --api-key-file (an admin key)")
            if network or ledger_address or key_file:
                raise click.UsageError("either --gateway (its API) or --rpc/--ledger/--key-file (sign here), not both")
            target = Target(Api(gateway_url, api_key_file), None)
        else:
            ctx = click.get_current_context()
            target = Target(None, open_operator(ctx, network, ledger_address, data_dir, key_file))
        command(target=target, **kwargs)

    return wrapper


def _when(timestamp: int) -> str:
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%d %H:%M UTC")


def _print_change(change: dict[str, Any]) -> None:
    whose = f" of partner {change['partner_id']}" if change.get("partner_id") else ""
    what = f"change {change['change_id']} ({change['kind']}{whose})"
    if change["state"] == "pending":
        left = _countdown(int(change["seconds_left"] or 0))
        console.print(f"{what} scheduled: takes effect from {_when(change['effective_at'])} ({left})")
    else:
        console.print(f"{what} {change['state']}")


def _signed(op: Operator, function: str, *args: Any) -> None:
    """Sends a change that the ledger schedules and prints it (a refusal: a clear error)."""
    op.schedule(function, *args)


# ------------------------------------------------------------------ partners


@partner.command("list")
@connection
def partner_list(target: Target) -> None:
    """Every partner on the ledger: terms, allowance left, totals."""
    if target.api is None:
        print_partners(target.op)
        return
    table = Table("id", "name", "status", "rate", "allowance left", "issued", "redeemed", "reversed", title="partners")
    for p in target.api.call("GET", "/v1/partners")["items"]:
        status = ("active" if p["issuing"] else f"from {_when(p['issues_from'])}") if p["active"] else "suspended"
        rate = f"{p['earn_rate']['points']}/{p['earn_rate']['per_minor_units']} {p['currency']}"
        table.add_row(str(p["partner_id"]), p["name"] or "", status, rate, f"{p['allowance_left']:,}",
                      f"{p['issued']:,}", f"{p['redeemed']:,}", f"{p['reversed']:,}")  # fmt: skip
    console.print(table)


@partner.command("show")
@click.argument("partner_id", type=PARTNER_ID)
@connection
def partner_show(target: Target, partner_id: int) -> None:
    """One partner's terms and totals, from the chain."""
    if target.api is None:
        p = target.op.ledger.partner(partner_id)
        if int(str(p["signer"]), 16) == 0:
            raise click.ClickException(f"no partner {partner_id} on the ledger")
        p["issue_price"], p["redemption_price"] = target.op.ledger.partner_prices(partner_id)
    else:
        p = target.api.call("GET", f"/v1/partners/{partner_id}")
    for key, value in p.items():
        console.print(f"{key}: {value}")


@partner.command("update")
@click.argument("partner_id", type=PARTNER_ID)
@click.option("--points", "rate_points", type=click.IntRange(1, 2**32 - 1), help="new earn rate: points ...")
@click.option("--per", "per_minor_units", type=click.IntRange(1, 2**32 - 1), help="... per minor units")
@click.option("--issue-price", type=click.IntRange(0, 2**128 - 1), help="minor units it pays per point issued")
@click.option("--redemption-price", type=click.IntRange(0, 2**128 - 1), help="minor units per point redeemed at it")
@connection
def partner_update(
    target: Target,
    partner_id: int,
    rate_points: int | None,
    per_minor_units: int | None,
    issue_price: int | None,
    redemption_price: int | None,
) -> None:
    """Schedule a partner's new earn rate and/or prices (effective after the notice period)."""
    if (rate_points is None) != (per_minor_units is None) or (issue_price is None) != (redemption_price is None):
        raise click.UsageError("give --points with --per, and --issue-price with --redemption-price")
    if rate_points is None and issue_price is None:
        raise click.UsageError("nothing to change: give --points/--per and/or --issue-price/--redemption-price")
    if target.api is not None:
        body: dict[str, Any] = {}
        if rate_points is not None:
            body["earn_rate"] = {"points": rate_points, "per_minor_units": per_minor_units}
        if issue_price is not None:
            body["prices"] = {"issue": issue_price, "redemption": redemption_price}
        for change in target.api.call("PATCH", f"/v1/partners/{partner_id}", body)["changes"]:
            _print_change(change)
        return
    if rate_points is not None:
        _signed(target.op, "setPartnerRate", partner_id, rate_points, per_minor_units)
    if issue_price is not None:
        _signed(target.op, "setPartnerPrices", partner_id, issue_price, redemption_price)


@partner.command("allowance")
@click.argument("partner_id", type=PARTNER_ID)
@click.option("--add", type=click.IntRange(1, 2**128 - 1), required=True, help="points added to what is left")
@connection
def partner_allowance(target: Target, partner_id: int, add: int) -> None:
    """Top up a partner's allowance (the points it may still issue)."""
    if target.api is not None:
        done = target.api.call("POST", f"/v1/partners/{partner_id}/allowance", {"add": add})
        left = done["allowance_left"]
    else:
        # Signed here the ledger's absolute setAllowance is sent from the allowance just read;
        # the gateway's API also accounts for points issued in between (accounts/operator.py).
        left = int(target.op.ledger.partner(partner_id)["allowance"]) + add
        target.op.send("setAllowance", partner_id, left)
    console.print(f"partner {partner_id} may issue {left:,} more points")


@partner.command("suspend")
@click.argument("partner_id", type=PARTNER_ID)
@connection
def partner_suspend(target: Target, partner_id: int) -> None:
    """Stop a partner's operations at once."""
    if target.api is not None:
        target.api.call("POST", f"/v1/partners/{partner_id}/suspend")
    else:
        target.op.send("setPartnerActive", partner_id, False)
    console.print(f"partner {partner_id} suspended")


@partner.command("resume")
@click.argument("partner_id", type=PARTNER_ID)
@connection
def partner_resume(target: Target, partner_id: int) -> None:
    """Let a suspended partner operate again."""
    if target.api is not None:
        target.api.call("POST", f"/v1/partners/{partner_id}/resume")
    else:
        target.op.send("setPartnerActive", partner_id, True)
    console.print(f"partner {partner_id} active")


@partner.command("rotate-signer")
@click.argument("partner_id", type=PARTNER_ID)
@click.argument("address")
@click.option("--signature", default=None, help="the current key's signature of RotateSigner (64 bytes hex)")
@click.option("--nonce", type=click.IntRange(0, 2**256 - 1), default=None)
@click.option("--deadline", type=click.IntRange(0, 2**63 - 1), default=None)
@connection
def partner_rotate_signer(
    target: Target, partner_id: int, address: str, signature: str | None, nonce: int | None, deadline: int | None
) -> None:
    """A partner's new signing key: at once with its current key's signature (--signature,
    --nonce, --deadline), else scheduled under notice (its current key can cancel it)."""
    new_signer = _address(address, "ADDRESS")
    if (signature is None) != (nonce is None) or (signature is None) != (deadline is None):
        raise click.UsageError("a signed rotation gives --signature, --nonce and --deadline together")
    if target.api is not None:
        body: dict[str, Any] = {"signer_address": new_signer}
        if signature is not None:
            body |= {"signature": signature, "nonce": nonce, "deadline": deadline}
        done = target.api.call("POST", f"/v1/partners/{partner_id}/signer", body)
        if done["change"] is not None:
            _print_change(done["change"])
        else:
            console.print(f"partner {partner_id} now signs with {new_signer}")
        return
    if signature is None:
        _signed(target.op, "requestSignerChange", partner_id, new_signer)
        return
    try:
        compact = CompactSignature.from_bytes(bytes.fromhex(signature.removeprefix("0x")))
    except ValueError:
        raise click.BadParameter("64 bytes of hex", param_hint="--signature") from None
    target.op.send("rotateSigner", partner_id, new_signer, nonce, deadline, compact.r, compact.vs)
    console.print(f"partner {partner_id} now signs with {new_signer}")
