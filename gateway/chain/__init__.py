"""Chain client: compiled artifacts, chain backends (embedded, JSON-RPC), the ledger contract."""
