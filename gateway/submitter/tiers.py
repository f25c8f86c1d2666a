"""Keeping this process's tier cache true after a mined batch, reading the chain only for
members whose tier may have moved (issue 15).

A member's tier is `max(tier of its qualifying points, an assigned tier while it runs)`
(LedgerBase._memberTier). Within a calendar month only an earn raises the qualifying points
(by `points - bonus`: a campaign's bonus does not qualify) and only a reversal lowers them;
awards, redemptions and refunds leave them alone. So the watch keeps, per member, the
qualifying points read at some block of this month plus the earns mined since: while an earn
leaves them inside the same tier band of the table, the tier cannot have changed (the
assigned part is untouched by an earn) and nothing is read. A crossing, a reversal, a
migration, a new month, a changed tier table or a member not known yet has its qualifying
points read again (one batched view call), and its tier too where the cached one may be
below the band of those points (`Runtime.refresh_tiers`). Known qualifying points can only
be too high (a reorged batch is counted again when it is mined again), which makes a read
happen sooner, never later. What changes a tier with time alone (an assigned tier ending)
is bounded by the cache's TTL, as for a member no batch touched.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Sequence

from gateway.app.runtime import Runtime
from gateway.chain.ledger import LedgerEvent
from gateway.operations.kinds import Kind

# Kinds whose batches cannot move a member's qualifying points (so nor its tier).
NO_TIER_CHANGE = frozenset({Kind.AWARD, Kind.REDEMPTION, Kind.REFUND})
KNOWN_LIMIT = 200_000  # members remembered; beyond it the watch starts afresh


class TierWatch:
    def __init__(self, runtime: Runtime) -> None:
        self.rt = runtime
        self.month = -1
        self.thresholds: tuple[int, ...] = ()
        self.qualifying: dict[str, int] = {}  # member -> qualifying points this month, as known

    def _band(self, points: int) -> int:
        """Index of the tier these qualifying points earn (LedgerBase._tierIndex)."""
        return max(0, bisect_right(self.thresholds, points, 1) - 1)

    def after_batch(self, kind: str, events: Sequence[LedgerEvent], block: int, month: int) -> None:
        """A batch of `kind` mined at `block` (in `month`) with these result events."""
        touched = list(dict.fromkeys(e.args["member"] for e in events if "member" in e.args))
        if not touched or kind in NO_TIER_CHANGE:
            return
        if kind != Kind.EARN:  # a reversal lowers qualifying points, a migration moves them
            for member in touched:
                self.qualifying.pop(member, None)
            self.rt.refresh_tiers(touched, block)
            return
        earned: dict[str, int] = {}
        for e in events:
            if e.name == "Earned":
                member = e.args["member"]
                earned[member] = earned.get(member, 0) + int(e.args["points"]) - int(e.args.get("bonus", 0))
        if month != self.month or len(self.qualifying) > KNOWN_LIMIT:
            self.month, self.qualifying = month, {}
        stale: list[str] = []
        for member, points in earned.items():
            before = self.qualifying.get(member)
            if before is None or self._band(before + points) != self._band(before):
                stale.append(member)
            else:
                self.qualifying[member] = before + points
        if not stale:
            return
        self.read(stale, block)

    def read(self, members: list[str], block: int) -> None:
        """Qualifying points of `members` at `block`, and their tiers into the runtime's cache
        where they may differ from what it holds.

        A tier cached before this batch stays true when the qualifying points now are still
        within its band or below: the earned part cannot exceed it and the assigned part is
        untouched by an earn. Only the others' tiers are read."""
        try:
            tiers, *points = self.rt.ledger.views(
                [("tiers", ()), *(("qualifyingPoints", (m,)) for m in members)], block
            )
        except Exception:  # noqa: BLE001 - forget them: the next batch reads them again
            for member in members:
                self.qualifying.pop(member, None)
            self.rt.refresh_tiers(members, block)
            return
        thresholds = tuple(int(threshold) for threshold, _ in tiers)
        fresh_table = thresholds == self.thresholds
        if not fresh_table:  # a new tier table: every band is to be read again
            self.thresholds, self.qualifying = thresholds, {}
        self.qualifying.update(zip(members, (int(p) for p in points), strict=True))
        stale = []
        for member in members:
            cached = self.rt.cached_tier(member) if fresh_table else None
            if cached is None or self._band(self.qualifying[member]) > cached:
                stale.append(member)
        self.rt.refresh_tiers(stale, block)
