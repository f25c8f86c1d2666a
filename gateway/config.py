"""Compatibility import path: the settings live in gateway/core/config.py.

Kept for code that belongs to the contract work on another branch (scripts/bench_gas.py, the
ledger client being rewritten); nothing in the gateway imports it. Delete once they import
`gateway.core.config`.
"""

from gateway.core.config import (
    CONFIG_FILE,
    REPO_ROOT,
    CoalitionSettings,
    CompilerSettings,
    GatewaySettings,
    NetworkSettings,
    Settings,
    TierSettings,
    get_settings,
)

__all__ = [
    "CONFIG_FILE",
    "REPO_ROOT",
    "CoalitionSettings",
    "CompilerSettings",
    "GatewaySettings",
    "NetworkSettings",
    "Settings",
    "TierSettings",
    "get_settings",
]
