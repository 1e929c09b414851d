"""``crmkpi alerts``: evaluate the config's rules now (``check``), and list them with their states (``list``)."""

from __future__ import annotations

from dataclasses import replace
from datetime import date

import click

from ..cli import App, cli, config_option, settings_of
from ..errors import ConfigError
from ..store import aware_utc
from ..suggest import did_you_mean
from ..targets import of_config


@cli.group()
def alerts() -> None:
    """The config's alert rules: evaluate them now, list them with their states."""


@alerts.command("check")
@config_option
@click.argument("rules", nargs=-1)
@click.option("--dry-run", is_flag=True, help="Judge and print only: no state is changed, nothing is sent.")
@click.option("--as-of", "as_of", type=click.DateTime(["%Y-%m-%d"]), metavar="YYYY-MM-DD",
              help="Evaluate as on this reporting day (default: today in the reporting time zone).")
@click.pass_obj
def alerts_check(app: App, config_path: str, rules: tuple[str, ...], dry_run: bool, as_of) -> None:
    """Evaluate the alert rules (RULES, or all) now: each rule × segment's verdict, state and reason.

    Without --dry-run, states move and messages go to the rules' channels, as the scheduler does it."""
    from .evaluate import evaluator

    config = app.config(config_path)
    _known(config, rules)
    settings = settings_of(config)
    today: date = as_of.date() if as_of else settings.today
    checked = evaluator(app.store(config), app.registry, config, settings,  # targets as of the day evaluated
                        of_config(config, app.registry, replace(settings, today=today))
                        ).evaluate(today, list(rules) or None, dry_run)
    for cell in checked.cells:
        sent = f"  [{cell.notice}]" if cell.notice else ""
        verdict = cell.verdict.state.replace("_", " ")
        click.echo(f"{cell.rule}  {cell.segment or '-'}  {cell.period}  {verdict}{sent}: {cell.verdict.reason}")
    click.echo(("dry run: nothing saved or sent; " if dry_run else "") + checked.line(), err=True)
    for failure in checked.failures:
        click.echo(f"delivery failed: {failure}", err=True)


@alerts.command("list")
@config_option
@click.pass_obj
def alerts_list(app: App, config_path: str) -> None:
    """Each rule (what it watches) and the state of each of its segments, as last evaluated."""
    from . import state

    config = app.config(config_path)
    if not config.alerts:
        click.echo(f"{config_path}: no alert rules")
        return
    states = state.read(app.store(config), list(config.alerts))
    for name, rule in config.alerts.items():
        segment = f" per {rule.segment}" if isinstance(rule.segment, str) else \
            f" for {','.join(f'{d}={v}' for d, v in rule.segment.items())}" if rule.segment else ""
        channels = f" → {', '.join(rule.channels)}" if rule.channels else " (no channels)"
        click.echo(f"{name}: {rule.metric} by {rule.grain}{segment}, {rule.condition}{channels}")
        cells = sorted((s for (r, _), s in states.items() if r == name), key=lambda s: s.segment)
        if not cells:
            click.echo("  never evaluated")
        for cell in cells:
            since = f" since {aware_utc(cell.since):%Y-%m-%d %H:%M} UTC" if cell.since else ""
            click.echo(f"  {cell.segment or '-'}  {cell.state}{since} ({cell.last_period}): {cell.last_reason}")


def _known(config, rules: tuple[str, ...]) -> None:
    for rule in rules:
        if rule not in config.alerts:
            raise ConfigError(f"unknown alert rule {rule!r}{did_you_mean(rule, config.alerts)} "
                              f"(configured: {', '.join(config.alerts) or 'none'})")
