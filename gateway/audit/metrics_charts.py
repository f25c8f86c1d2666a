"""Programme metrics as a person would rather look at them: one PNG of four panels, and CSV.

Panels: monthly redemption and breakage rates; members active and at churn risk by month;
the flow matrix as a heatmap (points earned at a row's partner, redeemed at a column's);
campaign results. Drawn with matplotlib's object API (no global pyplot state), as the
liability chart of gateway/audit/report.py.
"""

from __future__ import annotations

import csv
import io

from gateway.audit.metrics import Metrics
from gateway.core.money import money
from gateway.points.rules import month_label

COLOURS = {"redemption": "#0072B2", "breakage": "#D55E00", "active": "#009E73", "risk": "#E69F00"}


def render_metrics_chart(
    rows: list[tuple[int, Metrics]],
    total: Metrics,
    *,
    names: dict[int, str] | None = None,
    source: str = "",
) -> bytes:
    """The four panels as a PNG (1200 x 900 pixels); `rows` are monthly figures, `total` the
    period's, whose flow matrix and campaigns are drawn."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator, PercentFormatter

    names = names or {}
    fig = Figure(figsize=(12, 9), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    (rates, members), (flows, campaigns) = fig.subplots(2, 2)
    span = f"{month_label(rows[0][0])} to {month_label(rows[-1][0])}" if rows else "no months"
    who = "coalition" if total.partner_id is None else names.get(total.partner_id, f"partner {total.partner_id}")
    fig.suptitle(f"Programme metrics, {who}, {span}", fontsize=14)
    x = list(range(len(rows)))
    labels = [month_label(m) for m, _ in rows]
    step = max(1, len(rows) // 12)

    # Rates to date: a month's own rate is undefined (or wild) in a month that issued little,
    # while the running rate is what a programme manager tracks.
    issued = redeemed = expired = 0
    redemption, breakage = [], []
    for _, r in rows:
        issued, redeemed, expired = issued + r.issued, redeemed + r.redeemed, expired + r.expired
        redemption.append(100 * redeemed / issued if issued else float("nan"))
        breakage.append(100 * expired / issued if issued else float("nan"))
    rates.plot(x, redemption, marker="o", color=COLOURS["redemption"], label="redeemed")
    rates.plot(x, breakage, marker="s", color=COLOURS["breakage"], label="expired (breakage)")
    rates.set_title("Redemption and breakage to date, % of points issued", fontsize=11, loc="left")
    rates.yaxis.set_major_formatter(PercentFormatter())

    width = 0.4
    members.bar([i - width / 2 for i in x], [r.members_active for _, r in rows], width, color=COLOURS["active"])
    members.bar([i + width / 2 for i in x], [r.members_at_risk for _, r in rows], width, color=COLOURS["risk"])
    title = f"Members active, and at churn risk (no earn for {total.churn_days} days)"
    members.set_title(title, fontsize=11, loc="left")
    members.legend(["active", "at churn risk"], fontsize=9, loc="upper center", ncols=2)
    tallest = max((max(r.members_active, r.members_at_risk) for _, r in rows), default=0)
    members.set_ylim(0, max(1, tallest) * 1.25)  # room for the legend above the bars
    members.yaxis.set_major_locator(MaxNLocator(integer=True))
    for axis in (rates, members):
        axis.set_xticks(x[::step], labels[::step], rotation=45, ha="right", rotation_mode="anchor")
        axis.grid(axis="y", alpha=0.3)
        axis.spines[["top", "right"]].set_visible(False)
    if rows:
        rates.legend(fontsize=9)

    partners = sorted({p for pair in total.flows for p in pair})
    flows.set_title("Flow: points earned at (row), redeemed at (column)", fontsize=11, loc="left")
    if partners:
        index = {p: i for i, p in enumerate(partners)}
        grid = [[0] * len(partners) for _ in partners]
        for (a, b), points in total.flows.items():
            grid[index[a]][index[b]] = points
        image = flows.imshow(grid, cmap="Blues")
        peak = max(max(row) for row in grid) or 1
        for i, row in enumerate(grid):
            for j, points in enumerate(row):
                colour = "white" if points > peak / 2 else "#222222"
                flows.text(j, i, f"{points:,}", ha="center", va="center", color=colour, fontsize=10)
        ticks = [names.get(p, f"partner {p}") for p in partners]
        flows.set_xticks(range(len(partners)), ticks, rotation=30, ha="right", rotation_mode="anchor")
        flows.set_yticks(range(len(partners)), ticks)
        fig.colorbar(image, ax=flows, shrink=0.8, label="points")
    else:
        flows.text(0.5, 0.5, "no redemption in the period", transform=flows.transAxes, ha="center")
        flows.set_axis_off()

    campaigns.set_title("Campaigns: bonus points and purchases", fontsize=11, loc="left")
    if total.campaigns:
        cx = list(range(len(total.campaigns)))
        campaigns.bar([i - width / 2 for i in cx], [c.bonus for c in total.campaigns], width, label="bonus points")
        campaigns.bar([i + width / 2 for i in cx], [c.purchases for c in total.campaigns], width, label="purchases")
        campaigns.set_xticks(cx, [f"#{c.campaign_id}" for c in total.campaigns])
        campaigns.legend(fontsize=9)
        campaigns.spines[["top", "right"]].set_visible(False)
    else:
        campaigns.text(0.5, 0.5, "no campaign in the period", transform=campaigns.transAxes, ha="center")
        campaigns.set_axis_off()
    if source:
        fig.supxlabel(source, fontsize=9, color="#333333")
    out = io.BytesIO()
    fig.savefig(out, format="png", metadata={"Software": "coalition-loyalty programme metrics"})
    return out.getvalue()


HEADLINE = (
    "members_active",
    "new_members",
    "repeat_purchase_rate",
    "average_days_between_purchases",
    "points_issued",
    "points_bonus",
    "points_redeemed",
    "points_reversed",
    "points_expired",
    "redemption_rate",
    "breakage_rate",
    "members_at_churn_risk",
    "liability_points",
    "liability_value_minor",
    "debt_outstanding",
)


def metrics_csv(rows: list[tuple[int, Metrics]], total: Metrics) -> str:
    """One line per month and one for the whole period; money in minor units (column says so)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["period", *HEADLINE])
    for month, figures in rows:
        data = figures.as_json()
        writer.writerow([month_label(month), *("" if data[k] is None else data[k] for k in HEADLINE)])
    data = total.as_json()
    writer.writerow(["total", *("" if data[k] is None else data[k] for k in HEADLINE)])
    return out.getvalue()


def flows_csv(total: Metrics) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["earned_at_partner", "redeemed_at_partner", "points", f"value_minor_{total.currency or 'units'}"])
    for (a, b), points in sorted(total.flows.items()):
        writer.writerow([a, b, points, points * total.point_value])
    return out.getvalue()


def campaigns_csv(total: Metrics) -> str:
    """One row per campaign with a result in the period (SPEC section 5, r2): what its bonus
    cost and what it brought in."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    columns = ["campaign_id", "partner_id", "bonus_points", "purchases", "earns_named", "spend_minor"]
    columns.append("members_reached")
    writer.writerow([*columns, f"bonus_value_minor_{total.currency or 'units'}"])
    for c in total.campaigns:
        row = c.as_json()
        writer.writerow([*(row[k] for k in columns), c.bonus * total.point_value])
    return out.getvalue()


def _shown(value: float | None, *, percent: bool = False) -> str:
    if value is None:
        return "-"
    return f"{100 * value:.1f}%" if percent else f"{value:,.1f}"


def metrics_text(total: Metrics, *, names: dict[int, str] | None = None) -> str:
    """The period's figures as the terminal shows them: a headline table, then the flows."""
    from gateway.audit.report import day_label, text_table

    names = names or {}
    who = "coalition" if total.partner_id is None else names.get(total.partner_id, f"partner {total.partner_id}")
    lines = [f"Programme metrics, {who}, {day_label(total.period_from)} to {day_label(total.period_to - 1)}", ""]
    figures: list[list[object]] = [
        ["members active", total.members_active],
        ["new members", total.new_members],
        ["repeat-purchase rate", _shown(total.repeat_purchase_rate, percent=True)],
        ["average days between purchases", _shown(total.average_days_between_purchases)],
        ["points issued (earns, awards, bonus)", total.issued],
        ["  of which campaign bonus", total.bonus],
        ["points redeemed", total.redeemed],
        ["points reversed", total.reversed],
        ["points expired (breakage)", total.expired],
        ["redemption rate", _shown(total.redemption_rate, percent=True)],
        ["breakage rate", _shown(total.breakage_rate, percent=True)],
        [f"members at churn risk (no earn for {total.churn_days} days)", total.members_at_risk],
        ["liability, points", total.liability_points],
        ["liability, value", money(total.liability_points * total.point_value, total.currency)],
        ["member debt (not in liability)", total.debt_outstanding],
    ]
    lines.append(text_table(["figure", "value"], [[k, v if isinstance(v, int) else str(v)] for k, v in figures]))
    if total.flows:
        rows: list[list[object]] = [
            [
                names.get(a, f"partner {a}"),
                names.get(b, f"partner {b}"),
                p,
                money(p * total.point_value, total.currency),
            ]
            for (a, b), p in sorted(total.flows.items())
        ]
        lines += ["Flow: points earned at one partner, redeemed at another", ""]
        lines.append(text_table(["earned at", "redeemed at", "points", "value"], rows))
    if total.campaigns:
        rows = [
            [
                f"#{c.campaign_id}",
                names.get(c.partner_id, f"partner {c.partner_id}"),
                c.bonus,
                c.purchases,
                c.named,
                c.spend,
                c.members,
            ]
            for c in total.campaigns
        ]
        lines += ["Campaigns (purchases: earns naming it that got a bonus; spend: theirs)", ""]
        heads = ["campaign", "partner", "bonus points", "purchases", "earns named", "spend (minor)", "members reached"]
        lines.append(text_table(heads, rows))
    return "\n".join(lines)
