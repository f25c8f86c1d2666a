"""Batch files: loyalty batch submit FILE, loyalty batch status ID. Both talk to a running
gateway over HTTP with a partner's API key, through the partner SDK."""

from __future__ import annotations

import time
from pathlib import Path

import click
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from gateway.cli.common import console
from gateway.cli.root import main
from partners.batches import BatchRefusal, BatchStatus
from partners.client import PartnerClient
from partners.errors import GatewayError, GatewayUnreachable

_GATEWAY = click.option(
    "--url", envvar="LOYALTY_URL", default="http://127.0.0.1:8000", show_default=True, help="the gateway"
)
_KEY = click.option(
    "--api-key",
    envvar="LOYALTY_API_KEY",
    required=True,
    help="the partner's API key (or LOYALTY_API_KEY; an admin key may read a batch)",
)


@main.group()
def batch() -> None:
    """Batch files of earns, awards, reversals and refunds (CSV with a header row, or JSON lines)."""


@batch.command("submit")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@_GATEWAY
@_KEY
@click.option(
    "--signing-key-file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="a self-custody partner's private key (hex): each earn record is signed here",
)
@click.option("--idempotency-key", default=None, help="sending the same file again with it answers as the first time")
@click.option("--wait/--no-wait", default=False, help="follow the accepted records until they are confirmed")
@click.option("--timeout", type=float, default=600.0, show_default=True, help="seconds to wait with --wait")
def batch_submit(
    file: Path,
    url: str,
    api_key: str,
    signing_key_file: Path | None,
    idempotency_key: str | None,
    wait: bool,
    timeout: float,
) -> None:
    """Submit FILE (.csv or .jsonl): prints what was accepted and a table of the refused lines."""
    signing_key = signing_key_file.read_text().strip() if signing_key_file else None
    with PartnerClient(url, api_key, signing_key=signing_key, timeout=120) as client:
        try:
            with console.status(f"sending {file.name} ({file.stat().st_size:,} bytes)..."):
                answer = client.submit_batch(file, idempotency_key=idempotency_key)
        except (GatewayError, GatewayUnreachable) as exc:
            raise click.ClickException(str(exc)) from exc
        console.print(
            f"batch [bold]{answer.batch_id}[/bold]: {answer.accepted} of {answer.records} records accepted, "
            f"{len(answer.refused)} refused"
        )
        if answer.refused:
            console.print(_refusals(answer.refused))
        if wait and answer.accepted:
            _follow(client, answer.batch_id, answer.accepted, timeout)
    if answer.refused:
        raise SystemExit(2)  # a script sees that not everything went in


@batch.command("status")
@click.argument("batch_id")
@_GATEWAY
@_KEY
@click.option("--lines", "show_lines", is_flag=True, help="list every line, not only the counts and problems")
def batch_status(batch_id: str, url: str, api_key: str, show_lines: bool) -> None:
    """How far each line of batch BATCH_ID got: counts by status, the rejected and refused lines."""
    with PartnerClient(url, api_key) as client:
        try:
            first = client.batch_status(batch_id, limit=10_000)
        except (GatewayError, GatewayUnreachable) as exc:
            raise click.ClickException(str(exc)) from exc
        pages = [first]
        while pages[-1].next_cursor is not None:
            pages.append(client.batch_status(batch_id, cursor=pages[-1].next_cursor, limit=10_000))
    counts = ", ".join(f"{n} {state}" for state, n in first.counts.items() if n)
    console.print(f"batch [bold]{batch_id}[/bold]: {first.records} records; {counts or 'nothing'}")
    console.print("done: every accepted record is confirmed or rejected" if first.done else "still on its way")
    items = [item for page in pages for item in page.items]
    shown = items if show_lines else [i for i in items if i.status in ("rejected", "refused")]
    if shown:
        table = Table("line", "kind", "receipt", "status", "points", "error")
        for item in shown:
            error = f"{item.error['code']}: {item.error['message']}" if item.error else ""
            table.add_row(
                str(item.line),
                item.kind or "",
                item.receipt_id or "",
                item.status,
                "" if item.points is None else str(item.points),
                error,
            )
        console.print(table)


def _refusals(refused: list[BatchRefusal]) -> Table:
    table = Table("line", "receipt", "code", "message", title="refused (nothing was stored for these)")
    for r in refused:
        table.add_row(str(r.line), r.receipt_id or "", r.code, r.message)
    return table


def _follow(client: PartnerClient, batch_id: str, accepted: int, timeout: float) -> None:
    """A progress bar of the accepted records confirmed (or rejected) so far."""
    deadline = time.monotonic() + timeout
    columns = (TextColumn("on-chain"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    status: BatchStatus
    with Progress(*columns, console=console, transient=False) as progress:
        task = progress.add_task("confirming", total=accepted)
        while True:
            status = client.batch_status(batch_id, limit=1)
            progress.update(task, completed=status.counts.get("confirmed", 0) + status.counts.get("rejected", 0))
            if status.done or time.monotonic() > deadline:
                break
            time.sleep(0.5)
    rejected = status.counts.get("rejected", 0)
    console.print(
        f"{status.counts.get('confirmed', 0)} confirmed, {rejected} rejected"
        + ("" if status.done else f"; still in flight after {timeout:g} s")
        + (f" (loyalty batch status {batch_id} lists them)" if rejected else "")
    )
