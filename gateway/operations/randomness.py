"""Random 128-bit hex strings (operation ids, receipt salts) for the hot path of acceptance.

`secrets.token_hex(16)` is one `os.urandom` call per id, and each call lets go of the GIL:
a batch of 10,000 earns made 20,000 of them, and with the batch's two signing threads each
one was a GIL hand-over (most of the 4-5% py-spy put on `SystemRandom.randbytes`). Here each
thread draws 4 KiB from `os.urandom` at a time and hands out 16 bytes of it per call: the
same source and the same entropy, 256 ids per system call. A buffer is never shared between
threads, and one inherited through fork() is dropped (the child would repeat the parent's ids).
"""

from __future__ import annotations

import os
import threading

_CHUNK = 4096
_local = threading.local()


def token_hex16() -> str:
    """32 lowercase hex digits of fresh randomness (as `secrets.token_hex(16)`)."""
    state = _local.__dict__
    buffer: bytes | None = state.get("buffer")
    at: int = state.get("at", _CHUNK)
    if buffer is None or at + 16 > len(buffer) or state.get("pid") != os.getpid():
        buffer, at = os.urandom(_CHUNK), 0
        state["buffer"], state["pid"] = buffer, os.getpid()
    state["at"] = at + 16
    return buffer[at : at + 16].hex()
