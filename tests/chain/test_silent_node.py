"""A node that accepts the connection and never answers: every read the gateway makes of it
fails as `ChainError` (the API's 503 chain_unavailable), whether one call or a batch; before,
a batch of views let the socket's TimeoutError through as a 500 (seen under a frozen anvil)."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator

import pytest

from gateway.chain.backends import RpcChain
from gateway.chain.ledger import Ledger, rpc
from gateway.core.errors import ChainError


@pytest.fixture
def silent_url() -> Iterator[str]:
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    held: list[socket.socket] = []

    def accept() -> None:
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            held.append(conn)  # read nothing, answer nothing

    threading.Thread(target=accept, daemon=True).start()
    yield f"http://127.0.0.1:{server.getsockname()[1]}"
    server.close()
    for conn in held:
        conn.close()


def test_reads_of_a_silent_node_fail_as_chain_errors(silent_url: str) -> None:
    chain = RpcChain(silent_url, timeout=0.5)
    ledger = Ledger(chain.w3, "0x" + "11" * 20)
    with pytest.raises(ChainError):
        rpc(chain.w3, "eth_blockNumber", [])
    with pytest.raises(ChainError):
        ledger.views([("totalSupply", ()), ("balanceOf", ("0x" + "22" * 20,))])
