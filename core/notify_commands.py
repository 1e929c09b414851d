"""``crmkpi notify``: trying a configured channel, and what each channel's deliveries did."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import click

from .cli import App, cli, config_option
from .deliveries import DeliveryKey, Retry, channel_health, deliver
from .errors import ConfigError, CrmkpiError
from .notify import Message
from .suggest import did_you_mean


@cli.group()
def notify() -> None:
    """The config's notification channels: send a test message, see how each is doing."""


@notify.command("test")
@config_option
@click.argument("channel")
@click.option("--attempts", default=1, show_default=True, type=click.IntRange(1, 10),
              help="Sends tried before giving up (the scheduler's deliveries try 3).")
@click.pass_obj
def notify_test(app: App, config_path: str, channel: str, attempts: int) -> None:
    """Send a test message to CHANNEL, recorded as a delivery of its own (rule `test`)."""
    config = app.config(config_path)
    if channel not in config.channels:
        raise ConfigError(f"unknown channel {channel!r}{did_you_mean(channel, config.channels)} "
                          f"(configured: {', '.join(config.channels) or 'none'})")
    now = datetime.now(UTC)
    message = Message(title=f"crmkpi test message to {channel}",
                      text=f"This is a test of the channel {channel} of {config.path.name}, sent by "
                           "`crmkpi notify test`. If you can read it, the channel works.",
                      rule="test", fields={"sent at": f"{now:%Y-%m-%d %H:%M:%S} UTC"})
    key = DeliveryKey("test", f"{now:%Y-%m-%dT%H:%M:%S}-{uuid.uuid4().hex[:8]}")
    delivery = deliver(app.store(config), config.channels[channel], key, message, retry=Retry(attempts=attempts))
    if delivery.status != "sent":
        raise CrmkpiError(f"{channel}: test message not sent (delivery {delivery.id}): {delivery.error}")
    click.echo(f"{channel}: test message sent (delivery {delivery.id})")


@notify.command("status")
@config_option
@click.pass_obj
def notify_status(app: App, config_path: str) -> None:
    """Each channel: its latest delivery's outcome and its last successful send (as /health shows them)."""
    config = app.config(config_path)
    if not config.channels:
        click.echo(f"{config_path}: no channels")
        return
    for name, state in channel_health(app.store(config), list(config.channels)).items():
        sent = f"last sent {state['last_sent_at']:%Y-%m-%d %H:%M} UTC" if state["last_sent_at"] else "never sent"
        failing = f"; FAILING since {state['last_failed_at']:%Y-%m-%d %H:%M} UTC: {state['last_error']}"
        click.echo(f"{name}  ({config.channels[name].type.name}) {sent}" + ("" if state["ok"] else failing))
