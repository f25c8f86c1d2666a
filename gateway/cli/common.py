"""What the commands share: the console, opening a data directory's chain, ledger and database,
and reading dates."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click
from rich.console import Console as RichConsole
from rich.table import Table
from sqlalchemy.orm import Session

from gateway.app.bootstrap import open_chain as runtime_chain
from gateway.app.deployment import Deployment
from gateway.audit.report import History
from gateway.audit.verify import GatewayIndex, read_index
from gateway.chain.backends import ChainBackend
from gateway.chain.ledger import Ledger
from gateway.core.config import Settings
from gateway.core.errors import ConfigError
from gateway.db.models import Partner
from gateway.db.session import database_url, make_engine, make_sessionmaker


class Console(RichConsole):
    """rich's console, except that output piped to a file or another program is not wrapped
    (rich would wrap it at 80 columns, mid-word): only a terminal gets lines fitted to its width."""

    def print(self, *objects: Any, **options: Any) -> None:
        if not self.is_terminal:
            if options.get("soft_wrap") is None:
                options["soft_wrap"] = True
            # A table gets its natural width (up to 400 columns), not 80 columns of wrapped cells
            # (rich caps a print's width at the console's, so the console widens for it).
            if any(isinstance(o, Table) for o in objects):
                saved, self._width = self._width, 400
                try:
                    super().print(*objects, **options)
                finally:
                    self._width = saved
                return
        super().print(*objects, **options)


console = Console()


def open_chain(settings: Settings, network: str) -> tuple[ChainBackend, str]:
    """A network by name or URL, for commands that start from nothing (no data directory)."""
    try:
        return runtime_chain(settings, network, None), network
    except ConfigError as exc:
        raise click.BadParameter(exc.message) from exc


def open_ledger(
    settings: Settings,
    directory: Path,
    network: str | None,
    *,
    address: str | None = None,
    from_block: int | None = None,
) -> tuple[ChainBackend, Ledger, str]:
    """(chain, ledger, network name) of a data directory's deployment record; or, with
    `address`, of a ledger given outright (then `from_block`, default 0, is where its history
    starts). For `embedded` the chain is the one stored in the data directory."""
    record = Deployment.load(directory) if address is None else None
    name = network or (record.network if record else "embedded")
    chain = runtime_chain(settings, name, directory)
    ledger = Ledger(chain.w3, address or (record.address if record else ""))
    ledger.deployment_block = from_block if from_block is not None else (record.deployment_block if record else 0)
    return chain, ledger, name


def database_in(settings: Settings, directory: Path) -> str | None:
    """The URL of the data directory's gateway database, or None when it has none."""
    url = database_url(directory, settings.database_url)
    if url.startswith("sqlite") and not (directory / "gateway.sqlite").exists():
        return None
    return url


@contextmanager
def database_session(url: str) -> Iterator[Session]:
    """A read session on the gateway's database (no migration, no keys)."""
    engine = make_engine(url)
    try:
        with make_sessionmaker(engine)() as session:
            yield session
    finally:
        engine.dispose()


def gateway_index(settings: Settings, directory: Path) -> GatewayIndex | None:
    """The gateway's operations, if this data directory has a database."""
    url = database_in(settings, directory)
    if url is None:
        return None
    with database_session(url) as session:
        return read_index(session)


def partner_names(settings: Settings, directory: Path) -> dict[int, str] | None:
    """Partner names from the gateway's database, if this data directory has one (they are not on-chain)."""
    from sqlalchemy import select

    url = database_in(settings, directory)
    if url is None:
        return None
    with database_session(url) as session:
        return {int(k): str(v) for k, v in session.execute(select(Partner.id, Partner.name)).all()}


def day(text: str) -> int:
    """The timestamp of a YYYY-MM-DD day's first second (UTC)."""
    try:
        return int(datetime.strptime(text, "%Y-%m-%d").replace(tzinfo=UTC).timestamp())
    except ValueError as exc:
        raise click.BadParameter(f"{text!r} is not a date like 2026-11-01") from exc


def date_of(timestamp: int) -> str:
    return datetime.fromtimestamp(timestamp, tz=UTC).strftime("%Y-%m-%d")


def read_history(chain: ChainBackend, ledger: Ledger, *, quiet: bool = False) -> History:
    """Every event of the ledger and its blocks' times, with a progress bar on the terminal."""
    from rich.progress import Progress

    from gateway.audit.report import load_history

    with Progress(console=console, transient=True, disable=quiet) as progress:
        task = progress.add_task("reading ledger events", total=1)

        def advance(stage: str, done: int, total: int) -> None:
            progress.update(task, description=stage, completed=done, total=total)

        return load_history(chain.w3, ledger, from_block=ledger.deployment_block, progress=advance)
