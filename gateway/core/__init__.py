"""Shared foundations: settings, errors and their codes, secrets, logs, metrics, rate limits."""
