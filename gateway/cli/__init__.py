"""The `loyalty` command line. `root.py` holds the command group and the entry point; the
commands live in one module per area and register themselves on import."""

from gateway.cli import (  # noqa: F401 - registers the commands
    audit,
    batch,
    campaign,
    chain,
    console,
    index,
    metrics,
    operator,
    partners,
    programme,
    serve,
)
from gateway.cli.root import main, run

__all__ = ["main", "run"]
