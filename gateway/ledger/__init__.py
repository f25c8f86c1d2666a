"""Ledger domain: the points rules and (later) the services behind the API."""
