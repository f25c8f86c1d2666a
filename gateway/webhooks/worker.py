"""`python -m gateway.webhooks.worker --database-url URL`: a deliverer on its own, until
SIGTERM/SIGINT. `loyalty serve` runs the same loop in a thread; this form is for a separate
process and for the tests that kill one."""

from __future__ import annotations

import argparse
import os
import signal
import threading
from datetime import timedelta

from gateway.core.config import get_settings
from gateway.db.session import make_engine, make_sessionmaker, migrate
from gateway.webhooks.deliver import Deliverer, Policy


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database-url", required=True)
    parser.add_argument("--base-seconds", type=float, default=Policy.base_seconds, help="first retry delay")
    parser.add_argument("--cap-seconds", type=float, default=Policy.cap_seconds)
    parser.add_argument("--lease-seconds", type=float, default=Policy.lease_seconds)
    parser.add_argument("--give-up-hours", type=float, default=25.0)
    parser.add_argument("--idle-seconds", type=float, default=1.0)
    args = parser.parse_args(argv)
    settings = get_settings()
    migrate(args.database_url)
    sessions = make_sessionmaker(make_engine(args.database_url, writer=True))
    policy = Policy(
        base_seconds=args.base_seconds,
        cap_seconds=args.cap_seconds,
        lease_seconds=args.lease_seconds,
        give_up_after=timedelta(hours=args.give_up_hours),
    )
    deliverer = Deliverer(
        sessions,
        kek=settings.key_encryption_key.get_secret_value(),
        production=settings.env == "production",
        policy=policy,
        owner=f"worker-{os.getpid()}",
    )
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    try:
        deliverer.run(stop, idle_seconds=args.idle_seconds)
    finally:
        deliverer.close()


if __name__ == "__main__":
    main()
