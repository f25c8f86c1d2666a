"""Rebuilding the gateway's index: loyalty reindex."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from gateway.cli.common import (
    console,
    database_in,
    open_ledger,
)
from gateway.cli.root import main
from gateway.core.config import get_settings
from gateway.core.errors import LoyaltyError


@main.command()
@click.option("--network", default=None, help="network name or URL (default: the deployment record's)")
@click.option("--data-dir", type=click.Path(path_type=Path), default=None)
def reindex(network: str | None, data_dir: Path | None) -> None:
    """Rebuild the gateway's index (operations, batches) from the chain and the stored receipts.

    Custody data (keys, PINs, members, the receipts as accepted) is kept; refuses while
    operations are still on their way to the chain. Stop the gateway first."""
    from rich.progress import Progress

    from gateway.db.session import make_engine, migrate
    from gateway.index.reindex import reindex as rebuild

    settings = get_settings()
    directory = data_dir or settings.gateway.data_dir
    url = database_in(settings, directory)
    if url is None:
        raise click.UsageError(f"no gateway database in {directory}: the custody data is needed to rebuild the index")
    chain, ledger, _ = open_ledger(settings, directory, network)
    try:
        migrate(url)  # an older database gets its receipts table (filled from its operations)
        engine = make_engine(url, writer=True)
        try:
            with Progress(console=console, transient=True) as progress:
                task = progress.add_task("reading ledger events", total=1)

                def advance(done: int, total: int) -> None:
                    progress.update(task, completed=done, total=total)

                def stage(name: str) -> None:
                    progress.update(task, description=name)

                report = rebuild(
                    chain.w3,
                    ledger,
                    engine,
                    confirmations=settings.gateway.confirmations,
                    progress=advance,
                    stage=stage,
                )
        finally:
            engine.dispose()
    except LoyaltyError as exc:
        raise click.ClickException(exc.message) from exc
    finally:
        chain.close()
    r = report

    def say(text: str, **options: Any) -> None:
        console.print(text, soft_wrap=True, **options)

    say(
        f"blocks {r.from_block}..{r.to_block}: {r.events} events; {r.receipts} stored receipts -> "
        f"{r.confirmed} confirmed, {r.mined} mined (awaiting confirmations), {r.rejected} rejected, "
        f"{r.requeued} queued again (never on-chain); {r.batches} batches"
    )
    say(f"partners: {r.partners_updated} updated from the chain, {r.partners_added} added from the chain")
    if r.foreign_events:
        say(f"{r.foreign_events} domain events carry receipts this gateway never accepted (not indexed)")
    for warning in r.warnings:
        say(f"[yellow]warning[/yellow] {warning}")
    say("[green]index rebuilt[/green]" + ("" if r.index_was_present else " (its tables were missing)"))
