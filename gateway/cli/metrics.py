"""`loyalty audit metrics`: the programme metrics (SPEC section 5, r2) from chain events alone."""

from __future__ import annotations

import json
from pathlib import Path

import click

from gateway.cli.audit import audit
from gateway.cli.common import day, open_ledger, partner_names, read_history
from gateway.core.config import get_settings


@audit.command("metrics")
@click.option("--from", "period_from", default=None, help="first day, YYYY-MM-DD (UTC; default: deployment day)")
@click.option("--to", "period_to", default=None, help="day after the last, YYYY-MM-DD (UTC; default: now)")
@click.option("--partner", "partner_id", type=int, default=None, help="one partner's figures (its own points)")
@click.option("--churn-days", type=click.IntRange(1, 3650), default=60, help="no earn for this long: at risk")
@click.option("--network", default=None, help="network name or URL (default: the deployment record's)")
@click.option("--data-dir", type=click.Path(path_type=Path), default=None, help="holds deployment.json")
@click.option("--json", "as_json", is_flag=True, help="print JSON instead of tables")
@click.option("--csv", "as_csv", is_flag=True, help="print CSV (one line per month, then the period)")
def audit_metrics(
    period_from: str | None,
    period_to: str | None,
    partner_id: int | None,
    churn_days: int,
    network: str | None,
    data_dir: Path | None,
    as_json: bool,
    as_csv: bool,
) -> None:
    """Members active and new, repeat purchases, redemption and breakage, churn risk,
    liability, the flow between partners and campaign results, for a period."""
    from gateway.audit.metrics import metrics_of, monthly_metrics
    from gateway.audit.metrics_charts import metrics_csv, metrics_text
    from gateway.audit.report import default_period
    from gateway.points.rules import month_of

    if as_json and as_csv:
        raise click.BadParameter("choose one of --json and --csv")
    settings = get_settings()
    directory = data_dir or settings.gateway.data_dir
    given_from = day(period_from) if period_from else None  # checked before any chain read
    given_to = day(period_to) if period_to else None
    chain, ledger, _ = open_ledger(settings, directory, network)
    try:
        history = read_history(chain, ledger, quiet=as_json or as_csv)
    finally:
        chain.close()
    start, end = default_period(history)
    start = start if given_from is None else given_from
    end = end if given_to is None else given_to
    if end <= start:
        raise click.BadParameter("--to must be after --from")
    total = metrics_of(
        history.events, history.times, period_from=start, period_to=end, partner_id=partner_id, churn_days=churn_days
    )
    if as_json:
        click.echo(json.dumps(total.as_json(), indent=2))
    elif as_csv:
        rows = monthly_metrics(
            history.events,
            history.times,
            first_month=month_of(start),
            last_month=month_of(end - 1),
            partner_id=partner_id,
            churn_days=churn_days,
        )
        click.echo(metrics_csv(rows, total), nl=False)
    else:
        click.echo(metrics_text(total, names=partner_names(settings, directory) or {}))
