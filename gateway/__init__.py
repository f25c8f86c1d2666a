"""Coalition points gateway: chain client, ledger services, database, HTTP API and CLI."""
