"""Audit: replay the chain with the rules, verify receipts, settle between partners."""
