"""Compatibility import path: the errors live in gateway/core/errors.py.

Kept for the ledger client being rewritten with the contract on another branch; nothing in
the gateway imports it. Delete once that work imports `gateway.core.errors`.
"""

from gateway.core.errors import *  # noqa: F403
from gateway.core.errors import __all__ as __all__
