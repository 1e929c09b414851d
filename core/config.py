"""Loading and validating the YAML config; ``${VAR}`` and ``${VAR:-default}`` read the environment."""

from __future__ import annotations

import os
import re
import types
import typing
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Annotated, Any, Iterable, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml
from pydantic import (AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, SecretStr, ValidationError,
                      field_validator, model_validator)
from sqlalchemy.engine import make_url

from .deliveries import Channel
from .alerts.rules import AlertRule, check_channels, check_rules
from .errors import ConfigError, MetricError
from .periods import GRAINS, Calendar
from .plugins import Registry, installed_entry_points, is_builtin
from .redact import register, register_settings
from .suggest import close_matches, did_you_mean

_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def _period_text(value: Any) -> Any:
    """YAML reads ``2025`` as a number and ``2025-03-14`` as a date: both name a period."""
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return value.isoformat() if isinstance(value, date) else value


#: A period as the config writes it (``2025``, ``2025-Q4``, ``last-month``, ...).
PeriodText = Annotated[str, BeforeValidator(_period_text)]


class Reporting(BaseModel):
    model_config = ConfigDict(extra="forbid")

    currency: str = Field("USD", description="reporting currency amounts are converted to")
    timezone: str = Field("UTC", description="zone in which periods start and end")
    fiscal_year_start_month: int = Field(1, ge=1, le=12, description="1 = calendar year")
    week_start: Literal["monday", "sunday"] = "monday"
    default_period: PeriodText = Field("last-month", description="period used when --period is not given")

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        return check_zone(value)


class MetricSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    params: dict[str, Any] = Field(default_factory=dict)


class TargetSettings(BaseModel):
    """A SMART goal: reach ``value`` on ``metric`` over ``period`` (or by ``deadline``)."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    metric: str = Field(description="metric id")
    value: float = Field(description="the goal, in the metric's unit (ratios as fractions: 0.3)")
    period: PeriodText | None = Field(None, description="the period the goal covers: 2025, 2025-Q4, this-year, ...")
    deadline: date | None = Field(None, description="instead of period: the goal's last day")
    start: date | None = Field(None, description="with deadline: the first day (default: its fiscal year's)")
    segment: dict[str, Any] | None = Field(None, description="e.g. {owner: u-17}: the goal of one segment value "
                                           "(several dimensions: of one combination)")
    direction: Literal["higher", "lower"] | None = Field(None, description="default: the metric's")
    tolerance: float = Field(0.1, ge=0, description="how far short (as a share of the goal) is still at risk")

    @model_validator(mode="after")
    def _one_window(self) -> TargetSettings:
        if (self.period is None) == (self.deadline is None):
            raise ValueError("give either period or deadline")
        if self.start and not self.deadline:
            raise ValueError("start goes with deadline")
        if self.start and self.start > self.deadline:
            raise ValueError("start is after deadline")
        if self.segment is not None and not self.segment:
            raise ValueError("segment: give a dimension and its value, e.g. {owner: u-17} (or several: "
                             "{team: East, region: EMEA} judges the results of --segment team --segment region)")
        return self


#: What ``{...}`` a report's ``out`` may hold.
OUT_PLACEHOLDERS = ("period",)


class ScheduledReport(BaseModel):
    """A schedule's report step: write the report of a period to a file, and send it to channels."""

    model_config = ConfigDict(extra="forbid")

    out: str = Field(description="the file written, relative to the config's folder; {period} is the period's "
                                 "label, made fit for a file name (reports/weekly-{period}.html)")
    period: PeriodText | None = Field(None, description="the period reported, relative to the run's day; default: "
                                                        "the schedule's period")
    segment: str | None = Field(None, description="add a breakdown of each KPI by this dimension, as --segment")
    trend_grain: Literal[GRAINS] = Field("month", description="the sparklines' and charts' parts")
    format: Literal["html", "pdf"] = Field("html", description="pdf needs the pdf extra (crmkpi validate checks)")
    metrics: list[str] | None = Field(None, description="default: the schedule's metrics, else the config's")
    channels: list[str] = Field(default_factory=list,
                                description="channels the report is sent to, once per occurrence")

    @field_validator("out")
    @classmethod
    def _known_placeholders(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("give the file to write, e.g. reports/weekly-{period}.html")
        if "{" in str(Path(value).parent):  # a folder is not made for each period: it must exist
            raise ValueError("a placeholder goes in the file's name, not in its folder")
        known = [f"{{{name}}}" for name in OUT_PLACEHOLDERS]
        for placeholder in re.findall(r"\{[^{}]*\}", value):
            if placeholder not in known:
                raise ValueError(f"unknown placeholder {placeholder}{did_you_mean(placeholder, known)} "
                                 f"(known: {', '.join(known)})")
        return value

    def path(self, base_dir: Path, period: str) -> Path:
        """The file to write for ``period`` (a label: ``2025-W07``, ``2025-02-01..2025-02-14``), from the
        config's folder ``base_dir``. The label keeps letters, digits, ``.``, ``_`` and ``-``; anything else
        (a space, a slash) becomes ``-``, so that a period never names another folder."""
        safe = re.sub(r"[^A-Za-z0-9._-]+", "-", period)
        return base_dir / Path(self.out.replace("{period}", safe)).expanduser()


class Schedule(BaseModel):
    """A job the scheduler runs at each occurrence of ``cron``: sync connectors, compute metrics, evaluate alerts,
    write a report."""

    model_config = ConfigDict(extra="forbid")

    cron: str = Field(description="five-field cron expression (minute hour day-of-month month day-of-week), "
                                  "read as wall-clock time in the schedule's timezone")
    timezone: str | None = Field(None, description="IANA zone of the cron expression; default: reporting.timezone")
    sync: list[str] = Field(default_factory=list, description="connectors to sync first")
    metrics: list[str] = Field(default_factory=list, description="metrics to compute after")
    period: PeriodText = Field("last-month", description="the period computed, relative to the occurrence's day "
                                                         "(last-month, previous-quarter, last-7-days, ...)")
    grain: Literal[GRAINS] | None = Field(None, description="split the period into a series (day ... year)")
    segments: list[str] = Field(default_factory=list, description="dimensions to split by, as --segment")
    compare: Literal["previous", "year_ago", "both"] | None = None
    params: dict[str, dict[str, Any]] = Field(default_factory=dict,
                                              description="per metric: params over the config's metrics: params")
    misfire_grace: int = Field(3600, ge=0, description="seconds an occurrence may start late and still run")
    catchup: Literal["latest", "all", "none"] = Field(
        "latest", description="after downtime, of the occurrences missed: run the latest, all of them (up to "
                              "max_catchup, oldest first), or none; the others are recorded as skipped")
    max_catchup: int = Field(10, ge=1, description="with catchup: all, how many missed occurrences run at most")
    alerts: list[str] = Field(default_factory=list, description="alert rules to evaluate after its metrics "
                                                                "(docs/alerts.md)")
    on_failure: list[str] = Field(default_factory=list, description="channels told when a run of it fails")
    report: ScheduledReport | None = Field(None, description="write a report after the metrics and alerts, and "
                                                             "send it (docs/reports.md)")

    @field_validator("cron")
    @classmethod
    def _five_fields(cls, value: str) -> str:
        from croniter import croniter

        if len(value.split()) != 5 or not croniter.is_valid(value):
            raise ValueError(f"{value!r} is not a five-field cron expression (minute hour day-of-month month "
                             "day-of-week), e.g. '0 7 * * 1' for Mondays at 07:00")
        try:
            croniter(value, datetime(2000, 1, 1)).get_next(datetime)
        except ValueError:  # croniter's "failed to find next date" (e.g. 30 February)
            raise ValueError(f"{value!r} never happens") from None
        return value

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str | None) -> str | None:
        return None if value is None else check_zone(value)


class ServiceSettings(BaseModel):
    """How ``crmkpi serve`` listens."""

    model_config = ConfigDict(extra="forbid")

    host: str = Field("127.0.0.1", description="address the HTTP API listens on; another than loopback needs "
                                                "api_token")
    port: int = Field(8700, ge=1, le=65535)
    api_token: SecretStr | None = Field(None, description="bearer token /api/v1 requires (else CRMKPI_API_TOKEN); "
                                                          "write ${VAR}, never the token itself")
    log_format: Literal["text", "json"] = Field("text", description="what serve logs on stderr: text lines, or JSON "
                                                                   "lines for a log collector (--log-format)")


def _installed_plugin(name: str) -> str:
    names = [ep.name for ep in installed_entry_points()]
    if name not in names:
        raise ValueError(f"unknown plugin {name!r}{did_you_mean(name, names)} (installed: {', '.join(names)})")
    return name


def _third_party_plugin(name: str) -> str:
    """An installed plugin that is not built in (only those can be left out)."""
    installed = {ep.name: ep for ep in installed_entry_points()}
    if name not in installed:
        return _installed_plugin(name)
    if is_builtin(installed[name]):
        raise ValueError(f"{name!r} is built into crmkpi, and the built-in plugins always load")
    return name


class PluginSettings(BaseModel):
    """Which installed third-party plugins load, by entry-point name (as `crmkpi plugins` lists them). The
    built-in plugins always load: the config's connectors and metrics are theirs. ``CRMKPI_LOAD_PLUGINS``
    selects first; these lists narrow its selection."""

    model_config = ConfigDict(extra="forbid")

    allow: list[Annotated[str, AfterValidator(_installed_plugin)]] | None = Field(
        None, description="load only these third-party plugins (default: every installed one)")
    deny: list[Annotated[str, AfterValidator(_third_party_plugin)]] = Field(
        default_factory=list, description="never load (nor import) these third-party plugins")

    @model_validator(mode="after")
    def _not_both(self) -> PluginSettings:
        both = [name for name in self.deny if name in (self.allow or ())]
        if both:
            raise ValueError(f"both allowed and denied: {', '.join(map(repr, both))}")
        return self


class RawConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    store: str | None = Field(None, description="SQLAlchemy URL; default: crmkpi.db next to the config")
    reporting: Reporting = Field(default_factory=Reporting)
    connectors: dict[str, dict[str, Any]] = Field(default_factory=dict)
    metrics: dict[str, MetricSettings | None] | None = Field(
        None, description="metrics to run with their params; default: every registered metric"
    )
    schedules: dict[str, Schedule] = Field(default_factory=dict)
    targets: list[TargetSettings] = Field(default_factory=list, description="goals the results are judged against")
    alerts: dict[str, AlertRule] = Field(default_factory=dict, description="alert rules by name (docs/alerts.md)")
    service: ServiceSettings = Field(default_factory=ServiceSettings)
    plugins: PluginSettings | None = Field(None, description="which third-party plugins load (default: every "
                                                               "installed one)")
    channels: dict[str, dict[str, Any]] = Field(default_factory=dict,
                                                description="where notifications go (docs/notifications.md)")


@dataclass(frozen=True)
class SourceCheck:
    """The pydantic validation context of ``crmkpi validate``: with it, a connector's settings may check
    that its sources exist (a folder, a file), relative paths being taken from ``base_dir``."""

    base_dir: Path


@dataclass
class ConnectorConfig:
    type: str
    settings: BaseModel


@dataclass
class Config:
    path: Path
    store: str | None
    reporting: Reporting
    connectors: dict[str, ConnectorConfig] = field(default_factory=dict)
    metrics: dict[str, dict[str, Any]] | None = None
    schedules: dict[str, Schedule] = field(default_factory=dict)
    targets: list[TargetSettings] = field(default_factory=list)
    alerts: dict[str, AlertRule] = field(default_factory=dict)
    service: ServiceSettings = field(default_factory=ServiceSettings)
    channels: dict[str, Channel] = field(default_factory=dict)

    @property
    def base_dir(self) -> Path:
        return self.path.parent

    def metric_ids(self, registered: Iterable[str]) -> list[str]:
        """The metrics a command computes when none are named: the config's ``metrics:``, else every one
        ``registered``."""
        return list(self.metrics if self.metrics is not None else registered)

    def params(self, metric_id: str) -> dict[str, Any]:
        """A metric's params from the config's ``metrics:`` section (none: its defaults)."""
        return dict((self.metrics or {}).get(metric_id, {}))


def read_config(path: str | Path) -> RawConfig:
    """Read, interpolate and validate a config file as far as it goes without plugins (its ``plugins:``
    section says which load); :func:`load_config` checks the rest against them. Every problem is a
    one-line ConfigError."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {path}") from None
    except OSError as exc:
        raise ConfigError(f"cannot read config {path}: {exc.strerror}") from None
    try:
        data = yaml.load(text, Loader=_UniqueKeyLoader) or {}  # noqa: S506 - a SafeLoader
    except RecursionError:
        raise ConfigError(f"{path}: invalid YAML: nested too deep") from None
    except yaml.reader.ReaderError as exc:  # a character YAML does not allow, e.g. a control character
        line = text.count("\n", 0, exc.position) + 1
        raise ConfigError(f"{path}: line {line} invalid YAML: character {exc.character!r}: {exc.reason}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or " ".join(str(exc).split())  # one line, whatever the error
        raise ConfigError(f"{path}:{where} invalid YAML: {problem}") from None
    except ValueError as exc:  # YAML that parses as an impossible date, e.g. 2024-02-30
        raise ConfigError(f"{path}: invalid value: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level")
    data = _interpolate(data, ())
    raw = _validate(RawConfig, data, ())
    if raw.store:
        check_store_url(raw.store)
        register(make_url(raw.store).password)
    register_settings(raw.service)
    _check_period("reporting.default_period", raw.reporting.default_period)
    for name, schedule in raw.schedules.items():
        _check_period(f"schedules.{name}.period", schedule.period)
        if schedule.report and schedule.report.period:
            _check_period(f"schedules.{name}.report.period", schedule.report.period)
    return raw


def load_config(path: str | Path, registry: Registry, *, check_sources: bool = False,
                raw: RawConfig | None = None) -> Config:
    """Read, interpolate and validate a config file; every problem is a one-line ConfigError.

    With ``check_sources`` (``crmkpi validate``), connectors also check that their sources exist. ``raw``: the
    file as :func:`read_config` read it already (the CLI reads it first: its ``plugins:`` section decides
    which plugins make the ``registry``)."""
    path = Path(path)
    raw = read_config(path) if raw is None else raw
    connectors = {}
    for name, block in raw.connectors.items():
        if not isinstance(block, dict) or "type" not in block:
            raise ConfigError(f"connectors.{name}.type: field required")
        if not isinstance(block["type"], str):
            raise ConfigError(f"connectors.{name}.type: expected the name of a connector type, "
                              f"got {type(block['type']).__name__}")
        ctype = registry.connectors.get(block["type"])
        if ctype is None:
            known = ", ".join(sorted(registry.connectors)) or "none loaded"
            raise ConfigError(f"connectors.{name}.type: unknown connector type {block['type']!r}"
                              f"{did_you_mean(str(block['type']), registry.connectors)} (known: {known})")
        settings = {k: v for k, v in block.items() if k != "type"}
        context = SourceCheck(path.resolve().parent) if check_sources else None
        connectors[name] = ConnectorConfig(block["type"], _validate(ctype.settings, settings, ("connectors", name),
                                                                    context))
        register_settings(connectors[name].settings)
    metrics = None
    if raw.metrics is not None:
        metrics = {}
        for metric_id, settings in raw.metrics.items():
            if metric_id not in registry.metrics:
                raise ConfigError(f"metrics.{metric_id}: unknown metric{did_you_mean(metric_id, registry.metrics)} "
                                  "(see `crmkpi metrics list`)")
            metrics[metric_id] = settings.params if settings else {}
            try:  # bad params fail `crmkpi validate`, not the first run
                registry.metrics[metric_id].resolve_params(metrics[metric_id])
            except MetricError as exc:
                raise ConfigError(f"metrics.{metric_id}.params: {str(exc).removeprefix(metric_id + ': ')}") from None
    for name, schedule in raw.schedules.items():
        for connector in schedule.sync:
            if connector not in connectors:
                raise ConfigError(f"schedules.{name}.sync: unknown connector {connector!r}")
        for metric_id in schedule.metrics:
            if metric_id not in registry.metrics:
                raise ConfigError(f"schedules.{name}.metrics: unknown metric {metric_id!r}"
                                  f"{did_you_mean(metric_id, registry.metrics)}")
        if not schedule.sync and not schedule.metrics and not schedule.alerts and not schedule.report:
            raise ConfigError(f"schedules.{name}: nothing to do: give sync (connectors), metrics, alerts and/or "
                              "report")
        for rule in schedule.alerts:
            if rule not in raw.alerts:
                raise ConfigError(f"schedules.{name}.alerts: unknown alert rule {rule!r}"
                                  f"{did_you_mean(rule, raw.alerts)} (configured: {', '.join(raw.alerts) or 'none'})")
        check_channels(f"schedules.{name}.on_failure", schedule.on_failure, raw.channels)
        if schedule.report:
            _check_report(f"schedules.{name}.report", schedule.report, registry, raw.channels,
                          path.resolve().parent if check_sources else None)
        for metric_id, params in schedule.params.items():
            if metric_id not in schedule.metrics:
                raise ConfigError(f"schedules.{name}.params.{metric_id}: not one of the schedule's metrics "
                                  f"({', '.join(schedule.metrics) or 'none'})")
            try:
                registry.metrics[metric_id].resolve_params({**(metrics or {}).get(metric_id, {}), **params})
            except MetricError as exc:
                raise ConfigError(f"schedules.{name}.params.{metric_id}: "
                                  f"{str(exc).removeprefix(metric_id + ': ')}") from None
    for index, target in enumerate(raw.targets):
        if target.metric not in registry.metrics:
            raise ConfigError(f"targets.{index}.metric: unknown metric {target.metric!r}"
                              f"{did_you_mean(target.metric, registry.metrics)}")
        if target.period:
            _check_period(f"targets.{index}.period", target.period)
    check_rules(raw.alerts, registry, metrics, raw.channels)
    return Config(path=path.resolve(), store=raw.store, reporting=raw.reporting, connectors=connectors,
                  metrics=metrics, schedules=raw.schedules, targets=raw.targets, alerts=raw.alerts,
                  service=raw.service,
                  channels=_channels(raw.channels, registry))


def _check_report(where: str, report: ScheduledReport, registry: Registry, channels: dict[str, Any],
                  base_dir: Path | None) -> None:
    """A schedule's report step against the plugins and channels; with ``base_dir`` (``crmkpi validate``),
    also against this machine: the folder written to exists, and a PDF can be made. A run checks them
    again, before it computes anything."""
    for metric_id in report.metrics or ():
        if metric_id not in registry.metrics:
            raise ConfigError(f"{where}.metrics: unknown metric {metric_id!r}"
                              f"{did_you_mean(metric_id, registry.metrics)}")
    check_channels(f"{where}.channels", report.channels, channels)
    if base_dir is None:
        return
    folder = report.path(base_dir, "period").parent
    if not folder.is_dir():
        raise ConfigError(f"{where}.out: the folder {folder} does not exist")
    if report.format == "pdf":
        from .present.files import pdf_renderer

        pdf_renderer(f"{where}.format: pdf")


def _channels(blocks: dict[str, dict[str, Any]], registry: Registry) -> dict[str, Channel]:
    """Each channel's settings, validated by its notifier type's model; their secrets registered."""
    channels = {}
    for name, block in blocks.items():
        if not isinstance(block, dict) or "type" not in block:
            raise ConfigError(f"channels.{name}.type: field required")
        kind = block["type"]
        if not isinstance(kind, str):
            raise ConfigError(f"channels.{name}.type: expected the name of a notifier type, got {type(kind).__name__}")
        notifier = registry.notifiers.get(kind)
        if notifier is None:
            known = ", ".join(sorted(registry.notifiers)) or "none loaded"
            raise ConfigError(f"channels.{name}.type: unknown notifier type {kind!r}"
                              f"{did_you_mean(kind, registry.notifiers)} (known: {known})")
        settings = _validate(notifier.settings, {k: v for k, v in block.items() if k != "type"}, ("channels", name))
        register_settings(settings)
        channels[name] = Channel(name, notifier, settings)
    return channels


class _UniqueKeyLoader(yaml.SafeLoader):
    """The safe loader, refusing a key given twice in one mapping: YAML would keep the last silently."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        first_line: dict[Any, int] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            try:
                line = first_line.setdefault(key, key_node.start_mark.line + 1)
            except TypeError:  # an unhashable key: the safe loader refuses it itself
                continue
            if line != key_node.start_mark.line + 1:
                raise yaml.constructor.ConstructorError(None, None, f"duplicate key {key!r} (first on line {line})",
                                                        key_node.start_mark)
        return super().construct_mapping(node, deep)


def _validate(model: type[BaseModel], data: Any, prefix: tuple, context: Any = None) -> Any:
    try:
        return model.model_validate(data, context=context)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, prefix, model)) from None


def format_validation_error(exc: ValidationError, prefix: tuple = (), model: type[BaseModel] | None = None) -> str:
    """Every problem, on one line: ``connectors.sf.instance_url: field required``; several as
    ``2 problems: (1) ...; (2) ...``.

    With the ``model`` validated, an unknown key gets a did-you-mean from the keys allowed where it
    stands, and a misspelt required key is one problem (``connectors.files.pth: unknown field; did
    you mean 'path'?``), not that plus ``path: field required``.
    """
    errors = exc.errors()
    typos = set()  # the missing keys an unknown key next to them is a misspelling of
    for error in errors:
        if error["type"] == "extra_forbidden" and model is not None:
            typos.update((*error["loc"][:-1], match) for match in close_matches(str(error["loc"][-1]),
                                                                                _keys_at(model, error["loc"][:-1])))
    problems = [_problem(error, prefix, model) for error in errors
                if not (error["type"] == "missing" and tuple(error["loc"]) in typos)]
    if len(problems) == 1:
        return problems[0]
    return f"{len(problems)} problems: " + " ".join(f"({n}) {p}" for n, p in enumerate(problems, 1))


def _problem(error: dict[str, Any], prefix: tuple, model: type[BaseModel] | None) -> str:
    loc = ".".join(str(p) for p in (*prefix, *error["loc"])) or "config"
    msg = error["msg"]
    msg = msg[0].lower() + msg[1:] if msg else msg
    if error["type"] == "missing":
        msg = "field required"
    elif error["type"] == "extra_forbidden":
        known = _keys_at(model, error["loc"][:-1]) if model is not None else []
        msg = "unknown field" + did_you_mean(str(error["loc"][-1]), known)
    elif error["type"] == "value_error":  # our validators' own message, without pydantic's prefix
        msg = str(error["ctx"]["error"])
    return f"{loc}: {msg}"


def _keys_at(model: type[BaseModel], loc: tuple) -> list[str]:
    """The keys the settings model at ``loc`` inside ``model`` accepts (none when ``loc`` leads elsewhere)."""
    annotation: Any = model
    for part in loc:
        annotation = _inner(annotation, part)
    found = _model_in(annotation)
    return [info.alias or name for name, info in found.model_fields.items()] if found else []


def _inner(annotation: Any, part: Any) -> Any:
    """The annotation one step (a field, a dict key or a list index) inside ``annotation``."""
    found = _model_in(annotation)
    if found is not None:
        field = next((info for name, info in found.model_fields.items() if part in (name, info.alias)), None)
        return field.annotation if field else None
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is dict:
        return args[1]
    if origin is list:
        return args[0]
    if origin in (typing.Union, types.UnionType):  # a container or nothing: step into the container
        return next((_inner(a, part) for a in args if typing.get_origin(a) in (dict, list)), None)
    return None


def _model_in(annotation: Any) -> type[BaseModel] | None:
    """The settings model an annotation is, or holds as one choice of a union (``X | None``)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    if typing.get_origin(annotation) not in (typing.Union, types.UnionType):
        return None
    return next((a for a in typing.get_args(annotation) if isinstance(a, type) and issubclass(a, BaseModel)), None)


def _interpolate(value: Any, where: tuple) -> Any:
    if isinstance(value, dict):
        return {k: _interpolate(v, (*where, k)) for k, v in value.items()}
    if isinstance(value, list):
        return [_interpolate(v, (*where, i)) for i, v in enumerate(value)]
    if isinstance(value, str) and "${" in value:
        def replace(match: re.Match) -> str:
            name, default = match.group(1), match.group(2)
            if default is not None and not os.environ.get(name):  # as in the shell: unset or empty
                return default
            if name in os.environ:
                return os.environ[name]
            loc = ".".join(str(p) for p in where)
            raise ConfigError(f"{loc}: environment variable {name} is not set")

        return _ENV_REF.sub(replace, value)
    return value


def _check_period(where: str, text: str) -> None:
    """Only the syntax: relative periods are resolved when they run."""
    try:
        Calendar().parse(text, today=date.today())
    except ConfigError as exc:
        raise ConfigError(f"{where}: {exc}") from None


def check_store_url(url: str) -> None:
    """A store URL SQLAlchemy can parse, for a backend it knows; the message never echoes the URL (secrets)."""
    try:
        parsed = make_url(url)
    except Exception:
        raise ConfigError("store: not a database URL (expected e.g. sqlite:///crmkpi.db or "
                          "postgresql://user:password@host/dbname)") from None
    try:
        parsed.get_dialect()
    except Exception:
        raise ConfigError(f"store: unsupported database {parsed.drivername!r} "
                          "(use sqlite:///PATH or postgresql://...)") from None


def check_zone(value: str) -> str:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown timezone {value!r}") from None
    return value
