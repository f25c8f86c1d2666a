"""Keeping this process's tier cache true after a mined batch, reading the chain only for
members whose tier may have moved (issue 15).

A member's tier is `max(tier of its qualifying points, an assigned tier while it runs)`
(LedgerBase._memberTier). Within a calendar month only an earn raises the qualifying points
(by `points - bonus`: a campaign's bonus does not qualify) and only a reversal lowers them;
awards, redemptions and refunds leave them alone. So the watch keeps, per member, the
qualifying points read at some block of this month plus the earns mined since: while an earn
leaves them inside the same tier band of the table, the tier cannot have changed (the
assigned part is untouched by an earn) and nothing is read. A crossing, a reversal, a
migration, a new month, a changed tier table or a member not known yet is read again, in one
batched view call with the tiers (`Runtime.refresh_tiers`). Known qualifying points can only
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
        """Tiers (into the runtime's cache) and qualifying points of `members` at `block`."""
        try:
            tiers, *points = self.rt.ledger.views(
                [("tiers", ()), *(("qualifyingPoints", (m,)) for m in members)], block
            )
        except Exception:  # noqa: BLE001 - forget them: the next batch reads them again
            for member in members:
                self.qualifying.pop(member, None)
        else:
            thresholds = tuple(int(threshold) for threshold, _ in tiers)
            if thresholds != self.thresholds:  # a new tier table: every band is to be read again
                self.thresholds, self.qualifying = thresholds, {}
            self.qualifying.update(zip(members, (int(p) for p in points), strict=True))
        self.rt.refresh_tiers(members, block)
