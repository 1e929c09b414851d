"""``crmkpi serve`` (the scheduler and the HTTP API) and ``crmkpi jobs``: the schedules of a config, running
one now, and the history of runs."""

from __future__ import annotations

import logging
import os
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import click

from ..cli import App, cli, config_option, settings_of
from ..errors import ConfigError, CrmkpiError
from ..redact import register
from ..store import aware_utc
from ..suggest import did_you_mean
from .jobs import Job, history
from .logs import FORMATS, logging_to_stderr, say

# The service stack (FastAPI, the scheduler, croniter) is imported by the commands that use it, not when
# the CLI starts: it was a quarter of every command's start-up, and croniter runs `file` on the
# interpreter as it is imported, a child process of `crmkpi sync` that is not its row worker.


#: Where the API token comes from when the config has none.
TOKEN_ENV = "CRMKPI_API_TOKEN"


@cli.group()
def jobs() -> None:
    """The config's schedules: when they run next, run one now, past runs."""


@cli.command()
@config_option
@click.option("--host", help="Address the HTTP API listens on (default: service.host, 127.0.0.1).")
@click.option("--port", type=click.IntRange(1, 65535), help="Port of the HTTP API (default: service.port, 8700).")
@click.option("--interval", default=15.0, show_default=True, type=click.FloatRange(min=0.1), metavar="SECONDS",
              help="How often to look for due occurrences.")
@click.option("--stop-timeout", default=30.0, show_default=True, type=click.FloatRange(min=0), metavar="SECONDS",
              help="On SIGTERM or Ctrl-C, how long a running job may take to finish before it is interrupted.")
@click.option("--log-format", type=click.Choice(FORMATS),
              help="Log lines on stderr as text or JSON lines (default: service.log_format, text).")
@click.option("--lease", default=60.0, show_default=True, type=click.FloatRange(min=1), metavar="SECONDS",
              help="How long a run stays claimed without a renewal (renewed every third of it): how soon another "
                   "replica finds a killed one's run failed.")
@click.pass_obj
def serve(app: App, config_path: str, host: str | None, port: int | None, interval: float,
          stop_timeout: float, log_format: str | None, lease: float) -> None:
    """Run the config's schedules and the HTTP API until stopped.

    Each occurrence runs once, even with several replicas on one PostgreSQL store. The API serves
    the dashboard at /, /health, /metrics (Prometheus) and /api/v1 (the bearer token of service.api_token or
    CRMKPI_API_TOKEN). Logs one line per event on stderr (--log-format json: JSON lines). SIGTERM or
    Ctrl-C stops claiming new runs, lets the running job finish (or interrupts it after
    --stop-timeout: its sync rolls back, the run is recorded as failed) and exits 0. A second signal
    interrupts at once.
    """
    config = app.config(config_path)
    host, port = host or config.service.host, port or config.service.port
    token = (config.service.api_token.get_secret_value() if config.service.api_token else
             os.environ.get(TOKEN_ENV)) or None
    register(token)
    from .http import LOOPBACK

    if not token and host not in LOOPBACK:
        raise ConfigError(f"refusing to serve the API on {host} without a token: set service.api_token (or "
                          f"{TOKEN_ENV}), or listen on 127.0.0.1")
    with logging_to_stderr(log_format or config.service.log_format):
        _serve(config, config_path, replace(job(app, config), lease=timedelta(seconds=lease)), host, port, token,
               interval, stop_timeout)


def _serve(config, config_path: str, scheduled: Job, host: str, port: int, token: str | None, interval: float,
           stop_timeout: float) -> None:
    from .api import create_app
    from .http import listening
    from .lifecycle import Heartbeat, Stopped, graceful_stop, serve_until
    from .schedule import Timetable
    from .scheduler import Scheduler

    scheduler = Scheduler(scheduled, say=say)
    heartbeat = Heartbeat(interval)
    now = datetime.now(UTC)
    for name, schedule in config.schedules.items():
        timetable = Timetable.of(schedule, config.reporting)
        say(f"{name}: {schedule.cron} ({timetable.timezone}), next {_when(timetable.next(now).at, timetable.timezone)}",
            schedule=name, next=timetable.next(now).at)
    if not config.schedules:
        say(f"no schedules in {config_path}: serving the API only")
    with listening(create_app(scheduler.job, scheduler, heartbeat, token), host, port) as address, \
            graceful_stop(stop_timeout) as stopping:
        say(f"Dashboard and API on http://{address}/ (/health, /metrics, /api/v1"
            f"{'; the API token required' if token else ''})")
        try:
            serve_until(scheduler, stopping, heartbeat, say)
        except Stopped:
            say("the running job was interrupted", logging.WARNING)
    say("stopped")


@jobs.command("list")
@config_option
@click.pass_obj
def jobs_list(app: App, config_path: str) -> None:
    """Each schedule: what it does, its next occurrence and its last run."""
    config = app.config(config_path)
    if not config.schedules:
        click.echo(f"{config_path}: no schedules")
        return
    from .schedule import Timetable

    store = app.store(config)
    now = datetime.now(UTC)
    for name, schedule in config.schedules.items():
        timetable = Timetable.of(schedule, config.reporting)
        zone = timetable.timezone
        steps = [f"sync {', '.join(schedule.sync)}"] if schedule.sync else []
        steps += [f"run {', '.join(schedule.metrics)} for {schedule.period}"] if schedule.metrics else []
        steps += [f"evaluate alerts {', '.join(schedule.alerts)}"] if schedule.alerts else []
        steps += [_report_step(schedule)] if schedule.report else []
        [last] = history(store, name, limit=1) or [None]
        ran = (f"last run {_when(last.started_at, zone)}: {last.status}" + (f" ({last.error})" if last.error else "")
               if last else "never run")
        click.echo(f"{name}  {schedule.cron} ({zone}): {'; '.join(steps)}\n"
                   f"  next {_when(timetable.next(now).at, zone)}; {ran}")


@jobs.command("run")
@config_option
@click.argument("name")
@click.pass_obj
def jobs_run(app: App, config_path: str, name: str) -> None:
    """Run schedule NAME now, recorded in the job history like a scheduled run."""
    config = app.config(config_path)
    if name not in config.schedules:
        raise ConfigError(f"unknown schedule {name!r}{did_you_mean(name, config.schedules)} "
                          f"(configured: {', '.join(config.schedules) or 'none'})")
    outcome = job(app, config).run_now(name, say=lambda line: click.echo(f"{name}: {line}", err=True))
    if outcome.error:
        raise CrmkpiError(f"job {name} (run {outcome.run_id}) failed: {outcome.error}")
    click.echo(f"{name}: run {outcome.run_id} succeeded")


@jobs.command("history")
@config_option
@click.argument("name", required=False)
@click.option("--limit", "-n", default=20, show_default=True, type=click.IntRange(min=1))
@click.pass_obj
def jobs_history(app: App, config_path: str, name: str | None, limit: int) -> None:
    """The latest job runs, newest first (of schedule NAME, or of all)."""
    config = app.config(config_path)
    runs = history(app.store(config), name, limit)
    if not runs:
        click.echo(f"no job runs{f' of {name}' if name else ''} yet")
        return
    zone = config.reporting.timezone
    for run in runs:
        took = f" in {(run.finished_at - run.started_at).total_seconds():.1f} s" if run.finished_at else ""
        alerts = (f"  (alerts: {run.alerts['firing']} firing, {run.alerts['fired']} new, {run.alerts['resolved']} "
                  f"resolved, {run.alerts['not_evaluated']} not evaluated, {len(run.alerts['failures'])} deliveries "
                  "failed)") if run.alerts else ""
        report = (f"  (report: {run.report['path']}"
                  + "".join(f"; {channel} {outcome}" for channel, outcome in run.report["deliveries"].items())
                  + ")") if run.report else ""
        click.echo(f"{run.id}  {run.job}  {run.occurrence or 'by hand'}  started {_when(run.started_at, zone)}  "
                   f"{run.status}{took}" + (f": {run.error}" if run.error else "") + alerts + report)


def _report_step(schedule) -> str:
    """``report previous-week to reports/weekly-{period}.html, sent to mail, slack``"""
    step = schedule.report
    return (f"report {step.period or schedule.period} to {step.out}"
            + (f" ({step.format})" if step.format != "html" else "")
            + (f", sent to {', '.join(step.channels)}" if step.channels else ""))


def job(app: App, config) -> Job:
    settings = settings_of(config)
    return Job(app.store(config), app.registry, config, settings)


def _when(moment: datetime, zone: str) -> str:
    """``2026-12-06 01:30 EST``: a moment (from the store, or an occurrence's) on the clocks of ``zone``."""
    local = aware_utc(moment).astimezone(ZoneInfo(zone))
    return f"{local:%Y-%m-%d %H:%M} {local.tzname() or zone}"
