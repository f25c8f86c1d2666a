"""What a member should know is coming (SPEC section 3, r2): the programme changes scheduled
on-chain under the notice period that change how the member earns or keeps points, read from
the contract's own schedule and described in words.

Only the kinds that touch members are listed: the expiry policy, the tier table and partners'
earn rates. Prices, the point value and signer rotations are between the partners and the
operator. A cancelled or applied change is not "upcoming"; a pending change whose time has come
but that nobody applied yet is listed as "due".
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from eth_abi import decode

from gateway.app.runtime import Runtime

KIND_EXPIRY, KIND_TIERS, KIND_RATE = 1, 2, 4  # Change.kind in contracts/LedgerBase.sol
PENDING = 1
MAX_LISTED = 50  # the newest pending changes; a programme never has more than a handful


@dataclass(frozen=True)
class Upcoming:
    what: str  # "expiry", "tiers", "rate"
    text: str  # one sentence a member reads
    effective_at: int  # unix seconds
    seconds_left: int  # 0 once due


def ordinal(n: int) -> str:
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def describe(kind: int, data: bytes, partner: str, tier_names: list[str]) -> str | None:
    """The change in words, from its ABI-encoded data as the contract will apply it."""
    if kind == KIND_EXPIRY:
        (months,) = decode(["uint16"], data)
        if months == 0:
            return "Points earned from then on will never expire."
        return (
            f"Points earned from then on will expire at the end of the {ordinal(int(months))} full month "
            "after the month they are earned in."
        )
    if kind == KIND_TIERS:
        (table,) = decode(["(uint64,uint32)[]"], data)
        rows = []
        for i, (threshold, bps) in enumerate(table):
            name = tier_names[i] if i < len(tier_names) else f"tier {i}"
            rows.append(f"{name}: from {int(threshold):,} qualifying points, x{int(bps) / 10_000:g}")
        return "New tier table: " + "; ".join(rows) + "."
    if kind == KIND_RATE:
        points, per = decode(["uint32", "uint32"], data)
        unit = "point" if points == 1 else "points"
        return f"{partner} will give {int(points)} {unit} per {int(per):,} minor units spent."
    return None


def upcoming_changes(runtime: Runtime, partner_names: dict[int, str], block: int, now: int) -> list[Upcoming]:
    """Pending member-facing changes at `block`, soonest first."""
    ledger = runtime.ledger
    count = int(ledger.view("changeCount", block=block))
    first = max(1, count - MAX_LISTED + 1)
    ids = list(range(first, count + 1))
    changes: list[Any] = ledger.views([("changeOf", (i,)) for i in ids], block) if ids else []
    tier_names = [t.name for t in runtime.settings.coalition.tiers]
    out = []
    for kind, state, partner_id, effective_at, data in changes:
        if int(state) != PENDING:
            continue
        partner = partner_names.get(int(partner_id), f"partner {int(partner_id)}")
        text = describe(int(kind), bytes(data), partner, tier_names)
        if text is None:
            continue
        what = {KIND_EXPIRY: "expiry", KIND_TIERS: "tiers", KIND_RATE: "rate"}[int(kind)]
        out.append(Upcoming(what, text, int(effective_at), max(0, int(effective_at) - now)))
    return sorted(out, key=lambda u: u.effective_at)
