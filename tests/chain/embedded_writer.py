"""Helper process for the kill -9 test: earns in a loop on a persistent embedded chain and
prints each transaction hash once its receipt is back (the parent kills it mid-stream)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from gateway.chain.backends import EmbeddedChain
from gateway.chain.ledger import Ledger, Sender, SignedEarn
from partners.signing import EarnMessage, sign
from tests.support import key_for, member


def main() -> None:
    path, address, start = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3])
    chain = EmbeddedChain(path)
    ledger = Ledger(chain.w3, address)
    sender = Sender(chain.w3, chain.dev_keys[1])
    _, alice = member("alice")
    for i in range(start, start + 10_000):
        message = EarnMessage(1, alice, 1_000, i.to_bytes(32, "big"), i, 2**40)
        result = ledger.earn_batch(
            sender, [SignedEarn(message, sign(ledger.domain, message, key_for("partner-0")))], gas=1_000_000
        )
        print(json.dumps({"tx": result.receipt["transactionHash"].to_0x_hex(), "nonce": i}), flush=True)


if __name__ == "__main__":
    main()
