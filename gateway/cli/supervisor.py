"""The submitter process that `loyalty serve --submitter-process` keeps running."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import threading
from pathlib import Path

log = logging.getLogger("gateway.cli")


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
