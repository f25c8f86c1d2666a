"""API keys, partners, members and their PINs."""
