"""`python -m gateway.cli`: how `loyalty serve --submitter-process` starts its submitter."""

from gateway.cli import run

run()
