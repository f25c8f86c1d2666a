"""Gas figures of the ledger's operations, measured, for whoever sizes batches and gas limits.

`WORST_CASE` is the gas of a one-operation transaction (21,000 base and calldata included)
doing the most work the contract allows at the maximum expiry policy (120 months): 121 live
buckets to walk, or 120 expired ones to sweep first (scripts/bench_worst_gas.py, revision 2
with refunds, 2026-12-01). `TYPICAL` is the per-operation share of a batch of 100 in the steady state
(scripts/bench_gas.py). docs/contracts.md explains both.

A batch's limit must cover its operations at their worst, or one member with a long history
can make the batch run out of gas (a whole-batch revert, issue 10 finding 4). Only the gas
used is paid, so a limit sized for the worst case costs nothing when the batch is typical.
"""

from __future__ import annotations

# Worst case of one operation in a one-operation transaction (measured, rounded up to 1,000).
WORST_CASE = {
    "earn": 1_040_000,  # sweeps 120 expired buckets, then inserts; (r2) with a campaign's first bonus
    "award": 1_051_000,  # the same for an award
    "redemption": 1_263_000,  # reads and burns 121 live buckets (r2: and commits the batch's root)
    "reversal": 1_282_000,  # the same, plus the Merkle proof of the earn (r2: and a debt recorded)
    "refund": 1_018_000,  # (r2) sweeps 120 expired buckets, then inserts, plus the proof
    "expire": 939_000,  # expire([member]) sweeping 120 buckets
    "migration": 2_877_000,  # migrate() of 121 live buckets to a fresh address
    "transfer": 5_030_000,  # ERC-20 transfer of 121 buckets into a member holding the same 121
}

# Per-operation gas in a batch of 100 at steady state (scripts/bench_gas.py, docs/benchmarks.md).
TYPICAL = {
    "earn": 46_781,  # to a new member; 29,866 to an existing one
    "award": 26_973,  # to an existing member
    "redemption": 47_629,
    "reversal": 63_647,
    "refund": 60_193,  # (r2)
}

TX_BASE = 21_000
# Above any batch's fixed cost: calldata head, the earn batch's Merkle root commit, events.
BATCH_OVERHEAD = 150_000
# Under a 30M block, the common limit of EVM chains.
GAS_CAP = 25_000_000


def batch_gas_limit(kind: str, size: int) -> int:
    """A gas limit under which a batch of `size` operations of `kind` cannot run out of gas,
    whatever the members' histories (capped at GAS_CAP: see `safe_batch_size`)."""
    return min(GAS_CAP, BATCH_OVERHEAD + WORST_CASE[kind] * size)


def safe_batch_size(kind: str) -> int:
    """The most operations of `kind` whose worst case fits GAS_CAP together (e.g. 20
    redemptions). Larger batches are safe only for members known to be cheap."""
    return max(1, (GAS_CAP - BATCH_OVERHEAD) // WORST_CASE[kind])
