"""The ``crmkpi`` command line."""

from __future__ import annotations

import json
import logging
import signal
import sys
import threading
from contextlib import contextmanager
import time
from datetime import date, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import click
from sqlalchemy import select

from . import __version__
from .plugin_api import PLUGIN_API_VERSION
from .config import Config, PluginSettings, load_config, read_config
from .engine import COMPARISONS, SAVE_TIMEOUT, Run, Settings, empty_tables, failure_summary, run_metrics, save_results
from .engine import explain as explain_metric
from .errors import ConfigError, CrmkpiError, PluginError, StoreError, Terminated
from .models import ENTITIES, SyncRun
from .periods import GRAINS, Calendar, Period
from .plugins import Registry, load_registry
from .redact import redact, redact_logs, redacted_traceback
from .report import render, render_explanation
from .segments import Segment
from .store import Store, resolve_url
from .targets import of_config

CONFIG_ENV = "CRMKPI_CONFIG"


class CrmkpiGroup(click.Group):
    """Turns every error into one line on stderr; ``--debug`` shows the traceback instead."""

    def invoke(self, ctx: click.Context) -> Any:
        main_thread = threading.current_thread() is threading.main_thread()  # only it may set handlers
        previous = signal.signal(signal.SIGTERM, _terminate) if main_thread else None
        Terminated.requested = False
        try:
            done = super().invoke(ctx)
            Terminated.check()  # a SIGTERM whose exception a finalizer swallowed: the command still says so
            return done
        except (click.exceptions.Exit, click.exceptions.Abort, click.ClickException):
            raise
        except Terminated:
            click.echo("Terminated.", err=True)
            ctx.exit(128 + signal.SIGTERM)
        except KeyboardInterrupt:
            click.echo("Interrupted.", err=True)
            ctx.exit(130)
        except Exception as exc:
            if Terminated.requested:  # the signal's exception surfaced as another (a driver stopped mid-query)
                click.echo("Terminated.", err=True)
                ctx.exit(128 + signal.SIGTERM)
            # printed here, not re-raised: a traceback can quote a secret an API server echoed back
            if ctx.params.get("debug"):
                click.echo(redacted_traceback().rstrip("\n"), err=True)
            elif isinstance(exc, CrmkpiError):
                click.echo(redact(f"Error: {exc}"), err=True)
            else:
                click.echo(redact(f"Error: unexpected {type(exc).__name__}: {exc} (run with --debug for details)"),
                           err=True)
            ctx.exit(1)
        finally:
            Terminated.requested = False
            if previous is not None:
                signal.signal(signal.SIGTERM, previous)


def _terminate(signum: int, frame: Any) -> None:
    """SIGTERM unwinds like Ctrl-C (a sync records its run, the row worker is stopped); a second one kills."""
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    Terminated.requested = True
    raise Terminated()


class App:
    """Lazily loaded registry, config and store for one command. A command that reads a config reads it
    before it uses the registry: the config's ``plugins:`` section decides which plugins load."""

    def __init__(self, debug: bool) -> None:
        self.debug = debug
        self._registry: Registry | None = None

    @property
    def registry(self) -> Registry:
        return self._registry if self._registry is not None else self._load(None)

    def config(self, path: str, check_sources: bool = False) -> Config:
        raw = read_config(path)
        registry = self._registry if self._registry is not None else self._load(raw.plugins)
        return load_config(path, registry, check_sources=check_sources, raw=raw)

    def _load(self, plugins: PluginSettings | None) -> Registry:
        """Load the plugins and warn about what went wrong, once per command."""
        self._registry = _registry(plugins)
        for warning in self._registry.warnings:
            click.echo(f"Warning: {warning}", err=True)
        for error in self._registry.errors():
            click.echo(f"Warning: {error} (see `crmkpi plugins`)", err=True)
        return self._registry

    def store(self, config: Config) -> Store:
        return Store(resolve_url(config.store, config.base_dir))


def _registry(plugins: PluginSettings | None) -> Registry:
    """The plugins a config's ``plugins:`` section selects (None: the config has none, or there is no config)."""
    return load_registry() if plugins is None else load_registry(allow=plugins.allow, deny=plugins.deny)


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
    redact_logs()
    if not debug:
        _silence_unhandled_logs()
    ctx.obj = App(debug)


def _silence_unhandled_logs() -> None:
    """Without a logging config, Python prints a library's warnings to stderr: psycopg's "error ignored
    terminating <Pipeline ...>: pipeline aborted" beside our one-line "Terminated.", for one. Errors reach
    the user as crmkpi's own lines; ``--debug`` (or a user's logging config) shows the libraries' logs."""
    root = logging.getLogger()
    if not any(isinstance(handler, logging.NullHandler) for handler in root.handlers):
        root.addHandler(logging.NullHandler())


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

# `crmkpi run` computes every metric (`crmkpi metrics list`). To compute only some, or to set
# their params, list them here: only the listed ones are then computed.
# metrics:
#   win_rate:
#     params: {by: amount}
#   sales_cycle_length:
#     params: {stat: median}
"""


@cli.command()
@click.option("--path", "target", default="crmkpi.yaml", show_default=True, type=click.Path(dir_okay=False))
@click.option("--force", is_flag=True, help="Overwrite an existing file.")
def init(target: str, force: bool) -> None:
    """Write a starter config (every metric, files read from data/) and create the data/ folder."""
    path = Path(target)
    if path.exists() and not force:
        raise ConfigError(f"{path} already exists (use --force to overwrite)")
    data = path.parent / "data"
    data.mkdir(parents=True, exist_ok=True)
    path.write_text(STARTER_CONFIG, encoding="utf-8")
    click.echo(f"Wrote {path} and created {data}/. Put one file per table there (deals.csv, accounts.csv, ...; "
               f"README: the columns each table needs), then run: crmkpi sync --config {path}")


@cli.command()
@config_option
@click.pass_obj
def validate(app: App, config_path: str) -> None:
    """Check a config file, and that the sources it names exist; name every problem of its first faulty block."""
    config = app.config(config_path, check_sources=True)
    click.echo(f"{config_path}: OK ({len(config.connectors)} connectors, "
               f"{len(config.metrics) if config.metrics is not None else f'all {len(app.registry.metrics)}'} metrics, "
               f"{len(config.schedules)} schedules)")


@cli.command()
@config_option
@click.argument("connectors", nargs=-1)
@click.option("--full-refresh", is_flag=True, help="Ignore saved cursors and rewrite every row.")
@click.option("--status", "show_status", is_flag=True,
              help="Show each connector's last sync instead (a run whose process is gone is marked failed).")
@click.pass_obj
def sync(app: App, config_path: str, connectors: tuple[str, ...], full_refresh: bool, show_status: bool) -> None:
    """Pull records from the configured connectors (all, or those named) into the store."""
    from .sync import sync_connector, sync_status

    config = app.config(config_path)
    names = list(connectors) or list(config.connectors)
    for name in names:
        if name not in config.connectors:
            raise ConfigError(f"unknown connector {name!r} (configured: {', '.join(config.connectors) or 'none'})")
    if not names:
        raise ConfigError(f"{config_path}: no connectors configured")
    store = app.store(config)
    if show_status:
        click.echo("\n".join(sync_status(store, names)))
        return
    failed: list[tuple[str, CrmkpiError]] = []
    with _progress() as bar:
        for name in names:
            try:
                report = sync_connector(store, app.registry, name, config.connectors[name], config.base_dir,
                                        full_refresh=full_refresh, progress=bar and bar.update,
                                        status=bar and bar.status)
            except CrmkpiError as exc:  # one source being down must not hold back the others
                failed.append((name, exc))
                continue
            for note in report.notes:
                click.echo(f"{name}: note: {note}", err=True)
            for s in report.streams:
                if s.unchanged:
                    click.echo(f"{name}/{s.name}: unchanged since the last sync", err=True)
                    continue
                distinct = f", {s.distinct} distinct ids" if s.duplicates else ""
                skipped = f", {s.skipped} skipped" if s.skipped else ""
                click.echo(f"{name}/{s.name}: {s.read} read{distinct}, {s.written} written{skipped}", err=True)
                for error in s.errors:
                    click.echo(f"  skipped: {error}", err=True)
                for note in s.notes:
                    click.echo(f"  note: {note}", err=True)
            click.echo(f"{name}: {report.written} rows changed in {store.describe()}", err=True)
    if len(failed) == 1 and len(names) == 1:
        raise failed[0][1]
    if failed:
        name, exc = failed[0]
        others = f"; {len(failed) - 1} more failed ({', '.join(n for n, _ in failed[1:])})" if failed[1:] else ""
        raise CrmkpiError(f"{name}: {exc}{others}; the other connectors synced")


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
        return self

    def update(self, stream: str, rows: int) -> None:
        self.bar.update(self._task(stream), advance=rows, description=stream)
        now = time.monotonic()
        if now - self.shown >= 0.1:  # batches are small; redrawing on each would cost more than the rows
            self.shown = now
            self.bar.refresh()

    def status(self, stream: str, message: str) -> None:
        """A stream waiting (e.g. for a Bulk job) says so; rare enough to redraw every time."""
        self.bar.update(self._task(stream), description=f"{stream}: {message}")
        self.bar.refresh()

    def _task(self, stream: str) -> Any:
        if stream not in self.tasks:
            self.tasks[stream] = self.bar.add_task(stream, total=None)
        return self.tasks[stream]

    def __exit__(self, *exc) -> None:
        if hasattr(self, "bar"):
            self.bar.stop()


#: ``crmkpi run``'s exit status when it finished but some metric failed (1: nothing was computed).
EXIT_METRICS_FAILED = 3
EXIT_NOT_SAVED = 4


@cli.command()
@config_option
@click.option("--metric", "-m", "metric_ids", multiple=True, help="Metric id (repeatable); default: the config's.")
@click.option("--period", "-p", help="2024, 2024-Q1, 2024-03, 2024-W05, 2024-01-01..2024-03-31, last-month, ...")
@click.option("--grain", "-g", type=click.Choice(GRAINS), help="Split the period into days, weeks, ... (a series).")
@click.option("--segment", "-s", "dimensions", multiple=True, metavar="DIMENSION",
              help="Split by owner, team, region, pipeline, lead_source, ... or extra.<custom field>; repeat it "
                   "to split by each combination of values that occurs (--segment team --segment region).")
@click.option("--compare", type=click.Choice(["previous", "year_ago", "both"]),
              help="Add the previous period's or the same period last year's value and the change.")
@click.option("--param", "param_args", multiple=True, metavar="[METRIC.]KEY=VALUE", help="Metric parameter.")
@click.option("--format", "fmt", type=click.Choice(["table", "json", "csv"]), default="table", show_default=True)
@click.option("--no-save", is_flag=True, help="Do not store the results in metric_results.")
@click.option("--show-sql", is_flag=True, help="Print each SQL statement behind the values to stderr, by metric.")
@click.option("--save-timeout", type=click.FloatRange(min=0), default=SAVE_TIMEOUT, show_default=True,
              metavar="SECONDS", help="How long to wait to save while another process (a sync) writes to a "
                                      "SQLite store.")
@click.pass_obj
def run(app: App, config_path: str, metric_ids: tuple[str, ...], period: str | None, grain: str | None,
        dimensions: tuple[str, ...], compare: str | None, param_args: tuple[str, ...], fmt: str,
        no_save: bool, show_sql: bool, save_timeout: float) -> None:
    """Compute metrics for a period (or a series of periods) and print them.

    \b
    Exit status:
      0  every result was computed (and saved, unless --no-save)
      1  an error before anything was computed: config, options, an empty store
      3  some metric failed: its rows carry the error (JSON/CSV: "error"), every
         other result was printed and saved
      4  the results were printed but could not be saved (e.g. the store stayed
         locked by a sync longer than --save-timeout)

    Every value of one run reads the same snapshot of the store, even while a sync commits.
    """
    config, metrics, settings, chosen = _asked(app, config_path, metric_ids, period)
    comparisons = COMPARISONS if compare == "both" else (compare,) if compare else ()
    request = Run(metrics, chosen, _params(config, metrics, param_args), grain, dimensions, comparisons,
                  of_config(config, app.registry, settings))
    store = _store_with_records(app, config, config_path)
    with _status() as status:
        def progress(metric, index: int) -> None:
            status(f"Computing {metric.id} ({index + 1}/{len(metrics)})")

        results = run_metrics(store.engine, request, settings, persist=False, progress=progress,
                              stop_on_error=app.debug, show_sql=_print_sql if show_sql else None)
    # Printed before saving: what was computed is never lost to a store that refuses the write.
    click.echo(render(results, fmt, {m.id: m for m in metrics}))
    saved = not no_save and _save(store, results, save_timeout)
    failed = any(r["error"] for r in results)
    if failed:
        click.echo(f"Error: {_failures(results, saved)}", err=True)
    context = click.get_current_context()
    if not (saved or no_save):
        context.exit(EXIT_NOT_SAVED)
    if failed:
        context.exit(EXIT_METRICS_FAILED)


@cli.command()
@config_option
@click.option("--period", "-p", help="The period, as for `crmkpi run` (default: the config's default_period).")
@click.option("--segment", "-s", "dimension", metavar="DIMENSION",
              help="Add a breakdown of each KPI by owner, team, region, ... or extra.<custom field>.")
@click.option("--metric", "-m", "metric_ids", multiple=True, help="Metric id (repeatable); default: the config's.")
@click.option("--param", "param_args", multiple=True, metavar="[METRIC.]KEY=VALUE", help="Metric parameter.")
@click.option("--trend-grain", type=click.Choice(GRAINS), default="month", show_default=True,
              help="The sparklines' and charts' parts: the last 12 of them, ending with the one that holds the "
                   "period's last day.")
@click.option("--out", "-o", "out_path", required=True, type=click.Path(dir_okay=False),
              help="The file to write (replaced whole, never left half-written).")
@click.option("--format", "fmt", type=click.Choice(["html", "pdf"]), default="html", show_default=True,
              help="pdf needs the pdf extra (WeasyPrint).")
@click.pass_obj
def report(app: App, config_path: str, period: str | None, dimension: str | None, metric_ids: tuple[str, ...],
           param_args: tuple[str, ...], trend_grain: str, out_path: str, fmt: str) -> None:
    """Write a KPI report: one self-contained HTML file (or PDF) with a card per KPI and its charts.

    \b
    Each card shows the value for the period (the number `crmkpi run --compare both`
    prints), its change against the previous period and a year ago (green when it
    moved the way the metric wants: down for churn and costs), the target's status and
    progress, and a sparkline of the last 12 --trend-grain parts. Each KPI also gets a
    chart of that series with its target line and, with --segment, a breakdown table.
    Nothing is saved to the store. The file has no script and loads nothing.

    \b
    Exit status: 0 written; 1 an error, nothing written; 3 written, but some metric
    failed (its card shows the error).
    """
    from .present.build import build_report
    from .present.files import check_writable, pdf_renderer, write_atomically
    from .present.page import report_page

    out = Path(out_path)
    render_pdf = pdf_renderer() if fmt == "pdf" else None  # a missing extra is said before any work
    check_writable(out)
    config, metrics, settings, chosen = _asked(app, config_path, metric_ids, period)
    params = _params(config, metrics, param_args)
    store = _store_with_records(app, config, config_path)
    with _status() as status:
        status(f"Computing {len(metrics)} KPIs for {chosen.label}")
        built = build_report(store.engine, metrics, chosen, params, of_config(config, app.registry, settings), settings,
                             dimension=dimension, trend_grain=trend_grain, stop_on_error=app.debug)
    page = report_page(built)
    write_atomically(out, render_pdf(page) if render_pdf else page.encode("utf-8"))
    click.echo(f"Wrote {out} ({len(built.cards)} KPIs, {built.period}"
               + (f", by {dimension}" if dimension else "") + ")")
    if built.failed:
        click.echo(f"Error: {built.failed}; the report shows the error on its card", err=True)
        click.get_current_context().exit(EXIT_METRICS_FAILED)


def _asked(app: App, config_path: str, metric_ids: tuple[str, ...], period: str | None
           ) -> tuple[Config, list, Settings, Period]:
    """What ``run`` and ``report`` are asked: the config, the metrics (the given ids, else the config's, else
    all), the reporting settings and the period (else the config's default)."""
    config = app.config(config_path)
    registry = app.registry
    ids = list(metric_ids) or config.metric_ids(registry.metrics)
    settings = settings_of(config)
    chosen = settings.calendar.parse(period or config.reporting.default_period, today=settings.today)
    return config, [registry.metric(i) for i in ids], settings, chosen


def _print_sql(metric, statement: str, parameters) -> None:
    """``--show-sql``: a statement and its parameters under the metric's name, on stderr."""
    click.echo(f"-- {metric.id}\n{statement.strip()};\n-- parameters: {parameters!r}\n", err=True)


def _save(store: Store, results: list[dict], timeout: float) -> bool:
    """Save the results; on failure say so in one line (they are printed already) and return False."""
    told = False

    def waiting(seconds: float) -> None:
        nonlocal told
        if not told:
            click.echo(f"Waiting to save: another process is writing to the store (a sync?); up to "
                       f"{timeout:.0f} s (--save-timeout).", err=True)
            told = True

    try:
        save_results(store.engine, results, timeout, waiting)
    except StoreError as exc:
        click.echo(f"Error: {exc} (they are printed above)", err=True)
        return False
    return True


def _failures(results: list[dict], saved: bool) -> str:
    """One line: the first failure, which other metrics failed, and how many results were computed."""
    ok = sum(not r["error"] for r in results)
    done = f"{ok} other result{'s' * (ok != 1)} computed{' and saved' if saved else ''}" if ok \
        else "no result computed"
    return f"{failure_summary(results)}; {done}"


def _store_with_records(app: App, config: Config, config_path: str) -> Store:
    """The store, refused while it holds no record: every metric would be a zero or a null that looks real."""
    store = app.store(config)
    with store.engine.connect() as conn:
        if len(empty_tables(conn)) < len(ENTITIES):
            return store
        runs = SyncRun.__table__
        last = conn.execute(select(runs.c.connector, runs.c.status, runs.c.started_at)
                            .order_by(runs.c.started_at.desc(), runs.c.id.desc()).limit(1)).first()
    sync = f"crmkpi sync --config {config_path}"
    if last is None:
        raise StoreError(f"the store {store.describe()} is empty: nothing was synced into it yet (run `{sync}`)")
    raise StoreError(f"the store {store.describe()} holds no records: its last sync ({last.connector}, "
                     f"{last.status}, started {last.started_at:%Y-%m-%d %H:%M} UTC) loaded none "
                     f"(check the connector's source and run `{sync}`)")


@contextmanager
def _status():
    """A transient status line on a terminal (a run over a large store takes minutes); nothing otherwise."""
    if not sys.stderr.isatty():
        yield lambda message: None
        return
    from rich.console import Console

    with Console(stderr=True).status("Computing") as status:
        yield status.update


@cli.command()
@config_option
@click.argument("metric_id")
@click.option("--period", "-p", help="The period, as for `crmkpi run`.")
@click.option("--segment", "-s", "segment_args", multiple=True, metavar="DIMENSION=VALUE",
              help="Explain one segment, e.g. owner=u-17; repeat it for a combination (team=East --segment "
                   "region=EMEA).")
@click.option("--param", "param_args", multiple=True, metavar="KEY=VALUE", help="Metric parameter.")
@click.option("--limit", "-n", default=10, show_default=True, type=click.IntRange(min=0),
              help="How many records to show per input.")
@click.pass_obj
def explain(app: App, config_path: str, metric_id: str, period: str | None, segment_args: tuple[str, ...],
            param_args: tuple[str, ...], limit: int) -> None:
    """Show how a metric's value comes about: formula, inputs and the first records behind each."""
    config = app.config(config_path)
    metric = app.registry.metric(metric_id)
    settings = settings_of(config)
    chosen = settings.calendar.parse(period or config.reporting.default_period, today=settings.today)
    segment = _segment(segment_args)
    params = _params(config, [metric], param_args)[metric.id]
    store = _store_with_records(app, config, config_path)
    explanation = explain_metric(store.engine, metric, chosen, params, segment, settings, limit)
    click.echo(render_explanation(explanation, metric))


def _segment(args: tuple[str, ...]) -> Segment | None:
    """``--segment owner=u-17 --segment region=EMEA`` as one segment (an empty value: rows without one)."""
    values: dict[str, str | None] = {}
    for arg in args:
        dimension, sep, value = arg.partition("=")
        if not sep or not dimension:
            raise ConfigError(f"--segment {arg!r}: expected DIMENSION=VALUE, e.g. owner=u-17")
        if dimension in values:
            raise ConfigError(f"--segment {arg!r}: {dimension} is already given")
        values[dimension] = value or None
    return Segment.of(values) if values else None


def settings_of(config: Config) -> Settings:
    reporting = config.reporting
    return Settings(Calendar(reporting.fiscal_year_start_month, reporting.week_start), reporting.timezone,
                    reporting.currency, _today(reporting.timezone))


def _today(timezone: str) -> date:
    return datetime.now(ZoneInfo(timezone)).date()


def _params(config: Config, metrics: list, args: tuple[str, ...]) -> dict[str, dict[str, Any]]:
    """The config's params of each metric, overridden by ``--param [METRIC.]KEY=VALUE``."""
    params = {m.id: config.params(m.id) for m in metrics}
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
    return params


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.option("--config", "-c", "config_path", envvar=CONFIG_ENV, type=click.Path(dir_okay=False),
              help=f"Apply this config's plugins: section (allow, deny) (or ${CONFIG_ENV}).")
@click.option("--strict", is_flag=True, help="Exit with status 1 after the listing when any plugin has an error "
                                             "or the selection names no installed plugin (for a plugin's CI).")
@click.pass_obj
def plugins(app: App, as_json: bool, config_path: str | None, strict: bool) -> None:
    """Show the loaded plugins, where they come from, what they provide and what failed.

    The listing starts with the plugin API version this crmkpi provides (a plugin declaring a range that
    excludes it is not loaded: docs/compatibility.md)."""
    registry = _registry(read_config(config_path).plugins if config_path else None)
    for warning in registry.warnings:
        click.echo(f"Warning: {warning}", err=True)
    infos = [p.as_dict() for p in registry.plugins.values()]
    for info in infos:  # a metric without a grouped compute is computed once per period part and segment
        info["metrics_cell_by_cell"] = [m for m in info["metrics"] if m in registry.metrics
                                        and registry.metrics[m].grouped is None]
    if as_json:
        click.echo(json.dumps(infos, indent=2))
    else:
        _print_plugins(infos)
    problems = [*registry.warnings, *registry.errors()]
    if strict and problems:
        more = f"; {len(problems) - 1} more problem{'s' * (len(problems) > 2)}" if problems[1:] else ""
        raise PluginError(f"--strict: {problems[0]}{more}")


def _print_plugins(infos: list[dict[str, Any]]) -> None:
    click.echo(f"crmkpi {__version__}, plugin API {PLUGIN_API_VERSION}")
    if not infos:
        click.echo("No plugins loaded (check CRMKPI_LOAD_PLUGINS).")
    for info in infos:
        origin = f"{info['distribution']} {info['version']}" if info["distribution"] else "not installed"
        click.echo(f"{info['name']}  [{origin}]  {info['module']}")
        if info["connectors"]:
            click.echo(f"  connectors: {', '.join(info['connectors'])}")
        if info["metrics"]:
            click.echo(f"  metrics: {', '.join(info['metrics'])}")
        if info["notifiers"]:
            click.echo(f"  notifiers: {', '.join(info['notifiers'])}")
        if info["plugin_api"]["declared"]:
            click.echo(f"  plugin API: {info['plugin_api']['declared']}")
        if info["metrics_cell_by_cell"]:
            click.echo(f"  note: computed cell by cell, the slow path for series and segments (no grouped "
                       f"compute): {', '.join(info['metrics_cell_by_cell'])}")
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
               f"{m.direction} is better\nTables: {', '.join(m.tables)}\n"
               + (f"Needs the columns: {', '.join(m.needs)}\n" if m.needs else "") + f"Plugin: {provider.describe()}")
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


@cli.command("new-plugin")
@click.argument("name")
@click.option("--connector", is_flag=True, help="A connector plugin (default: a metric plugin).")
@click.option("--dir", "parent", default=".", show_default=True, type=click.Path(file_okay=False),
              help="The folder to write the package's folder in.")
@click.pass_obj
def new_plugin(app: App, name: str, connector: bool, parent: str) -> None:
    """Write a plugin package NAME (a metric; --connector: a connector) that installs and passes its tests."""
    from .scaffold import write_plugin

    folder = write_plugin(name, Path(parent), connector=connector, registry=app.registry)
    click.echo(f"Wrote {folder}. In an environment with crmkpi: cd {folder} && pip install -e '.[test]' && pytest")


# The service's command groups register on ``cli`` when imported; they import this module's helpers.
from .service import commands as _service_commands  # noqa: E402,F401
from . import notify_commands as _notify_commands  # noqa: E402,F401
from .alerts import commands as _alert_commands  # noqa: E402,F401


def main() -> None:
    cli(prog_name="crmkpi")


if __name__ == "__main__":
    # `python -m crmkpi.cli` runs this file as __main__, a second copy of the module: the service's
    # commands register on the imported crmkpi.cli, which is the one to run.
    from crmkpi.cli import main as imported_main

    imported_main()
