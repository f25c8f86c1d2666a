"""Liability by month, its chart, and the folder an auditor hands on, from chain events alone.

Longer than 400 lines: the monthly figures, the chart and the folder's files are one report
over the same History; split, each part would import the others.

Per UTC calendar month (the contract's months: year * 12 + month - 1) the points issued,
redeemed, reversed and expired, and the outstanding liability at the month's end: the points
still spendable when the next month begins, which is what `totalSupply` reports then. Points
expire at the end of a month, so a month's expiry is counted in that month and is already
gone from its closing liability. Each month balances:
liability_end = liability_start + issued - redeemed - reversed - expired.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from hexbytes import HexBytes
from web3 import Web3

from gateway.audit.settlement import Statement, statement_of
from gateway.audit.verify import AuditReport, Replay
from gateway.chain.events import fetch_events
from gateway.chain.jsonrpc import quantity
from gateway.chain.ledger import Ledger, LedgerEvent
from gateway.chain.reads import ChainReads
from gateway.core.money import money
from gateway.points.rules import month_label, month_of, month_start

# (stage, done, total): "reading ledger events" in blocks, then "reading block times" in blocks.
Progress = Callable[[str, int, int], None]

FLOWS = {"Earned": "issued", "Redeemed": "redeemed", "Reversed": "reversed"}


# ------------------------------------------------------------------ what the chain says


@dataclass(frozen=True)
class History:
    """Every event of one ledger in [from_block, to_block], with the timestamps of the blocks
    that hold one and of to_block. `to_block_hash` lets a later read notice a reorg."""

    address: str
    chain_id: int
    from_block: int
    to_block: int
    to_block_hash: str
    events: list[LedgerEvent]
    times: dict[int, int]

    @property
    def to_timestamp(self) -> int:
        return self.times[self.to_block]

    @property
    def month(self) -> int:
        """The month of the last block: the one still in progress."""
        return month_of(self.to_timestamp)


def _block(w3: Web3, number: int) -> tuple[int, str]:
    """(timestamp, hash) of a block."""
    block = ChainReads.of(w3).block(number)
    return quantity(block["timestamp"]), HexBytes(block["hash"]).to_0x_hex()


def load_history(
    w3: Web3,
    ledger: Ledger,
    *,
    from_block: int,
    to_block: int | None = None,
    since: History | None = None,
    progress: Progress | None = None,
) -> History:
    """Reads the ledger's events up to `to_block` (default: the latest block). With `since`, a
    history read before, only the blocks after it are read, unless its last block is no longer
    on the chain (a reorg), in which case everything is read again."""
    if to_block is None:
        to_block = ChainReads.of(w3).head()
    start, events, times = from_block, [], {}
    if (
        since is not None
        and since.address == ledger.address
        and since.chain_id == ledger.chain_id
        and since.from_block == from_block
        and since.to_block <= to_block
        and _block(w3, since.to_block)[1] == since.to_block_hash
    ):
        if since.to_block == to_block:
            return since
        start, events, times = since.to_block + 1, list(since.events), dict(since.times)
        if since.to_block not in {e.block_number for e in events[-1:]} and since.to_block != from_block:
            del times[since.to_block]  # the old head's time was kept only as the head's
    fetched = fetch_events(
        w3,
        ledger,
        start,
        to_block,
        (lambda done, total: progress("reading ledger events", done, total)) if progress else None,
    )
    missing = sorted({e.block_number for e in fetched} - times.keys())
    for i, number in enumerate(missing):
        times[number] = _block(w3, number)[0]
        if progress:
            progress("reading block times", i + 1, len(missing))
    if from_block not in times:  # the deployment's month starts the default period
        times[from_block] = _block(w3, from_block)[0]
    times[to_block], head_hash = _block(w3, to_block)
    return History(ledger.address, ledger.chain_id, from_block, to_block, head_hash, events + fetched, times)


# ------------------------------------------------------------------ monthly figures


@dataclass
class MonthFigures:
    month: int  # year * 12 + month - 1, UTC
    issued: int = 0
    redeemed: int = 0
    reversed: int = 0
    expired: int = 0  # points whose life ended at the end of this month (breakage), swept or not
    liability_start: int = 0
    liability_end: int = 0  # at the month's end; for the month in progress, at the last block
    complete: bool = True  # False for the month of the last block read

    @property
    def label(self) -> str:
        return month_label(self.month)

    @property
    def balanced(self) -> bool:
        flows = self.issued - self.redeemed - self.reversed - self.expired
        return self.liability_end == self.liability_start + flows


def monthly(history: History, *, first_month: int | None = None, last_month: int | None = None) -> list[MonthFigures]:
    """The figures of each month in [first_month, last_month] (default: from the month of the
    first event to the month in progress; never before the first event, when the ledger did
    not exist yet, nor beyond the month in progress)."""
    now = history.month
    block_month = {b: month_of(t) for b, t in history.times.items()}
    events = history.events
    first_event = block_month[events[0].block_number] if events else now
    first = first_event if first_month is None else max(first_month, first_event)
    last = now if last_month is None else min(last_month, now)
    if last < first:
        return []
    replay = Replay()
    rows: list[MonthFigures] = []
    liability, i = 0, 0
    for month in range(first_event, last + 1):
        row = MonthFigures(month, liability_start=liability, complete=month < now)
        while i < len(events) and block_month[events[i].block_number] == month:
            event = events[i]
            replay.apply(event, month)
            flow = FLOWS.get(event.name)
            if flow is not None:
                setattr(row, flow, getattr(row, flow) + int(event.args["points"]))
            i += 1
        if month < first - 1:
            continue  # before the window: only the replay matters, the totals are not needed yet
        members = replay.model.members.values()
        if row.complete:
            # A month's buckets are frozen once it has ended: what is left in them, plus what
            # an Expired event already swept (never, so soon), is this month's breakage.
            row.expired = replay.swept.get(month, 0) + sum(m.buckets.get(month, 0) for m in members)
        liability = row.liability_end = replay.model.total_supply(month + 1 if row.complete else month)
        if month >= first:
            rows.append(row)
    return rows


def outstanding(history: History) -> int:
    """The outstanding liability at the last block, from the events."""
    return monthly(history, first_month=history.month)[-1].liability_end


def statement(history: History, *, period_from: int, period_to: int) -> Statement:
    """SPEC section 5's statement for [period_from, period_to) from the history's events."""
    return statement_of(history.events, history.times, period_from=period_from, period_to=period_to)


def default_period(history: History) -> tuple[int, int]:
    """From the first day of the deployment block's month to the day after the last block:
    the whole history."""
    day = 86_400
    return month_start(month_of(history.times[history.from_block])), (history.to_timestamp // day + 1) * day


def months_of_period(period_from: int, period_to: int) -> tuple[int, int]:
    """The first and last month touched by [period_from, period_to)."""
    return month_of(period_from), month_of(max(period_from, period_to - 1))


# ------------------------------------------------------------------ the chart


COLOURS = {  # Okabe-Ito: tellable apart with the common colour-vision deficiencies
    "liability": "#1f3b73",
    "issued": "#009E73",
    "redeemed": "#0072B2",
    "reversed": "#E69F00",
    "expired": "#D55E00",
}


def render_chart(rows: list[MonthFigures], *, source: str = "") -> bytes:
    """The liability line and the monthly movements as a PNG (1100 x 720 pixels)."""
    # The object API, not pyplot: no global figure state, so page requests may render at once.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import FuncFormatter, MaxNLocator

    fig = Figure(figsize=(11, 7.2), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    top, bottom = fig.subplots(2, 1, sharex=True, height_ratios=[3, 2])
    span = f"{rows[0].label} to {rows[-1].label}" if rows else "no months"
    fig.suptitle(f"Coalition points: outstanding liability and monthly movements, {span}", fontsize=14)
    thousands = FuncFormatter(lambda value, _pos: f"{value:,.0f}")
    x = list(range(len(rows)))
    labels = [r.label + ("*" if not r.complete else "") for r in rows]
    if rows:
        liability = [r.liability_end for r in rows]
        top.plot(x, liability, color=COLOURS["liability"], marker="o", linewidth=2.2, label="outstanding at month end")
        top.fill_between(x, liability, color=COLOURS["liability"], alpha=0.08)
        top.annotate(
            f"{liability[-1]:,}",
            (x[-1], liability[-1]),
            textcoords="offset points",
            xytext=(0, 8),
            ha="center",
            fontsize=10,
        )
        width = 0.2
        for k, name in enumerate(("issued", "redeemed", "reversed", "expired")):
            offsets = [i + (k - 1.5) * width for i in x]
            bottom.bar(offsets, [getattr(r, name) for r in rows], width, color=COLOURS[name], label=name)
    else:
        top.text(0.5, 0.5, "no activity on the ledger yet", transform=top.transAxes, ha="center", fontsize=12)
    top.set_ylabel("points outstanding")
    top.set_title("Liability: points still spendable at the end of each month", fontsize=11, loc="left")
    bottom.set_ylabel("points in the month")
    bottom.set_title("Movements: issued, redeemed, reversed (refunds), expired (breakage)", fontsize=11, loc="left")
    in_progress = bool(rows) and not rows[-1].complete
    xlabel = "month (UTC)" + ("; * month in progress, figures to the last block" if in_progress else "")
    # The source goes under the axis label, where the layout engine makes room for it.
    bottom.set_xlabel(xlabel + (f"\n{source}" if source else ""), fontsize=10, color="#333333")
    for axis in (top, bottom):
        axis.yaxis.set_major_formatter(thousands)
        axis.yaxis.set_major_locator(MaxNLocator(integer=True))
        axis.set_ylim(bottom=0)
        axis.grid(axis="y", alpha=0.3)
        axis.spines[["top", "right"]].set_visible(False)
        if rows:
            axis.legend(loc="best", frameon=True, framealpha=0.9, edgecolor="#dddddd", fontsize=10)
    step = max(1, len(rows) // 18)  # at most about 18 labels, or they overlap
    crowded = len(rows) > 8
    bottom.set_xticks(
        x[::step],
        labels[::step],
        rotation=45 if crowded else 0,
        ha="right" if crowded else "center",
        rotation_mode="anchor",
    )
    out = io.BytesIO()
    fig.savefig(out, format="png", metadata={"Software": "coalition-loyalty audit report"})
    return out.getvalue()


# ------------------------------------------------------------------ files


def monthly_csv(rows: list[MonthFigures], point_value: int = 0, currency: str = "") -> str:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(
        [
            "month",
            "month_index",
            "issued",
            "redeemed",
            "reversed",
            "expired",
            "liability_start",
            "liability_end",
            f"liability_end_amount_minor_{currency or 'units'}",
            "complete",
        ]
    )
    for r in rows:
        writer.writerow(
            [
                r.label,
                r.month,
                r.issued,
                r.redeemed,
                r.reversed,
                r.expired,
                r.liability_start,
                r.liability_end,
                r.liability_end * point_value,
                "yes" if r.complete else "no (in progress)",
            ]
        )
    return out.getvalue()


def text_table(headers: list[str], rows: list[list[Any]]) -> str:
    """A plain monospace table: text left, numbers right."""
    cells = [[str(c) for c in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) if cells else len(h) for i, h in enumerate(headers)]
    numeric = [all(isinstance(row[i], int) for row in rows) and bool(rows) for i in range(len(headers))]

    def line(values: list[str]) -> str:
        parts = [v.rjust(w) if n else v.ljust(w) for v, w, n in zip(values, widths, numeric, strict=True)]
        return "  ".join(parts).rstrip()

    return "\n".join([line(headers), line(["-" * w for w in widths]), *(line(r) for r in cells)]) + "\n"


def day_label(timestamp: int) -> str:
    return datetime.fromtimestamp(timestamp, tz=UTC).strftime("%Y-%m-%d")


def statement_text(st: Statement, names: dict[int, str] | None = None) -> str:
    v, cur = st.point_value, st.currency
    names = names or {}
    headers = ["partner", "name", "currency", "issued", "awarded", "reversed", "redeemed at it", "refunded"]
    headers += ["net points", "net amount"]
    rows: list[list[Any]] = [
        [
            p.partner_id,
            names.get(p.partner_id, ""),
            p.currency,
            p.issued,
            p.awarded,
            p.reversed,
            p.redeemed,
            p.refunded,
            p.net_points,
            money(p.net_amount, cur),
        ]
        for p in st.partners
    ]
    op = st.operator
    change = st.liability_end_amount - st.liability_start_amount
    lines = [
        f"Settlement statement {day_label(st.period_from)} to {day_label(st.period_to)} (UTC; the end day excluded)",
        f"Point value: {money(v, cur)} per point.",
        "A positive net amount is owed by the partner to the coalition, a negative one is owed to it.",
        "",
        text_table(headers, rows),
        f"breakage (expired in the period): {st.breakage_points} points = {money(op.breakage, cur)}",
        f"debt recorded / repaid:           {st.debt_recorded} / {st.debt_repaid} points",
        f"operator (spread {money(op.spread, cur)} + breakage - revaluation {money(op.revaluation, cur)}): "
        f"{money(op.total, cur)}",
        f"liability at the start:           {st.liability_start_points} points = "
        f"{money(st.liability_start_amount, cur)}",
        f"liability at the end:             {st.liability_end_points} points = {money(st.liability_end_amount, cur)}",
        "",
        f"check: sum of net amounts {money(st.net_amount, cur)} = change in liability {money(change, cur)} "
        f"+ the operator's line {money(op.total, cur)}: {'balances' if st.balanced else 'DOES NOT BALANCE'}",
    ]
    return "\n".join(lines) + "\n"


def verify_text(report: AuditReport, *, index_compared: bool) -> str:
    lines = [
        f"loyalty audit verify, blocks {report.from_block}..{report.to_block}",
        f"events {report.events}, operations {report.operations}, members {report.members}, supply {report.supply}",
        "compared: every member's balance, qualifying points and tier, the supply and each partner's totals "
        "with a replay of every event under the points rules"
        + ("; and the gateway's index and stored receipts with the events" if index_compared else " (chain only)"),
        "",
    ]
    if report.ok:
        lines.append("result: no discrepancy")
    else:
        lines.append(f"result: {len(report.discrepancies)} discrepancies")
        lines += [f"  - {d}" for d in report.discrepancies]
    return "\n".join(lines) + "\n"


@dataclass
class Folder:
    path: Path
    statement: Statement
    months: list[MonthFigures]
    files: dict[str, str] = field(default_factory=dict)  # name -> what it is


def _put_metrics(
    put: Callable[[str, str | bytes, str], None],
    history: History,
    period_from: int,
    period_to: int,
    first: int,
    last: int,
    names: dict[int, str],
    source: str,
) -> None:
    """The programme metrics (SPEC section 5, r2) of the period, and per month."""
    from gateway.audit.metrics import metrics_of, monthly_metrics
    from gateway.audit.metrics_charts import campaigns_csv, flows_csv, metrics_csv, metrics_text, render_metrics_chart

    total = metrics_of(history.events, history.times, period_from=period_from, period_to=period_to)
    rows = monthly_metrics(history.events, history.times, first_month=first, last_month=last)
    put(
        "metrics.png",
        render_metrics_chart(rows, total, names=names, source=source),
        "programme metrics: redemption and breakage to date, active and at-risk members, the flow matrix, campaigns",
    )
    put("metrics.csv", metrics_csv(rows, total), "the programme metrics per month and for the period")
    put("flows.csv", flows_csv(total), "points earned at one partner and redeemed at another, with their value")
    put("campaigns.csv", campaigns_csv(total), "each campaign's bonus, purchases, spend and members reached")
    put("metrics.txt", metrics_text(total, names=names), "the period's programme metrics as text tables")


def write_folder(
    out: Path,
    history: History,
    *,
    period_from: int,
    period_to: int,
    network: str,
    names: dict[int, str] | None = None,
    verify: AuditReport | None = None,
    index_compared: bool = False,
) -> Folder:
    """Writes chart.png, monthly.csv, settlement.{csv,json,txt}, verify.txt (with `verify`) and
    README.txt (what each file is, where the data came from, SHA-256 of each file) into `out`."""
    out.mkdir(parents=True, exist_ok=True)
    first, last = months_of_period(period_from, period_to)
    rows = monthly(history, first_month=first, last_month=last)
    st = statement(history, period_from=period_from, period_to=period_to)
    folder = Folder(out, st, rows)
    source = (
        f"From chain events alone: contract {history.address}, chain id {history.chain_id}, "
        f"blocks {history.from_block}..{history.to_block}"
    )

    def put(name: str, data: str | bytes, about: str) -> None:
        path = out / name
        path.write_bytes(data if isinstance(data, bytes) else data.encode())
        folder.files[name] = about

    put(
        "chart.png",
        render_chart(rows, source=source),
        "the liability chart: outstanding points at each month's end (line) and the points issued, "
        "redeemed, reversed and expired in each month (bars)",
    )
    put(
        "monthly.csv",
        monthly_csv(rows, st.point_value, st.currency),
        "the chart's figures per UTC calendar month; liability_end = liability_start + issued - redeemed "
        "- reversed - expired; the month in progress is marked complete=no",
    )
    statement_json = st.as_json()
    if names:
        for line in statement_json["partners"]:
            line["name"] = names.get(line["partner_id"], "")
    put("settlement.csv", st.as_csv(), "the settlement statement (SPEC section 5), one row per partner")
    put("settlement.json", json.dumps(statement_json, indent=2) + "\n", "the same statement as JSON")
    put("settlement.txt", statement_text(st, names), "the same statement as a text table, with its balance check")
    if verify is not None:
        put("verify.txt", verify_text(verify, index_compared=index_compared), "the result of `loyalty audit verify`")
    _put_metrics(put, history, period_from, period_to, first, last, names or {}, source)
    head_time = datetime.fromtimestamp(history.to_timestamp, tz=UTC).isoformat(timespec="seconds")
    readme = [
        "Audit report of the coalition points ledger",
        f"written {datetime.now(UTC).isoformat(timespec='seconds')} by `loyalty audit report`",
        "",
        "Where the data came from",
        "  Every figure was computed from the ledger contract's events alone (eth_getLogs over the",
        "  whole range, replayed with the points rules), not from the gateway's database.",
        f"  network (RPC):   {network}",
        f"  chain id:        {history.chain_id}",
        f"  contract:        {history.address}",
        f"  blocks:          {history.from_block} (deployment) to {history.to_block}",
        f"  last block:      hash {history.to_block_hash}, time {head_time}",
        f"  events read:     {len(history.events)}",
        "  partner names:   "
        + ("given by the gateway's database (names are not on-chain)" if names else "not available"),
        f"  period:          {day_label(period_from)} to {day_label(period_to)} (UTC, end day excluded) for the "
        "statement; the chart covers its months",
        "",
        "Files",
        *(f"  {name:<16} {about}" for name, about in folder.files.items()),
        "",
        "SHA-256 of each file",
        *(f"  {hashlib.sha256((out / name).read_bytes()).hexdigest()}  {name}" for name in folder.files),
        "",
        "To check it yourself with only an RPC endpoint:",
        f"  loyalty audit verify --network <RPC URL> --address {history.address} "
        f"--from-block {history.from_block} --chain-only",
    ]
    (out / "README.txt").write_text("\n".join(readme) + "\n")
    folder.files["README.txt"] = "this file"
    return folder
