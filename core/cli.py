"""The ``crmkpi`` command line."""

from __future__ import annotations

import csv
import io
import json
import sys
import time
from datetime import date, datetime
from pathlib import Path
from typing import Any

import click

from . import __version__
from .config import Config, load_config
from .errors import ConfigError, CrmkpiError
from .metrics import run_metrics
from .periods import Calendar
from .plugins import Registry, load_registry
from .store import Store, resolve_url

CONFIG_ENV = "CRMKPI_CONFIG"


class CrmkpiGroup(click.Group):
    """Turns every error into one line on stderr; ``--debug`` shows the traceback instead."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (click.exceptions.Exit, click.exceptions.Abort, click.ClickException):
            raise
        except KeyboardInterrupt:
            click.echo("Interrupted.", err=True)
            ctx.exit(130)
        except Exception as exc:
            if ctx.params.get("debug"):
                raise
            if isinstance(exc, CrmkpiError):
                click.echo(f"Error: {exc}", err=True)
            else:
                click.echo(f"Error: unexpected {type(exc).__name__}: {exc} (run with --debug for details)", err=True)
            ctx.exit(1)


class App:
    """Lazily loaded registry, config and store for one command."""

    def __init__(self, debug: bool) -> None:
        self.debug = debug
        self._registry: Registry | None = None

    @property
    def registry(self) -> Registry:
        if self._registry is None:
            self._registry = load_registry()
            for error in self._registry.errors():
                click.echo(f"Warning: {error} (see `crmkpi plugins`)", err=True)
        return self._registry

    def config(self, path: str) -> Config:
        return load_config(path, self.registry)

    def store(self, config: Config) -> Store:
        return Store(resolve_url(config.store, config.base_dir))


config_option = click.option(
    "--config", "-c", "config_path", envvar=CONFIG_ENV, default="crmkpi.yaml", show_default=True,
    type=click.Path(dir_okay=False), help=f"Config file (or ${CONFIG_ENV}).",
)


@click.group(cls=CrmkpiGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--debug", is_flag=True, help="Show tracebacks on errors.")
@click.version_option(__version__, prog_name="crmkpi")
@click.pass_context
def cli(ctx: click.Context, debug: bool) -> None:
    """Measure CRM performance: sync sources into one store, compute KPIs over it."""
    ctx.obj = App(debug)


STARTER_CONFIG = """\
# crmkpi configuration. Reference: docs/configuration.md
# Secrets: write ${ENV_VAR} (or ${ENV_VAR:-default}) instead of the value.

# SQLAlchemy URL of the normalized store; default: crmkpi.db next to this file.
# store: postgresql://crmkpi@localhost/crmkpi

reporting:
  currency: USD
  timezone: UTC
  fiscal_year_start_month: 1
  week_start: monday
  default_period: last-month

connectors:
  files:
    type: files
    path: data          # one CSV/JSONL per table: deals.csv, accounts.csv, ...
    on_error: fail      # or skip: skip bad rows and report them

# Which metrics `crmkpi run` computes (default: all), with their params.
metrics:
  close_rate: {}
  win_rate:
    params: {by: count}
"""


@cli.command()
@click.option("--path", "target", default="crmkpi.yaml", show_default=True, type=click.Path(dir_okay=False))
@click.option("--force", is_flag=True, help="Overwrite an existing file.")
def init(target: str, force: bool) -> None:
    """Write a starter config."""
    path = Path(target)
    if path.exists() and not force:
        raise ConfigError(f"{path} already exists (use --force to overwrite)")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(STARTER_CONFIG, encoding="utf-8")
    click.echo(f"Wrote {path}. Put your files in {path.parent / 'data'} and run: crmkpi sync --config {path}")


@cli.command()
@config_option
@click.pass_obj
def validate(app: App, config_path: str) -> None:
    """Check a config file and report the first problem precisely."""
    config = app.config(config_path)
    click.echo(f"{config_path}: OK ({len(config.connectors)} connectors, "
               f"{len(config.metrics) if config.metrics is not None else 'all'} metrics, "
               f"{len(config.schedules)} schedules)")


@cli.command()
@config_option
@click.argument("connectors", nargs=-1)
@click.option("--full-refresh", is_flag=True, help="Ignore saved cursors and rewrite every row.")
@click.pass_obj
def sync(app: App, config_path: str, connectors: tuple[str, ...], full_refresh: bool) -> None:
    """Pull records from the configured connectors (all, or those named) into the store."""
    from .sync import sync_connector

    config = app.config(config_path)
    names = list(connectors) or list(config.connectors)
    for name in names:
        if name not in config.connectors:
            raise ConfigError(f"unknown connector {name!r} (configured: {', '.join(config.connectors) or 'none'})")
    if not names:
        raise ConfigError(f"{config_path}: no connectors configured")
    store = app.store(config)
    with _progress() as progress:
        for name in names:
            report = sync_connector(store, app.registry, name, config.connectors[name], config.base_dir,
                                    full_refresh=full_refresh, progress=progress)
            for s in report.streams:
                if s.unchanged:
                    click.echo(f"{name}/{s.name}: unchanged since the last sync", err=True)
                    continue
                skipped = f", {s.skipped} skipped" if s.skipped else ""
                click.echo(f"{name}/{s.name}: {s.read} read, {s.written} written{skipped}", err=True)
                for error in s.errors:
                    click.echo(f"  skipped: {error}", err=True)
            click.echo(f"{name}: {report.written} rows changed in {store.describe()}", err=True)


class _progress:
    """A rich progress bar per stream on a terminal; nothing otherwise."""

    def __enter__(self):
        if not sys.stderr.isatty():
            return None
        from rich.console import Console
        from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

        # No refresh thread: a sync may fork a row worker, and forking a threaded process is unsafe.
        self.bar = Progress(SpinnerColumn(), TextColumn("{task.description}"), TextColumn("{task.completed:,} rows"),
                            TimeElapsedColumn(), console=Console(stderr=True), transient=True, auto_refresh=False)
        self.bar.start()
        self.tasks: dict[str, Any] = {}
        self.shown = 0.0
        return self.update

    def update(self, stream: str, rows: int) -> None:
        if stream not in self.tasks:
            self.tasks[stream] = self.bar.add_task(stream, total=None)
        self.bar.advance(self.tasks[stream], rows)
        now = time.monotonic()
        if now - self.shown >= 0.1:  # batches are small; redrawing on each would cost more than the rows
            self.shown = now
            self.bar.refresh()

    def __exit__(self, *exc) -> None:
        if hasattr(self, "bar"):
            self.bar.stop()


@cli.command()
@config_option
@click.option("--metric", "-m", "metric_ids", multiple=True, help="Metric id (repeatable); default: the config's.")
@click.option("--period", "-p", help="2024, 2024-Q1, 2024-03, 2024-W05, 2024-01-01..2024-03-31, last-month, ...")
@click.option("--param", "param_args", multiple=True, metavar="[METRIC.]KEY=VALUE", help="Metric parameter.")
@click.option("--format", "fmt", type=click.Choice(["table", "json", "csv"]), default="table", show_default=True)
@click.option("--no-save", is_flag=True, help="Do not store the results in metric_results.")
@click.pass_obj
def run(app: App, config_path: str, metric_ids: tuple[str, ...], period: str | None,
        param_args: tuple[str, ...], fmt: str, no_save: bool) -> None:
    """Compute metrics for a period and print them."""
    config = app.config(config_path)
    registry = app.registry
    ids = list(metric_ids) or list(config.metrics if config.metrics is not None else registry.metrics)
    metrics = [registry.metric(i) for i in ids]
    params = {m.id: dict((config.metrics or {}).get(m.id, {})) for m in metrics}
    _apply_params(params, metrics, param_args)
    reporting = config.reporting
    calendar = Calendar(reporting.fiscal_year_start_month, reporting.week_start)
    chosen = calendar.parse(period or reporting.default_period, today=date.today())
    store = app.store(config)
    results = run_metrics(store.engine, metrics, chosen, params, timezone=reporting.timezone,
                          reporting_currency=reporting.currency, persist=not no_save)
    click.echo(_render(results, fmt, {m.id: m for m in metrics}))


def _apply_params(params: dict[str, dict[str, Any]], metrics: list, args: tuple[str, ...]) -> None:
    for arg in args:
        key, sep, value = arg.partition("=")
        if not sep or not key:
            raise ConfigError(f"--param {arg!r}: expected KEY=VALUE or METRIC.KEY=VALUE")
        metric_id, dot, name = key.rpartition(".")
        targets = [m for m in metrics if (m.id == metric_id if dot else any(p.name == name for p in m.params))]
        if not targets:
            raise ConfigError(f"--param {arg!r}: no selected metric has a param {name!r}")
        for metric in targets:
            params[metric.id][name] = value


def _render(results: list[dict], fmt: str, metrics: dict) -> str:
    rows = [_public(r) for r in results]
    if fmt == "json":
        return json.dumps(rows, indent=2, default=_json_default)
    if fmt == "csv":
        out = io.StringIO()
        fields = ["metric", "period", "period_start", "period_end", "segment", "value", "unit", "numerator",
                  "denominator", "note"]
        writer = csv.DictWriter(out, fieldnames=fields, extrasaction="ignore", lineterminator="\n")
        writer.writeheader()
        for row in rows:
            writer.writerow({**row, "segment": json.dumps(row["segment"]) if row["segment"] else ""})
        return out.getvalue().rstrip("\n")
    from rich.console import Console
    from rich.table import Table

    table = Table(show_edge=False)
    for column in ("Metric", "Period", "Value", "Numerator", "Denominator", "Note"):
        table.add_column(column, justify="right" if column in ("Value", "Numerator", "Denominator") else "left")
    for row in rows:
        table.add_row(metrics[row["metric"]].title, row["period"], format_value(row["value"], row["unit"]),
                      _number(row["numerator"]), _number(row["denominator"]), row["note"] or "")
    console = Console(file=io.StringIO(), width=120, force_terminal=False)
    console.print(table)
    return console.file.getvalue().rstrip("\n")


def _public(result: dict) -> dict:
    keys = ("metric", "period", "period_start", "period_end", "segment", "value", "unit", "numerator",
            "denominator", "note", "params", "data_freshness", "run_id")
    return {k: result[k] for k in keys}


def format_value(value: float | None, unit: str) -> str:
    if value is None:
        return "—"
    if unit == "ratio":
        return f"{value:.1%}"
    if unit == "currency":
        return f"{value:,.2f}"
    return f"{value:,.1f}" if unit in ("days", "hours", "points", "score") else f"{value:,.0f}"


def _number(value: float | None) -> str:
    return "" if value is None else f"{value:,.0f}" if float(value).is_integer() else f"{value:,.2f}"


def _json_default(value: Any) -> Any:
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    raise TypeError(type(value).__name__)


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_obj
def plugins(app: App, as_json: bool) -> None:
    """Show the loaded plugins, where they come from, what they provide and what failed."""
    registry = load_registry()
    infos = [p.as_dict() for p in registry.plugins.values()]
    if as_json:
        click.echo(json.dumps(infos, indent=2))
        return
    if not infos:
        click.echo("No plugins loaded (check CRMKPI_LOAD_PLUGINS).")
    for info in infos:
        origin = f"{info['distribution']} {info['version']}" if info["distribution"] else "not installed"
        click.echo(f"{info['name']}  [{origin}]  {info['module']}")
        if info["connectors"]:
            click.echo(f"  connectors: {', '.join(info['connectors'])}")
        if info["metrics"]:
            click.echo(f"  metrics: {', '.join(info['metrics'])}")
        for error in info["errors"]:
            click.echo(f"  ERROR: {error}")


@cli.group()
def metrics() -> None:
    """List and describe the available metrics."""


@metrics.command("list")
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
def metrics_list(app: App, as_json: bool) -> None:
    """List every registered metric."""
    registry = app.registry
    items = sorted(registry.metrics.values(), key=lambda m: m.id)
    if as_json:
        click.echo(json.dumps([{"id": m.id, "title": m.title, "unit": m.unit, "direction": m.direction,
                                "plugin": registry.provider_of("metric", m.id).name} for m in items], indent=2))
        return
    width = max((len(m.id) for m in items), default=0)
    for m in items:
        click.echo(f"{m.id.ljust(width)}  {m.title} ({m.unit}, {m.direction} is better)")


@metrics.command("show")
@click.argument("metric_id")
@click.pass_obj
def metrics_show(app: App, metric_id: str) -> None:
    """Show a metric's definition, formula and params."""
    registry = app.registry
    m = registry.metric(metric_id)
    provider = registry.provider_of("metric", m.id)
    click.echo(f"{m.id}: {m.title}\n\n{m.description}\n\nFormula: {m.formula}\nUnit: {m.unit}; "
               f"{m.direction} is better\nTables: {', '.join(m.tables)}\nPlugin: {provider.describe()}")
    if m.params:
        click.echo("Params:")
        for p in m.params:
            choices = f" (one of: {', '.join(map(str, p.choices))})" if p.choices else ""
            click.echo(f"  {p.name} ({p.type.__name__}, default {p.default!r}): {p.description}{choices}")


@cli.command("sample-data")
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False), help="Folder to write CSVs to.")
@click.option("--deals", default=2000, show_default=True, type=click.IntRange(min=1))
@click.option("--stage-changes-per-deal", type=click.FloatRange(min=1.0), help="Average stage rows per deal.")
@click.option("--seed", default=42, show_default=True, type=int)
def sample_data(out_dir: str, deals: int, stage_changes_per_deal: float | None, seed: int) -> None:
    """Generate the sample B2B SaaS dataset (two years) as one CSV per table."""
    from .sample_data import generate

    counts = generate(Path(out_dir), seed=seed, deals=deals, stage_changes_per_deal=stage_changes_per_deal)
    click.echo(", ".join(f"{table}: {n}" for table, n in counts.items()))


def main() -> None:
    cli(prog_name="crmkpi")


if __name__ == "__main__":
    main()
