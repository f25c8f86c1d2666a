"""Rebuilding the gateway's index from the chain and the stored receipts."""
