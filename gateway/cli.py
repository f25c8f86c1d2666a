"""The `loyalty` command line: compile, deploy, balance, init, serve, demo, reindex, audit."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from gateway.audit.verify import GatewayIndex
from gateway.chain.backends import ChainBackend
from gateway.chain.ledger import Ledger, Sender, load_deployment
from gateway.config import Settings, get_settings
from gateway.errors import ConfigError, LoyaltyError
from gateway.ledger.runtime import open_chain as runtime_chain
from gateway.ledger.runtime import open_runtime, operator_key

log = logging.getLogger("gateway.cli")

console = Console()


def open_chain(settings: Settings, network: str) -> tuple[ChainBackend, str]:
    try:
        return runtime_chain(settings, network, None), network
    except ConfigError as exc:
        raise click.BadParameter(exc.message) from exc


@click.group()
def main() -> None:
    """Coalition points network: ledger, gateway and audit tools."""


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
        record = ledger.deployment_record(network=name)
        directory = data_dir or settings.gateway.data_dir
        directory.mkdir(parents=True, exist_ok=True)
        (directory / "deployment.json").write_text(json.dumps(record, indent=2) + "\n")
    finally:
        chain.close()
    if as_json:
        click.echo(json.dumps(record, indent=2))
    else:
        console.print(
            f"deployed CoalitionPoints at {record['address']} on chain {record['chain_id']} "
            f"(block {record['deployment_block']}); record in {directory / 'deployment.json'}"
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
    record = load_deployment(directory / "deployment.json")
    # The data directory's own chain: for `embedded`, the one stored there, not a new one.
    chain = runtime_chain(settings, network or str(record["network"]), directory)
    try:
        ledger = Ledger(chain.w3, record["address"])
        block = chain.w3.eth.block_number
        console.print(
            f"{member}: {ledger.balance_of(member, block)} points at block {block}, "
            f"tier {ledger.tier_of(member, block)}, "
            f"qualifying {ledger.qualifying_points(member, block)}"
        )
        for month, points in ledger.expiring_of(member, block):
            console.print(f"  {points} expiring at the end of {_month_name(month)}")
    finally:
        chain.close()


@main.command()
@click.option("--network", default=None, help="network name or URL (default: embedded, or the data dir's)")
@click.option("--data-dir", type=click.Path(path_type=Path), default=None)
def init(network: str | None, data_dir: Path | None) -> None:
    """Deploy the ledger, create the database, write the first admin key to DATA_DIR/admin.key."""
    settings = get_settings()
    runtime = open_runtime(settings, data_dir=data_dir or settings.gateway.data_dir, network=network)
    console.print(
        f"ready: ledger {runtime.ledger.address} on chain {runtime.ledger.chain_id}, data in {runtime.data_dir}"
    )
    runtime.close()


@main.command()
@click.option("--host", default=None, help="default from the settings (127.0.0.1)")
@click.option("--port", type=int, default=None, help="default from the settings (8000)")
@click.option("--network", default=None, help="network name or URL (default: embedded, or the data dir's)")
@click.option("--data-dir", type=click.Path(path_type=Path), default=None)
@click.option(
    "--workers",
    type=click.IntRange(1, 64),
    default=1,
    help="gateway processes on one port (JSON-RPC networks): all serve the API, one submits",
)
@click.option(
    "--submitter-process",
    is_flag=True,
    help="submit from a process of its own, restarted if it dies (JSON-RPC networks)",
)
def serve(
    host: str | None,
    port: int | None,
    network: str | None,
    data_dir: Path | None,
    workers: int,
    submitter_process: bool,
) -> None:
    """Run the gateway (HTTP API and batch submitter); initializes an empty data directory."""
    import uvicorn

    from gateway import logs
    from gateway.api.app import create_app

    logs.configure()
    settings = get_settings()
    directory = (data_dir or settings.gateway.data_dir).resolve()
    runtime = open_runtime(settings, data_dir=directory, network=network)
    host, port = host or settings.gateway.host, port or settings.gateway.port
    console.print(f"gateway on http://{host}:{port} (docs at /docs), ledger {runtime.ledger.address}")
    if (workers > 1 or submitter_process) and runtime.network == "embedded":
        runtime.close()
        raise click.UsageError(
            "the embedded chain lives inside one process: --workers and --submitter-process need a JSON-RPC network"
        )
    supervisor = SubmitterSupervisor(directory, runtime.network) if submitter_process else None
    try:
        if supervisor is not None:
            supervisor.start()
        if workers > 1 or supervisor is not None:
            runtime.close()  # initialized; each worker opens its own (caches, writer, submitter candidate)
            os.environ["LOYALTY_SERVE_DATA_DIR"] = str(directory)
            os.environ["LOYALTY_SERVE_NETWORK"] = runtime.network
            os.environ["LOYALTY_SERVE_SUBMITTER"] = "elsewhere" if supervisor is not None else "here"
            uvicorn.run(
                "gateway.api.serve:app_from_environment",
                factory=True,
                workers=workers,
                # uvicorn kills a worker that has not answered its ping in 5 s (its default):
                # on a loaded 2-core machine a worker's imports and runtime take longer, and
                # the workers were killed and restarted forever (tests/gateway/test_failover.py).
                timeout_worker_healthcheck=60,
                host=host,
                port=port,
                log_level="warning",
            )
            return
        try:
            uvicorn.run(create_app(runtime), host=host, port=port, log_level="warning")
        finally:
            runtime.close()
    finally:
        if supervisor is not None:
            supervisor.stop()


class SubmitterSupervisor:
    """`loyalty submit` as a child of `loyalty serve --submitter-process`: started with the
    gateway, started again whenever it exits, stopped with the gateway. The child also stops
    by itself when this process dies (it watches its parent), so a kill -9 of the gateway
    leaves no submitter behind holding the lock."""

    def __init__(self, data_dir: Path, network: str) -> None:
        self.command = [
            sys.executable,
            "-m",
            "gateway.cli",
            "submit",
            "--data-dir",
            str(data_dir),
            "--network",
            network,
            "--parent",
            str(os.getpid()),
        ]
        self.child: subprocess.Popen[bytes] | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="submitter-supervisor", daemon=True)

    def _spawn(self) -> subprocess.Popen[bytes]:
        # A session of its own: a terminal's Ctrl-C reaches the gateway, which then stops the
        # child itself, instead of both at once (the child would be restarted meanwhile).
        return subprocess.Popen(self.command, start_new_session=True)

    def start(self) -> None:
        self.child = self._spawn()
        self._thread.start()

    def _watch(self) -> None:
        while not self._stop.is_set():
            child = self.child
            if child is not None and child.poll() is not None and not self._stop.is_set():
                log.warning("the submitter process exited (%s); starting it again", child.returncode)
                self.child = self._spawn()
            self._stop.wait(0.5)

    def stop(self) -> None:
        self._stop.set()
        if self.child is not None and self.child.poll() is None:
            self.child.terminate()
            try:
                self.child.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.child.kill()


@main.command()
@click.option("--network", required=True, help="network name or URL (a JSON-RPC network)")
@click.option("--data-dir", type=click.Path(path_type=Path), default=None)
@click.option("--parent", type=int, default=None, help="stop when this process is gone")
def submit(network: str, data_dir: Path | None, parent: int | None) -> None:
    """Run only the batch submitter, beside `loyalty serve` processes on the same database."""
    from gateway import logs
    from gateway.ledger.submitter import Submitter

    logs.configure()
    settings = get_settings()
    named = settings.networks.get(network)
    if named is not None and named.kind == "embedded":
        # Refused before anything is opened: the gateway process is using that chain's files.
        raise click.UsageError("the embedded chain lives inside the gateway's process: it submits there")
    runtime = open_runtime(
        settings, data_dir=(data_dir or settings.gateway.data_dir).resolve(), network=network, log=False
    )
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    if parent is not None:

        def watch_parent() -> None:
            while not stop.wait(0.5):
                if os.getppid() != parent:  # orphaned: the gateway that started us is gone
                    stop.set()

        threading.Thread(target=watch_parent, name="parent-watch", daemon=True).start()
    submitter = Submitter(runtime)
    submitter.idle_poll = 0.05  # no wake-ups from accepted writes here: look often (a few cheap reads)
    try:
        submitter.run(stop)
    finally:
        runtime.close()


@main.command()
@click.option("--fast", is_flag=True, help="fewer purchases")
@click.option(
    "--data-dir", type=click.Path(path_type=Path), default=None, help="default <data dir>/demo (replaced each run)"
)
def demo(fast: bool, data_dir: Path | None) -> None:
    """The whole story on the embedded chain, through the gateway, in one command."""
    from gateway.demo import run_demo

    run_demo(console, data_dir=data_dir, fast=fast)


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
    from gateway.ledger import service

    settings = get_settings()
    runtime = open_runtime(settings, data_dir=data_dir or settings.gateway.data_dir, network=network, log=False)
    try:
        with runtime.writes.begin() as session:
            body = service.create_partner(
                runtime,
                session,
                name=name,
                currency=currency.upper(),
                rate_points=rate_points,
                rate_per_minor_units=per_minor_units,
                allowance=allowance,
                signer_address=signer,
            ).body
    finally:
        runtime.close()
    custody = "the gateway keeps its signing key" if body["managed"] else "it signs with its own key"
    console.print(f"partner {body['partner_id']}: {name}, signer {body['signer_address']} ({custody})")
    console.print(f"API key (shown once, stored only hashed): {body['api_key']}")


@main.command()
@click.option("--network", default=None, help="network name or URL (default: the deployment record's)")
@click.option("--data-dir", type=click.Path(path_type=Path), default=None)
def reindex(network: str | None, data_dir: Path | None) -> None:
    """Rebuild the gateway's index (operations, batches) from the chain and the stored receipts.

    Custody data (keys, PINs, members, the receipts as accepted) is kept; refuses while
    operations are still on their way to the chain. Stop the gateway first."""
    from rich.progress import Progress

    from gateway.db.session import database_url, make_engine, migrate
    from gateway.ledger.reindex import reindex as rebuild

    settings = get_settings()
    directory = data_dir or settings.gateway.data_dir
    url = database_url(directory, settings.database_url)
    if url.startswith("sqlite") and not (directory / "gateway.sqlite").exists():
        raise click.UsageError(f"no gateway database in {directory}: the custody data is needed to rebuild the index")
    chain, ledger, _ = _ledger(settings, directory, network, None, None)
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
    chain, ledger, start = _ledger(settings, directory, network, address, from_block)
    try:
        with Progress(console=console, transient=True) as progress:
            task = progress.add_task("reading ledger events", total=1)

            def advance(done: int, total: int) -> None:
                progress.update(task, completed=done, total=total)

            index = None if chain_only or address is not None else _index(settings, directory)
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
    chain, ledger, start = _ledger(settings, directory, network, address, from_block)
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
    sessions, engine = _sessions(settings, directory)
    try:
        with sessions() as session:
            return stored_receipt_proof(
                chain.w3, ledger, session, partner_id=partner_id, receipt_id=receipt_id, kind=kind
            )
    finally:
        engine.dispose()


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
    from gateway.chain.ledger import Ledger

    settings = get_settings()
    directory = data_dir or settings.gateway.data_dir
    record = load_deployment(directory / "deployment.json")
    start, end = _day(period_from), _day(period_to)
    chain = runtime_chain(settings, network or str(record["network"]), directory)
    try:
        st = settlement(
            chain.w3,
            Ledger(chain.w3, str(record["address"])),
            period_from=start,
            period_to=end,
            from_block=int(record["deployment_block"]),
        )
    finally:
        chain.close()
    table = Table(
        "partner",
        "issued",
        "reversed",
        "redeemed at it",
        "net points",
        f"net amount ({st.currency}, minor units)",
        title=f"settlement {period_from} .. {period_to}",
    )
    for p in st.partners:
        table.add_row(
            str(p.partner_id), str(p.issued), str(p.reversed), str(p.redeemed), str(p.net_points), str(p.net_amount)
        )
    console.print(table)
    v = st.point_value
    console.print(
        f"breakage {st.breakage_points} points ({st.breakage_points * v}); liability "
        f"{st.liability_start_points} -> {st.liability_end_points} points "
        f"({st.liability_start_points * v} -> {st.liability_end_points * v})"
    )
    verdict = "[green]balances[/green]" if st.balanced else "[red]DOES NOT BALANCE[/red]"
    console.print(
        f"sum of net amounts {st.net_points * v} = change in liability "
        f"{(st.liability_end_points - st.liability_start_points) * v} + breakage {st.breakage_points * v}: " + verdict
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

    from rich.progress import Progress

    from gateway.audit.report import default_period, load_history, write_folder
    from gateway.audit.verify import verify_chain

    settings = get_settings()
    directory = data_dir or settings.gateway.data_dir
    given_from = _day(period_from) if period_from else None  # checked before any chain read
    given_to = _day(period_to) if period_to else None
    record = load_deployment(directory / "deployment.json")
    name = network or str(record["network"])
    chain = runtime_chain(settings, name, directory)
    try:
        ledger = Ledger(chain.w3, str(record["address"]))
        with Progress(console=console, transient=True) as progress:
            task = progress.add_task("reading ledger events", total=1)

            def advance(stage: str, done: int, total: int) -> None:
                progress.update(task, description=stage, completed=done, total=total)

            history = load_history(chain.w3, ledger, from_block=int(record["deployment_block"]), progress=advance)
        start, end = default_period(history)
        start = start if given_from is None else given_from
        end = end if given_to is None else given_to
        if end <= start:
            raise click.BadParameter("--to must be after --from")
        index = None if no_verify else _index(settings, directory)
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
        names=_partner_names(settings, directory),
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
        f"statement {period_from or _date(start)} .. {period_to or _date(end)}: "
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


def _date(timestamp: int) -> str:
    from datetime import UTC, datetime

    return datetime.fromtimestamp(timestamp, tz=UTC).strftime("%Y-%m-%d")


def _partner_names(settings: Settings, directory: Path) -> dict[int, str] | None:
    """Partner names from the gateway's database, if this data directory has one (they are not on-chain)."""
    from sqlalchemy import select

    from gateway.db.models import Partner
    from gateway.db.session import database_url, make_engine, make_sessionmaker

    url = database_url(directory, settings.database_url)
    if url.startswith("sqlite") and not (directory / "gateway.sqlite").exists():
        return None
    engine = make_engine(url)
    try:
        with make_sessionmaker(engine)() as session:
            return dict(session.execute(select(Partner.id, Partner.name)).all())
    finally:
        engine.dispose()


def _day(text: str) -> int:
    from datetime import UTC, datetime

    try:
        return int(datetime.strptime(text, "%Y-%m-%d").replace(tzinfo=UTC).timestamp())
    except ValueError as exc:
        raise click.BadParameter(f"{text!r} is not a date like 2026-11-01") from exc


def _index(settings: Settings, directory: Path) -> GatewayIndex | None:
    """The gateway's operations, if this data directory has a database."""
    from gateway.audit.verify import read_index
    from gateway.db.session import database_url, make_engine, make_sessionmaker

    url = database_url(directory, settings.database_url)
    if url.startswith("sqlite") and not (directory / "gateway.sqlite").exists():
        return None
    engine = make_engine(url)
    try:
        with make_sessionmaker(engine)() as session:
            return read_index(session)
    finally:
        engine.dispose()


def _ledger(
    settings: Settings, directory: Path, network: str | None, address: str | None, from_block: int | None
) -> tuple[ChainBackend, Ledger, int]:
    """The chain and the ledger to audit: from the data directory's deployment.json, or an
    address given outright (then `from_block` is where its history starts, default 0)."""
    record = load_deployment(directory / "deployment.json") if address is None else {}
    chain = runtime_chain(settings, network or str(record.get("network", "embedded")), directory)
    ledger = Ledger(chain.w3, address or str(record["address"]))
    ledger.deployment_block = from_block if from_block is not None else int(record.get("deployment_block", 0))
    return chain, ledger, ledger.deployment_block


def _sessions(settings: Settings, directory: Path) -> tuple[sessionmaker[Session], Engine]:
    """Read sessions on the gateway's database (no migration, no keys)."""
    from gateway.db.session import database_url, make_engine, make_sessionmaker

    url = database_url(directory, settings.database_url)
    if url.startswith("sqlite") and not (directory / "gateway.sqlite").exists():
        raise click.UsageError(f"no gateway database in {directory} (use --file for a receipt document)")
    engine = make_engine(url)
    return make_sessionmaker(engine), engine


def _month_name(month: int) -> str:
    if month == 2**24 - 1:
        return "never"
    return f"{month // 12:04d}-{month % 12 + 1:02d}"


def run() -> None:
    from pydantic import ValidationError

    try:
        main(standalone_mode=True)
    except LoyaltyError as exc:
        console.print(f"[red]error:[/red] {exc.message}")
        sys.exit(1)
    except ValidationError as exc:  # the settings: say which one and why, no traceback
        for error in exc.errors():
            where = ".".join(str(p) for p in error["loc"]) or "settings"
            console.print(f"[red]error in the settings[/red] ({where}): {error['msg']}")
        sys.exit(1)


if __name__ == "__main__":
    run()
