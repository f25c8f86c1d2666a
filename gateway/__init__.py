"""Coalition points gateway: chain client, ledger services, database, HTTP API and CLI."""

import os

# keccak-256 through pysha3's C code is ten times faster than the default pycryptodome
# backend (2 us against 21 us a hash), and every earn hashes a receipt, an EIP-712 message
# and Merkle nodes. eth-hash reads this the first time it hashes.
os.environ.setdefault("ETH_HASH_BACKEND", "pysha3")
