"""The operator's commands, signed with the operator's key wherever it lives (SPEC section 3:
the gateway need not hold it): `loyalty operator show|changes|add-partner|allowance|suspend|
resume|schedule ...|apply|cancel|pause|unpause|transfers|assign-tier`.

Each talks to the ledger straight through JSON-RPC (`--rpc`, a network name or URL, and
`--ledger`, or a data directory's deployment record) and signs with `--key-file` (a file
holding the hex private key; on a development chain its own first account by default). No
gateway database is read or written: the gateway learns of every change from the chain.

Longer than 400 lines: every operator function of the contract has its command here, next
to the key-file and node checks they share; `loyalty partner|programme` (cli/console.py)
reuses them.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click
from eth_utils import is_address, is_checksum_address, to_checksum_address
from rich.table import Table

from gateway.app.bootstrap import operator_key
from gateway.chain.backends import ChainBackend
from gateway.chain.ledger import Ledger, LedgerRevert, Sender
from gateway.chain.reads import ChainReads
from gateway.cli.common import console, open_ledger
from gateway.cli.root import main
from gateway.core.config import Settings, get_settings
from gateway.core.errors import ChainError, ConfigError
from gateway.points.rules import CHANGE_EXPIRY, CHANGE_POINT_VALUE, CHANGE_PRICES, CHANGE_RATE, CHANGE_SIGNER

KINDS = {CHANGE_EXPIRY: "expiry", 2: "tiers", CHANGE_POINT_VALUE: "point value", CHANGE_RATE: "rate"}
KINDS |= {CHANGE_SIGNER: "signer", CHANGE_PRICES: "prices"}


class Operator:
    """The ledger and the operator's signing key, for one command."""

    def __init__(self, chain: ChainBackend, ledger: Ledger, key: str | None) -> None:
        self.chain, self.ledger, self._key = chain, ledger, key

    @property
    def sender(self) -> Sender:
        if self._key is None:
            raise click.UsageError("this command signs: give --key-file (the operator's private key)")
        return Sender(self.chain.w3, self._key)

    def send(self, function: str, *args: Any) -> list[Any]:
        """Sends an operator call; a refusal is a clear error, never a stack trace."""
        try:
            receipt = self.ledger.call(self.sender, function, *args)
        except LedgerRevert as exc:
            raise click.ClickException(f"the ledger refused {function}: {exc.error}") from exc
        except ChainError as exc:
            raise click.ClickException(f"{function} did not reach the ledger: {exc.message}") from exc
        return self.ledger.decode_logs(receipt)

    def schedule(self, function: str, *args: Any) -> None:
        events = self.send(function, *args)
        for e in events:
            if e.name == "ChangeScheduled":
                when = _when(int(e.args["effectiveAt"]))
                applied = any(x.name == "ChangeApplied" for x in events)
                note = "applied at once (no partner yet)" if applied else f"takes effect from {when}"
                console.print(f"change {e.args['changeId']} scheduled: {note}")


pass_operator = click.make_pass_decorator(Operator)


@main.group()
@click.option("--rpc", "network", default=None, help="network name or JSON-RPC URL (default: the data dir's)")
@click.option("--ledger", "address", default=None, help="the ledger's address (default: the data dir's record)")
@click.option("--data-dir", type=click.Path(path_type=Path), default=None)
@click.option(
    "--key-file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="file holding the operator's private key (hex); default: a development chain's account",
)
@click.pass_context
def operator(
    ctx: click.Context, network: str | None, address: str | None, data_dir: Path | None, key_file: Path | None
) -> None:
    """The operator's chores, signed with the operator's key wherever it is kept."""
    ctx.obj = open_operator(ctx, network, address, data_dir, key_file)


def open_operator(
    ctx: click.Context, network: str | None, address: str | None, data_dir: Path | None, key_file: Path | None
) -> Operator:
    """The ledger (closed with the command) and the operator's key of these options."""
    settings = get_settings()
    directory = data_dir or settings.gateway.data_dir
    if address is None and not (directory / "deployment.json").exists():
        raise click.UsageError(f"no ledger: give --ledger ADDRESS or a --data-dir with a deployment.json ({directory})")
    try:
        chain, ledger, _ = open_ledger(settings, directory, network, address=address)
    except ConfigError as exc:
        raise click.UsageError(exc.message) from exc
    ctx.call_on_close(chain.close)
    try:  # one question first, so that an unreachable node is a clear error, not a trace
        ChainReads(chain).chain_id()
    except (ChainError, OSError) as exc:
        raise click.ClickException(f"the node does not answer: {exc}") from exc
    return Operator(chain, ledger, _read_key(settings, chain, key_file))


def _read_key(settings: Settings, chain: ChainBackend, key_file: Path | None) -> str | None:
    if key_file is not None:
        key = key_file.read_text().strip()
        if not re.fullmatch(r"(0x)?[0-9a-fA-F]{64}", key):
            raise click.BadParameter("the key file must hold one 32-byte hex private key", param_hint="--key-file")
        return key
    try:
        return operator_key(settings, chain)
    except ConfigError:
        return None  # read-only commands work without it


def _address(value: str, hint: str) -> str:
    """An address as typed: all one case, or with a correct EIP-55 checksum."""
    mixed = value != value.lower() and value[2:] != value[2:].upper()
    if not is_address(value) or (mixed and not is_checksum_address(value)):
        raise click.BadParameter(f"{value!r} is not an address (0x and 40 hex digits, EIP-55 case)", param_hint=hint)
    return to_checksum_address(value)


def _when(timestamp: int) -> str:
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%d %H:%M UTC")


def _countdown(seconds: int) -> str:
    if seconds <= 0:
        return "due"
    days, rest = divmod(seconds, 86_400)
    return f"in {days}d {rest // 3600}h" if days else f"in {rest // 3600}h {rest % 3600 // 60}m"


@operator.command("show")
@pass_operator
def show(op: Operator) -> None:
    """The programme and every partner's terms and totals, read from the chain."""
    print_terms(op)
    print_partners(op)


def print_terms(op: Operator) -> None:
    ledger = op.ledger
    value, currency = ledger.view("pointValue")
    console.print(
        f"ledger {ledger.address} on chain {ledger.chain_id}: expiry {ledger.view('expiryMonths')} months, "
        f"point value {value} minor units of {bytes(currency).decode()}, "
        f"transfers {'on' if ledger.view('transfersEnabled') else 'off'}, "
        f"{'PAUSED' if ledger.view('paused') else 'running'}, notice period {ledger.notice_period() // 3600} h"
    )
    tiers = Table("tier", "qualifying points from", "multiplier", title="tiers")
    for i, (threshold, bps) in enumerate(ledger.view("tiers")):
        tiers.add_row(str(i), f"{threshold:,}", f"{bps / 10_000:g}x")
    console.print(tiers)


def print_partners(op: Operator) -> None:
    ledger = op.ledger
    partners = Table(
        "id",
        "signer",
        "status",
        "rate",
        "allowance left",
        "issued",
        "awarded",
        "redeemed",
        "reversed",
        title="partners",
    )
    for pid in range(1, int(ledger.view("partnerCount")) + 1):
        p = ledger.partner(pid)
        status = "active" if p["active"] else "suspended"
        if p["active_from"] > op.chain.latest_timestamp():
            status = f"from {_when(p['active_from'])}"
        partners.add_row(
            str(pid),
            p["signer"],
            status,
            f"{p['rate_points']}/{p['rate_per_minor_units']} {p['currency']}",
            f"{p['allowance']:,}",
            f"{p['issued']:,}",
            f"{p['awarded']:,}",
            f"{p['redeemed']:,}",
            f"{p['reversed']:,}",
        )
    console.print(partners)


@operator.command("changes")
@click.option("--all", "show_all", is_flag=True, help="applied and cancelled ones too")
@pass_operator
def changes(op: Operator, show_all: bool) -> None:
    """Scheduled changes, with their countdowns."""
    print_changes(op, show_all)


def print_changes(op: Operator, show_all: bool) -> None:
    now = op.chain.latest_timestamp()
    table = Table("id", "kind", "partner", "state", "effective", "countdown", title="scheduled changes")
    for change_id in range(1, int(op.ledger.view("changeCount")) + 1):
        c = op.ledger.change(change_id)
        if c["state"] != "pending" and not show_all:
            continue
        countdown = _countdown(c["effective_at"] - now) if c["state"] == "pending" else ""
        table.add_row(
            str(change_id),
            KINDS.get(c["kind"], str(c["kind"])),
            str(c["partner_id"] or ""),
            c["state"],
            _when(c["effective_at"]),
            countdown,
        )
    console.print(table)


@operator.command("add-partner")
@click.option("--signer", required=True, help="the partner's signing address")
@click.option("--currency", required=True, help="ISO 4217 code of its sales")
@click.option("--points", "rate_points", type=click.IntRange(1, 2**32 - 1), required=True)
@click.option("--per", "per_minor_units", type=click.IntRange(1, 2**32 - 1), required=True)
@click.option("--allowance", type=click.IntRange(0, 2**128 - 1), required=True)
@pass_operator
def add_partner(
    op: Operator, signer: str, currency: str, rate_points: int, per_minor_units: int, allowance: int
) -> None:
    """Register a partner on-chain (it issues after the notice period); prints its id for
    `POST /v1/partners {"partner_id": ...}` on a gateway that holds no operator key."""
    if len(currency) != 3 or not currency.isalpha():
        raise click.BadParameter("a 3-letter ISO 4217 code", param_hint="--currency")
    events = op.send(
        "addPartner", _address(signer, "--signer"), rate_points, per_minor_units, currency.upper().encode(), allowance
    )
    pid = next(int(e.args["partnerId"]) for e in events if e.name == "PartnerAdded")
    console.print(
        f"partner {pid} added, signer {signer}; it may issue from {_when(op.ledger.partner(pid)['active_from'])}"
    )


@operator.command("allowance")
@click.argument("partner_id", type=click.IntRange(1, 2**32 - 1))
@click.argument("points", type=click.IntRange(0, 2**128 - 1))
@pass_operator
def allowance(op: Operator, partner_id: int, points: int) -> None:
    """Set the points a partner may still issue (its prepaid block)."""
    op.send("setAllowance", partner_id, points)
    console.print(f"partner {partner_id} may issue {points:,} more points")


@operator.command("suspend")
@click.argument("partner_id", type=click.IntRange(1, 2**32 - 1))
@pass_operator
def suspend(op: Operator, partner_id: int) -> None:
    """Stop a partner's operations at once."""
    op.send("setPartnerActive", partner_id, False)
    console.print(f"partner {partner_id} suspended")


@operator.command("resume")
@click.argument("partner_id", type=click.IntRange(1, 2**32 - 1))
@pass_operator
def resume(op: Operator, partner_id: int) -> None:
    """Let a suspended partner operate again."""
    op.send("setPartnerActive", partner_id, True)
    console.print(f"partner {partner_id} active")


@operator.group("schedule")
def schedule() -> None:
    """Changes that take effect after the notice period (anyone applies them when due)."""


@schedule.command("rate")
@click.argument("partner_id", type=click.IntRange(1, 2**32 - 1))
@click.option("--points", "rate_points", type=click.IntRange(1, 2**32 - 1), required=True)
@click.option("--per", "per_minor_units", type=click.IntRange(1, 2**32 - 1), required=True)
@pass_operator
def schedule_rate(op: Operator, partner_id: int, rate_points: int, per_minor_units: int) -> None:
    """A partner's earn rate: --points per --per minor units."""
    op.schedule("setPartnerRate", partner_id, rate_points, per_minor_units)


@schedule.command("prices")
@click.argument("partner_id", type=click.IntRange(1, 2**32 - 1))
@click.option("--issue", type=click.IntRange(0, 2**128 - 1), required=True, help="minor units it pays per point issued")
@click.option("--redemption", type=click.IntRange(0, 2**128 - 1), required=True, help="minor units per point redeemed")
@pass_operator
def schedule_prices(op: Operator, partner_id: int, issue: int, redemption: int) -> None:
    """A partner's own settlement prices (0: the coalition's point value)."""
    op.schedule("setPartnerPrices", partner_id, issue, redemption)


@schedule.command("tiers")
@click.argument("table")
@pass_operator
def schedule_tiers(op: Operator, table: str) -> None:
    """The tier table as THRESHOLD:BPS,... e.g. 0:10000,500:12500,2000:15000."""
    try:
        rows = [tuple(int(x) for x in row.split(":")) for row in table.split(",")]
        # The ABI's own bounds (uint64 threshold, uint32 basis points); the ledger judges the rest.
        if any(len(r) != 2 or not 0 <= r[0] < 2**64 or not 0 <= r[1] < 2**32 for r in rows):
            raise ValueError
    except ValueError:
        raise click.BadParameter(
            "THRESHOLD:BPS pairs of whole numbers (threshold < 2^64, bps < 2^32) separated by commas",
            param_hint="TABLE",
        ) from None
    op.schedule("setTiers", rows)


@schedule.command("expiry")
@click.argument("months", type=click.IntRange(0, 120))
@pass_operator
def schedule_expiry(op: Operator, months: int) -> None:
    """Months after the month of issue that points expire (0: never), for points issued later."""
    op.schedule("setExpiryMonths", months)


@schedule.command("point-value")
@click.argument("minor_units", type=click.IntRange(0, 2**256 - 1))
@click.argument("currency")
@pass_operator
def schedule_point_value(op: Operator, minor_units: int, currency: str) -> None:
    """The settlement value of a point."""
    if len(currency) != 3 or not currency.isalpha():
        raise click.BadParameter("a 3-letter ISO 4217 code", param_hint="CURRENCY")
    op.schedule("setPointValue", minor_units, currency.upper().encode())


@schedule.command("signer")
@click.argument("partner_id", type=click.IntRange(1, 2**32 - 1))
@click.argument("address")
@pass_operator
def schedule_signer(op: Operator, partner_id: int, address: str) -> None:
    """A new signer for a partner whose key is lost; its current key can cancel it until due."""
    op.schedule("requestSignerChange", partner_id, _address(address, "ADDRESS"))


@operator.command("apply")
@click.argument("change_id", type=click.IntRange(1, 2**256 - 1))
@pass_operator
def apply(op: Operator, change_id: int) -> None:
    """Apply a change whose notice period is over (any key may)."""
    op.send("applyChange", change_id)
    console.print(f"change {change_id} applied")


@operator.command("cancel")
@click.argument("change_id", type=click.IntRange(1, 2**256 - 1))
@pass_operator
def cancel(op: Operator, change_id: int) -> None:
    """Withdraw a scheduled change before it applies."""
    op.send("cancelChange", change_id)
    console.print(f"change {change_id} cancelled")


@operator.command("pause")
@pass_operator
def pause(op: Operator) -> None:
    """Stop every balance change at once."""
    op.send("pause")
    console.print("ledger paused")


@operator.command("unpause")
@pass_operator
def unpause(op: Operator) -> None:
    """Let balances change again."""
    op.send("unpause")
    console.print("ledger running")


@operator.command("transfers")
@click.argument("switch", type=click.Choice(["on", "off"]))
@pass_operator
def transfers(op: Operator, switch: str) -> None:
    """Switch member-to-member transfers on or off."""
    op.send("setTransfersEnabled", switch == "on")
    console.print(f"transfers {switch}")


@operator.command("assign-tier")
@click.argument("member")
@click.argument("tier", type=click.IntRange(0, 7))
@click.option("--days", type=click.IntRange(0, 36_500), required=True, help="how long; 0 withdraws the assignment")
@pass_operator
def assign_tier(op: Operator, member: str, tier: int, days: int) -> None:
    """Give a member address at least TIER for --days (a paid or matched status)."""
    until = 0 if days == 0 else op.chain.latest_timestamp() + days * 86_400
    op.send("assignTier", _address(member, "MEMBER"), tier, until)
    console.print(f"{member}: tier {tier} until {_when(until)}" if until else f"{member}: assignment withdrawn")
