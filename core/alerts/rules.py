"""The config's ``alerts:`` section: one rule per name, each with exactly one condition."""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator, model_validator

from ..errors import ConfigError, MetricError
from ..periods import GRAINS
from ..suggest import did_you_mean

_DURATION = re.compile(r"(\d+)\s*([mhdw])")
_SECONDS = {"m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
CONDITIONS = ("threshold", "change", "target", "anomaly")


def _share(value: Any) -> Any:
    """``20%`` is 0.2; a number is already a share (0.2), as targets write ratios."""
    if isinstance(value, str) and value.strip().endswith("%"):
        try:
            return float(value.strip()[:-1]) / 100
        except ValueError:
            raise ValueError(f"{value!r} is not a percentage, e.g. 20%") from None
    return value


def duration_seconds(text: str) -> int:
    """``1d``, ``12h``, ``30m``, ``2w`` (or several: ``1d12h``) in seconds."""
    spec = text.strip().lower().replace(" ", "")
    parts = _DURATION.findall(spec)
    if not parts or "".join(n + u for n, u in parts) != spec:
        raise ValueError(f"{text!r} is not a duration: write e.g. 30m, 12h, 1d or 2w")
    seconds = sum(int(n) * _SECONDS[u] for n, u in parts)
    if seconds == 0:
        raise ValueError(f"{text!r} is zero: leave repeat_every out to never repeat")
    return seconds


class Threshold(BaseModel):
    """Fires while the value is above ``above`` or below ``below`` (strictly); with both, outside the range."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    above: float | None = None
    below: float | None = None

    @model_validator(mode="after")
    def _one_bound(self) -> Threshold:
        if self.above is None and self.below is None:
            raise ValueError("give above and/or below, e.g. {below: 0.3}")
        if self.above is not None and self.below is not None and self.below > self.above:
            raise ValueError("below is over above: no value could be outside both")
        return self


class Change(BaseModel):
    """Fires when the value is worse than the comparison period's by ``worse_by`` or more (relative)."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    against: Literal["previous", "year_ago"]
    worse_by: Annotated[float, BeforeValidator(_share)] = Field(gt=0, description="20% or 0.2: a relative change")


class Anomaly(BaseModel):
    """Fires when the latest value is outside median ± mads × 1.4826 × MAD of the ``periods`` before it."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    periods: int = Field(8, description="trailing periods the band is drawn from (6 or more)")
    mads: float = Field(3.0, gt=0, description="the band's half-width in scaled MADs")
    min_spread: float = Field(0.0, ge=0, description="the least half-width, in the metric's unit (a flat "
                                                     "history's MAD is 0)")

    @field_validator("periods")
    @classmethod
    def _enough(cls, value: int) -> int:
        if value < 6:
            raise ValueError(f"{value} is too few for a robust band: 6 or more")
        return value


class AlertRule(BaseModel):
    """One rule: a metric at a grain, optionally per segment, with exactly one condition."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    metric: str = Field(description="metric id")
    params: dict[str, Any] = Field(default_factory=dict, description="over the config's metrics: params")
    grain: Literal[GRAINS] = Field("month", description="the rule looks at the latest complete period of this grain "
                                                        "in the reporting time zone")
    segment: str | dict[str, Any] | None = Field(None, description="a dimension (each of its values), or "
                                                                   "{dimension: value} (that one)")
    threshold: Threshold | None = None
    change: Change | None = None
    target: Literal["status_change"] | None = Field(None, description="fires while the target is at risk, off "
                                                                      "track or missed")
    anomaly: Anomaly | None = None
    min_volume: float | None = Field(None, ge=0, description="a cell whose denominator is below it is not evaluated")
    channels: list[str] = Field(default_factory=list, description="where its messages go (channels:)")
    repeat_every: str | None = Field(None, description="while firing, notify again after this long (1d, 12h)")

    @model_validator(mode="after")
    def _one_condition(self) -> AlertRule:
        given = [name for name in CONDITIONS if getattr(self, name) is not None]
        if len(given) != 1:
            found = f"got {' and '.join(given)}" if given else "got none"
            raise ValueError(f"give exactly one condition of {', '.join(CONDITIONS)} ({found})")
        if isinstance(self.segment, dict) and not self.segment:
            raise ValueError("segment: give a dimension (every value) or {dimension: value}")
        if self.repeat_every is not None:
            duration_seconds(self.repeat_every)
        return self

    @property
    def condition(self) -> str:
        return next(name for name in CONDITIONS if getattr(self, name) is not None)

    @property
    def dimensions(self) -> tuple[str, ...]:
        if self.segment is None:
            return ()
        return (self.segment,) if isinstance(self.segment, str) else tuple(self.segment)

    @property
    def repeat_seconds(self) -> int | None:
        return None if self.repeat_every is None else duration_seconds(self.repeat_every)


def check_rules(rules: dict[str, AlertRule], registry: Any, metric_params: dict[str, dict[str, Any]] | None,
                channels: Any) -> None:
    """What needs the loaded plugins and the other sections: a known metric, its params, known channels."""
    for name, rule in rules.items():
        if rule.metric not in registry.metrics:
            raise ConfigError(f"alerts.{name}.metric: unknown metric {rule.metric!r}"
                              f"{did_you_mean(rule.metric, registry.metrics)} (see `crmkpi metrics list`)")
        try:
            registry.metrics[rule.metric].resolve_params({**(metric_params or {}).get(rule.metric, {}),
                                                          **rule.params})
        except MetricError as exc:
            raise ConfigError(f"alerts.{name}.params: {str(exc).removeprefix(rule.metric + ': ')}") from None
        check_channels(f"alerts.{name}.channels", rule.channels, channels)


def check_channels(where: str, names: list[str], channels: Any) -> None:
    for channel in names:
        if channel not in channels:
            raise ConfigError(f"{where}: unknown channel {channel!r}{did_you_mean(channel, channels)} "
                              f"(configured: {', '.join(channels) or 'none'})")
