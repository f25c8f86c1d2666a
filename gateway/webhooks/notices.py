"""Member and partner notices (SPEC section 6, r2), raised by a periodic scan of the members
the gateway knows and the chain's views of them:

- `member.points_expiring`: points expire at the end of this month, and the end is at most
  `expiring_days` away (default 30); once per member and month;
- `member.inactive`: no confirmed earn for `inactive_days` (default 60); once per quiet spell;
- `member.tier_changed`: the tier on-chain differs from the one the last scan saw;
- `partner.allowance_low`: a partner's on-chain allowance is under `allowance_low_points`;
  once per partner and day.

Each notice goes to the partner that enrolled the member (and the operator's webhooks). The
dedupe keys make a repeated or concurrent scan raise nothing twice. A scan costs two contract
views per member; it runs hourly by default (`loyalty serve`), which suits a programme of
tens of thousands of members on one gateway; a larger one would scan members with recent
activity only.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from gateway.chain.ledger import Ledger
from gateway.db.models import Member, Operation, Partner, utcnow
from gateway.points.rules import month_label, month_of, month_start
from gateway.webhooks.models import MemberWatch
from gateway.webhooks.store import publish_many

DAY = 86_400
Notice = tuple[str, dict[str, object], int | None, str]


@dataclass(frozen=True)
class NoticePolicy:
    expiring_days: int = 30
    inactive_days: int = 60
    allowance_low_points: int = 10_000


def scan(
    sessions: sessionmaker[Session],
    writes: sessionmaker[Session],
    ledger: Ledger,
    *,
    now: int,
    policy: NoticePolicy | None = None,
) -> dict[str, int]:
    """One scan (reads through `sessions`, one write transaction through `writes`); returns
    how many notices of each type it found, and under "new" how many had not been raised."""
    policy = policy or NoticePolicy()
    month = month_of(now)
    month_end = month_start(month + 1)
    expiring_soon = month_end - now <= policy.expiring_days * DAY
    notices: list[Notice] = []
    with sessions() as session:
        members = session.execute(select(Member.member_id, Member.address, Member.enrolled_by)).all()
        last_earn = dict(
            session.execute(
                select(Operation.member_id, func.max(Operation.created_at))
                .where(Operation.kind == "earn", Operation.status == "confirmed")
                .group_by(Operation.member_id)
            ).all()
        )
        seen_tiers = {
            m: (t, at)
            for m, t, at in session.execute(select(MemberWatch.member_id, MemberWatch.tier, MemberWatch.updated_at))
        }
        partners = session.scalars(select(Partner.id)).all()
    tiers: dict[str, int] = {}
    for member_id, address, partner_id in members:
        if expiring_soon:
            points = sum(p for m, p in ledger.expiring_of(address) if m == month)
            if points:
                data = {
                    "member_id": member_id,
                    "address": address,
                    "points": points,
                    "expires_at": month_end,
                    "month": month_label(month),
                }
                notices.append(("member.points_expiring", data, partner_id, f"expiring:{member_id}:{month}"))
        last = last_earn.get(member_id)
        if last is not None:
            last = last if last.tzinfo else last.replace(tzinfo=UTC)
            if datetime.fromtimestamp(now, UTC) - last >= timedelta(days=policy.inactive_days):
                data = {
                    "member_id": member_id,
                    "address": address,
                    "last_earn_at": last.isoformat(),
                    "days": policy.inactive_days,
                }
                notices.append(("member.inactive", data, partner_id, f"inactive:{member_id}:{last.isoformat()}"))
        tier = ledger.tier_of(address)
        tiers[member_id] = tier
        seen = seen_tiers.get(member_id)
        if seen is not None and seen[0] != tier:
            # Keyed by the state both scans read, so two at once raise it once.
            key = f"tier:{member_id}:{seen[0]}->{tier}:{seen[1].isoformat()}"
            data = {"member_id": member_id, "address": address, "tier": tier, "previous_tier": seen[0]}
            notices.append(("member.tier_changed", data, partner_id, key))
    day = datetime.fromtimestamp(now, UTC).date().isoformat()
    for partner_id in partners:
        allowance = int(ledger.partner(partner_id)["allowance"])
        if allowance < policy.allowance_low_points:
            data = {"partner_id": partner_id, "allowance": allowance, "threshold": policy.allowance_low_points}
            notices.append(("partner.allowance_low", data, partner_id, f"allowance_low:{partner_id}:{day}"))
    with writes.begin() as session:
        new = publish_many(session, notices)
        for member_id, tier in tiers.items():
            row = session.get(MemberWatch, member_id)
            if row is None:
                session.add(MemberWatch(member_id=member_id, tier=tier, updated_at=utcnow()))
            elif row.tier != tier:
                row.tier, row.updated_at = tier, utcnow()
    counts: dict[str, int] = {}
    for kind, _, _, _ in notices:
        counts[kind] = counts.get(kind, 0) + 1
    counts["new"] = new
    return counts
