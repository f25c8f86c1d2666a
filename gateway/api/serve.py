"""The app factory of `loyalty serve --workers N`: each worker process opens its own runtime
(chain client, database engines, caches, group-commit writer) on the data directory the parent
initialized; every worker's submitter competes for the one submitter lock, so exactly one
submits while all serve the API."""

import os
from pathlib import Path

from fastapi import FastAPI

from gateway.api.main import create_app
from gateway.app.bootstrap import open_runtime
from gateway.core import logs
from gateway.core.config import get_settings
from gateway.core.heap import freeze_startup_heap


def app_from_environment() -> FastAPI:
    logs.configure()  # a worker process: its request lines and warnings as JSON, like the parent's
    runtime = open_runtime(
        get_settings(),
        data_dir=Path(os.environ["LOYALTY_SERVE_DATA_DIR"]),
        network=os.environ["LOYALTY_SERVE_NETWORK"],
        log=False,
    )
    # With `--submitter-process` the submitter runs (and is restarted) in a process of its own.
    app = create_app(runtime, run_submitter=os.environ.get("LOYALTY_SERVE_SUBMITTER") != "elsewhere")
    freeze_startup_heap()
    return app
