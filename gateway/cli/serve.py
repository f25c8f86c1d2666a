"""Running the gateway: init, serve, submit (a submitter alone), and the demo that drives one."""

from __future__ import annotations

import os
import shutil
import signal
import threading
from pathlib import Path

import click

from gateway.app.bootstrap import open_runtime
from gateway.cli.common import console
from gateway.cli.root import main
from gateway.cli.supervisor import SubmitterSupervisor
from gateway.core.config import get_settings
from gateway.core.heap import freeze_startup_heap
from gateway.core.metrics import MULTIPROC_ENV


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

    from gateway.api.main import create_app
    from gateway.core import logs

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
    if workers > 1 or submitter_process:
        # prometheus-client's multiprocess mode: every process (workers, the submitter) keeps
        # its counters and histograms in files here, and /metrics adds them up. Set before the
        # processes start (they read it when they import prometheus-client); emptied first.
        shared = directory / "metrics.d"
        shutil.rmtree(shared, ignore_errors=True)
        shared.mkdir()
        os.environ[MULTIPROC_ENV] = str(shared)
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
                host=host,
                port=port,
                log_level="warning",
                # uvicorn kills a worker that has not answered its ping in 5 s (its default):
                # on a loaded 2-core machine a worker's imports and runtime take longer, and
                # the workers were killed and restarted forever (tests/gateway/test_failover.py).
                timeout_worker_healthcheck=60,
            )
            return
        try:
            app = create_app(runtime)
            freeze_startup_heap()
            uvicorn.run(app, host=host, port=port, log_level="warning")
        finally:
            runtime.close()
    finally:
        if supervisor is not None:
            supervisor.stop()


@main.command()
@click.option("--network", required=True, help="network name or URL (a JSON-RPC network)")
@click.option("--data-dir", type=click.Path(path_type=Path), default=None)
@click.option("--parent", type=int, default=None, help="stop when this process is gone")
def submit(network: str, data_dir: Path | None, parent: int | None) -> None:
    """Run only the batch submitter, beside `loyalty serve` processes on the same database."""
    from gateway.core import logs
    from gateway.submitter.loop import Submitter

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
    # No API here: the tiers of confirmed members would fill a cache that nothing reads.
    submitter = Submitter(runtime, refresh_tiers=False)
    submitter.idle_poll = 0.05  # no wake-ups from accepted writes here: look often (a few cheap reads)
    freeze_startup_heap()
    try:
        submitter.run(stop)
    finally:
        runtime.close()


@main.command()
@click.option("--fast", is_flag=True, help="fewer purchases")
@click.option(
    "--data-dir", type=click.Path(path_type=Path), default=None, help="default <data dir>/demo (replaced each run)"
)
@click.option("--host", default=None, help="where `loyalty serve` will show the pages (for the links; 127.0.0.1)")
@click.option("--port", type=int, default=None, help="where `loyalty serve` will show the pages (for the links; 8000)")
def demo(fast: bool, data_dir: Path | None, host: str | None, port: int | None) -> None:
    """The whole story on the embedded chain, through the gateway, in one command."""
    from gateway.cli.demo import run_demo

    run_demo(console, data_dir=data_dir, fast=fast, host=host, port=port)
