"""Auditing from the chain: loyalty audit verify, receipt, settlement, report."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from gateway.chain.backends import ChainBackend
from gateway.chain.ledger import Ledger
from gateway.cli.common import (
    console,
    database_in,
    database_session,
    date_of,
    day,
    gateway_index,
    open_ledger,
    partner_names,
    read_history,
)
from gateway.cli.root import main
from gateway.core.config import Settings, get_settings
from gateway.core.errors import LoyaltyError


@main.group()
def audit() -> None:
    """Check the ledger from the chain alone."""


@audit.command("verify")
@click.option("--network", default=None, help="network name or URL (default: the deployment record's)")
@click.option("--data-dir", type=click.Path(path_type=Path), default=None, help="holds deployment.json")
@click.option("--address", default=None, help="the ledger's address (instead of deployment.json)")
@click.option("--from-block", type=int, default=None, help="the deployment block (default: the record's)")
@click.option("--chain-only", is_flag=True, help="no database: compare the chain with the rules only")
def audit_verify(
    network: str | None, data_dir: Path | None, address: str | None, from_block: int | None, chain_only: bool
) -> None:
    """Replay every ledger event with the rules and compare with the contract's views and,
    unless --chain-only, with the gateway's index and stored receipts."""
    from rich.progress import Progress

    from gateway.audit.verify import verify_chain

    settings = get_settings()
    directory = data_dir or settings.gateway.data_dir
    chain, ledger, _ = open_ledger(settings, directory, network, address=address, from_block=from_block)
    start = ledger.deployment_block
    try:
        with Progress(console=console, transient=True) as progress:
            task = progress.add_task("reading ledger events", total=1)

            def advance(done: int, total: int) -> None:
                progress.update(task, completed=done, total=total)

            index = None if chain_only or address is not None else gateway_index(settings, directory)
            report = verify_chain(chain.w3, ledger, from_block=start, progress=advance, index=index)
    finally:
        chain.close()
    if index is not None:
        console.print(
            f"compared with the gateway's index: {len(index.operations)} operations, "
            f"{len(index.receipts or [])} stored receipts"
        )
    console.print(
        f"blocks {report.from_block}..{report.to_block}: {report.events} events, "
        f"{report.operations} operations, {report.members} members, supply {report.supply}"
    )
    for d in report.discrepancies:
        console.print(f"[red]discrepancy[/red] {d}")
    if report.ok:
        console.print(
            "[green]no discrepancy[/green]: every balance, tier, the supply and every partner's totals "
            "agree with the rules"
        )
    else:
        raise SystemExit(1)


@audit.command("receipt")
@click.argument("partner_id", type=int, required=False)
@click.argument("receipt_id", required=False)
@click.option(
    "--file",
    "file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="a receipt JSON document (or a saved proof): no database needed",
)
@click.option(
    "--kind",
    type=click.Choice(["earn", "redemption", "reversal"]),
    default=None,
    help="which operation of that receipt id (default: the earn, if any)",
)
@click.option("--network", default=None, help="network name or URL (default: the deployment record's)")
@click.option("--data-dir", type=click.Path(path_type=Path), default=None, help="holds deployment.json")
@click.option("--address", default=None, help="the ledger's address (instead of deployment.json; with --file)")
@click.option("--from-block", type=int, default=None, help="where to start searching (default: deployment block)")
@click.option("--json", "as_json", is_flag=True, help="print the proof as JSON")
def audit_receipt(
    partner_id: int | None,
    receipt_id: str | None,
    file: Path | None,
    kind: str | None,
    network: str | None,
    data_dir: Path | None,
    address: str | None,
    from_block: int | None,
    as_json: bool,
) -> None:
    """Prove one receipt: its canonical document, keccak-256 and the on-chain event carrying it.

    PARTNER_ID RECEIPT_ID reads the receipt the gateway stored; --file FILE hashes the given
    document and searches the chain for it. Exits 1 when no event carries the hash."""
    if (file is None) == (partner_id is None or receipt_id is None):
        raise click.UsageError("give PARTNER_ID and RECEIPT_ID, or --file FILE")
    if address is not None and file is None:
        raise click.UsageError("--address goes with --file (a stored receipt comes with its data directory)")
    settings = get_settings()
    directory = data_dir or settings.gateway.data_dir
    chain, ledger, _ = open_ledger(settings, directory, network, address=address, from_block=from_block)
    start = ledger.deployment_block
    try:
        proof = _prove(chain, ledger, start, settings, directory, file, partner_id, receipt_id, kind)
    except LoyaltyError as exc:
        raise click.ClickException(exc.message) from exc
    finally:
        chain.close()
    if as_json:
        click.echo(json.dumps(proof, indent=2))
    else:
        _print_proof(proof)
    if not proof["matches"]:
        raise SystemExit(1)


def _prove(
    chain: ChainBackend,
    ledger: Ledger,
    start: int,
    settings: Settings,
    directory: Path,
    file: Path | None,
    partner_id: int | None,
    receipt_id: str | None,
    kind: str | None,
) -> dict[str, Any]:
    from gateway.audit.receipts import document_of, document_proof, stored_receipt_proof

    if file is not None:
        return document_proof(chain.w3, ledger, document_of(file.read_text()), from_block=start)
    assert partner_id is not None and receipt_id is not None
    url = database_in(settings, directory)
    if url is None:
        raise click.UsageError(f"no gateway database in {directory} (use --file for a receipt document)")
    with database_session(url) as session:
        return stored_receipt_proof(chain.w3, ledger, session, partner_id=partner_id, receipt_id=receipt_id, kind=kind)


def _print_proof(proof: dict[str, Any]) -> None:
    def say(text: str, **options: Any) -> None:
        console.print(text, soft_wrap=True, **options)  # hashes stay whole on one line

    head = f"receipt {proof['receipt_id']} of partner {proof['partner_id']} ({proof['kind']}"
    if proof.get("operation_id"):
        head += f", operation {proof['operation_id']}, {proof['status']}"
    say(head + ")")
    say("  canonical document: " + proof["receipt_canonical"], markup=False, highlight=False)
    say(f"  keccak-256:         {proof['receipt_hash']}")
    event = proof["event"]
    others = [e for e in proof.get("events", []) if e != event]
    if event is None and not others:
        say("  on-chain event:     none carries this hash")
    if event is not None:
        say(
            f"  on-chain event:     {event['name']} in tx {event['tx_hash']}, block {event['block_number']} "
            f"({event['block_hash']}), log {event['log_index']}; receiptRef {event['receipt_ref']}"
        )
    for other in others:
        reason = f" ({other['error']})" if other.get("error") else ""
        say(
            f"  also on-chain:      {other['name']}{reason} in tx {other['tx_hash']}, block {other['block_number']}, "
            f"log {other['log_index']}"
        )
    verdict = "[green]true[/green]" if proof["matches"] else "[red]false[/red]"
    say(f"  matches: {verdict}")


@audit.command("settlement")
@click.option("--from", "period_from", required=True, help="first day, YYYY-MM-DD (UTC)")
@click.option("--to", "period_to", required=True, help="day after the last, YYYY-MM-DD (UTC)")
@click.option("--network", default=None, help="network name or URL (default: the deployment record's)")
@click.option("--data-dir", type=click.Path(path_type=Path), default=None)
@click.option("--csv", "csv_path", type=click.Path(path_type=Path), default=None, help="also write CSV here")
@click.option("--json", "json_path", type=click.Path(path_type=Path), default=None, help="also write JSON here")
def audit_settlement(
    period_from: str,
    period_to: str,
    network: str | None,
    data_dir: Path | None,
    csv_path: Path | None,
    json_path: Path | None,
) -> None:
    """The settlement statement between partners for a period, from chain events alone."""
    from rich.table import Table

    from gateway.audit.settlement import settlement

    settings = get_settings()
    directory = data_dir or settings.gateway.data_dir
    start, end = day(period_from), day(period_to)
    chain, ledger, _ = open_ledger(settings, directory, network)
    try:
        st = settlement(chain.w3, ledger, period_from=start, period_to=end, from_block=ledger.deployment_block)
    finally:
        chain.close()
    table = Table(
        "partner",
        "issued",
        "awarded",
        "bonus",
        "reversed",
        "redeemed at it",
        "refunded",
        "net points",
        f"net amount ({st.currency}, minor units)",
        title=f"settlement {period_from} .. {period_to}",
    )
    for p in st.partners:
        figures = (p.issued, p.awarded, p.bonus, p.reversed, p.redeemed, p.refunded, p.net_points, p.net_amount)
        table.add_row(str(p.partner_id), *(str(f) for f in figures))
    console.print(table)
    op = st.operator
    console.print(
        f"breakage {st.breakage_points} points ({op.breakage}); debt recorded {st.debt_recorded}, repaid "
        f"{st.debt_repaid}, outstanding {st.debt_start_points} -> {st.debt_end_points}; "
        f"liability {st.liability_start_points} -> {st.liability_end_points} points "
        f"({st.liability_start_amount} -> {st.liability_end_amount})"
    )
    console.print(f"operator: spread {op.spread} + breakage {op.breakage} - revaluation {op.revaluation} = {op.total}")
    verdict = "[green]balances[/green]" if st.balanced else "[red]DOES NOT BALANCE[/red]"
    console.print(
        f"sum of net amounts {st.net_amount} = change in liability "
        f"{st.liability_end_amount - st.liability_start_amount} + operator {op.total}: " + verdict
    )
    if csv_path:
        csv_path.write_text(st.as_csv())
    if json_path:
        json_path.write_text(json.dumps(st.as_json(), indent=2) + "\n")
    if not st.balanced:
        raise SystemExit(1)


@audit.command("report")
@click.option("--out", "out", type=click.Path(path_type=Path), default=None, help="folder to write (default: new)")
@click.option("--from", "period_from", default=None, help="first day, YYYY-MM-DD (UTC; default: deployment month)")
@click.option("--to", "period_to", default=None, help="day after the last, YYYY-MM-DD (UTC; default: tomorrow)")
@click.option("--network", default=None, help="network name or URL (default: the deployment record's)")
@click.option("--data-dir", type=click.Path(path_type=Path), default=None, help="holds deployment.json")
@click.option("--no-verify", is_flag=True, help="skip the replay check (verify.txt)")
def audit_report(
    out: Path | None,
    period_from: str | None,
    period_to: str | None,
    network: str | None,
    data_dir: Path | None,
    no_verify: bool,
) -> None:
    """A folder for auditors: the liability chart, monthly figures, the settlement statement
    (CSV, JSON, text), the verification result and a README, from chain events alone."""
    from datetime import UTC, datetime

    from gateway.audit.report import default_period, write_folder
    from gateway.audit.verify import verify_chain

    settings = get_settings()
    directory = data_dir or settings.gateway.data_dir
    given_from = day(period_from) if period_from else None  # checked before any chain read
    given_to = day(period_to) if period_to else None
    chain, ledger, name = open_ledger(settings, directory, network)
    try:
        history = read_history(chain, ledger)
        start, end = default_period(history)
        start = start if given_from is None else given_from
        end = end if given_to is None else given_to
        if end <= start:
            raise click.BadParameter("--to must be after --from")
        index = None if no_verify else gateway_index(settings, directory)
        report = None
        if not no_verify:
            report = verify_chain(
                chain.w3,
                ledger,
                from_block=history.from_block,
                to_block=history.to_block,
                index=index,
                fetched=(history.events, history.times),
            )
    finally:
        chain.close()
    folder_path = out or Path(f"audit-report-{datetime.now(UTC).strftime('%Y%m%d-%H%M%S')}")
    folder = write_folder(
        folder_path,
        history,
        period_from=start,
        period_to=end,
        network=name if name.startswith(("http://", "https://")) else f"{name} ({directory})",
        names=partner_names(settings, directory),
        verify=report,
        index_compared=index is not None,
    )
    st = folder.statement
    months = len(folder.months)
    console.print(
        f"{len(history.events)} events in blocks {history.from_block}..{history.to_block}; "
        f"{months} month{'s' if months != 1 else ''} charted; liability "
        f"{st.liability_start_points} -> {st.liability_end_points} points over the period"
    )
    console.print(
        f"statement {period_from or date_of(start)} .. {period_to or date_of(end)}: "
        + ("[green]balances[/green]" if st.balanced else "[red]DOES NOT BALANCE[/red]")
    )
    if report is not None:
        verdict = (
            "[green]no discrepancy[/green]" if report.ok else f"[red]{len(report.discrepancies)} discrepancies[/red]"
        )
        console.print(f"verification: {verdict} (details in verify.txt)")
    console.print(f"report written to {folder_path.resolve()}")
    for file in sorted(folder.files):
        console.print(f"  {file}")
    if not st.balanced or (report is not None and not report.ok):
        raise SystemExit(1)
