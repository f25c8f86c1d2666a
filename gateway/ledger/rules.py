"""Compatibility import path: the points rules live in gateway/points/rules.py.

Kept because the contract's test files (tests/test_ledger_*.py, owned by the contract work)
still import `gateway.ledger.rules`; delete once they import `gateway.points.rules`.
"""

from gateway.points.rules import (
    BPS,
    MAX_ALLOWANCE,
    MAX_OP_POINTS,
    MAX_SPEND,
    NEVER,
    MemberModel,
    PartnerModel,
    PointsModel,
    Rejected,
    month_label,
    month_of,
    month_start,
    points_for,
)

__all__ = [
    "BPS",
    "MAX_ALLOWANCE",
    "MAX_OP_POINTS",
    "MAX_SPEND",
    "NEVER",
    "MemberModel",
    "PartnerModel",
    "PointsModel",
    "Rejected",
    "month_label",
    "month_of",
    "month_start",
    "points_for",
]
