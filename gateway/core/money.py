"""Money as people read it: minor units shown with ISO 4217's decimals for the currency.

972 EUR cents is "9.72 EUR", never "972 EUR": every report, page and command line shows
amounts through this one function.
"""

from __future__ import annotations

ZERO_DECIMAL = {"JPY", "KRW", "ISK", "CLP", "VND", "XOF", "XAF", "UGX", "PYG", "RWF"}
THREE_DECIMAL = {"BHD", "KWD", "OMR", "JOD", "TND", "IQD", "LYD"}


def minor_digits(currency: str) -> int:
    return 0 if currency in ZERO_DECIMAL else 3 if currency in THREE_DECIMAL else 2


def money(minor: int | None, currency: str | None) -> str:
    """Minor units as an amount with the currency's decimals (exact: integer arithmetic)."""
    if minor is None or currency is None:
        return ""
    if not currency:
        return f"{minor:,} (minor units)"
    digits = minor_digits(currency)
    sign, value = ("-" if minor < 0 else ""), abs(minor)
    if digits == 0:
        return f"{sign}{value:,} {currency}"
    return f"{sign}{value // 10**digits:,}.{value % 10**digits:0{digits}d} {currency}"
