"""Pytest fixtures for crmkpi plugin authors: a store to load rows into, metrics run in process, connectors synced.

crmkpi registers this module as a pytest plugin (entry point ``pytest11``), so every pytest session of an
environment where crmkpi is installed has the ``crmkpi_store`` fixture: a :class:`KpiStore`, a temporary
SQLite store under the test's ``tmp_path``. It reads no config file and nothing under the user's home, and
everything it writes stays in ``tmp_path``. With it a test can:

- load rows into the normalized tables from plain dicts (:meth:`KpiStore.load`), parsed and checked as the
  files connector parses and checks a file's rows, or the bundled sample company
  (:meth:`KpiStore.load_sample`);
- run a metric through the real engine (:meth:`KpiStore.run`, :meth:`KpiStore.one`), with the plugins
  loaded the way ``crmkpi`` loads them, so the plugin under test is found when it is installed
  (``pip install -e .``); and check that its ``grouped`` compute agrees with its ``compute``
  (:meth:`KpiStore.assert_grouped_agrees`);
- sync a connector into the store through the real sync (:meth:`KpiStore.sync`) and see what it wrote,
  reported and saved as its cursor, so that a second sync can be checked to be incremental.

For a store shared by the tests of a module (the sample company loaded once, say), build one in a fixture
of that scope: ``KpiStore(tmp_path_factory.mktemp("kpi"))``.

Importing this module costs nothing worth measuring: it loads with every pytest session, so crmkpi itself
(SQLAlchemy, the plugins) is imported only when a fixture or helper is first used, and no fixture is autouse.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Iterator, Mapping, Sequence, TypedDict, Unpack

import pytest

if TYPE_CHECKING:
    from pydantic import BaseModel
    from sqlalchemy.engine import Engine

    from crmkpi.connector import ConnectorType
    from crmkpi.metrics import Metric
    from crmkpi.plugins import Registry
    from crmkpi.sync import SyncReport

__all__ = ["Comparison", "KpiStore", "ResultCell", "RunOptions", "SyncResult", "crmkpi_empty_store", "crmkpi_store"]

#: The ``source`` of the rows :meth:`KpiStore.load` writes (a connector's rows have its name).
DEFAULT_SOURCE = "crm"
#: The connector name the sample company is synced under.
SAMPLE_SOURCE = "sample"


@dataclass(frozen=True)
class Comparison:
    """A result's previous-period or year-ago value, and the change from it."""

    period: str
    value: float | None
    change: float | None
    change_pct: float | None
    error: str | None = None


@dataclass(frozen=True)
class ResultCell:
    """One value of a run: a metric for one period (a part of the period with ``grain``) and one segment."""

    metric: str
    period: str
    #: The segment's value of each dimension (``{"owner": "u1"}``); empty when the run is not split.
    segment: dict[str, Any]
    value: float | None
    numerator: float | None
    denominator: float | None
    note: str | None
    #: Why the metric failed for this cell (its value is then None), as ``crmkpi run`` prints it.
    error: str | None
    previous: Comparison | None = None
    year_ago: Comparison | None = None
    #: The whole result as :func:`crmkpi.engine.run_metrics` returns it (unit, currency, labels, params...).
    row: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def of(cls, row: dict[str, Any]) -> ResultCell:
        def compared(kind: str) -> Comparison | None:
            found = row.get(kind)
            return Comparison(found["period"], found["value"], found["change"], found["change_pct"],
                              found.get("error")) if found else None

        return cls(row["metric"], row["period"], dict(row["segment"]), row["value"], row["numerator"],
                   row["denominator"], row["note"], row["error"], compared("previous"), compared("year_ago"), row)


@dataclass(frozen=True)
class SyncResult:
    """What one sync did: counts per table (summed over the streams feeding it), the reasons records were
    skipped, the notes, and the cursor and state each stream saved (what its next sync starts from)."""

    connector: str
    #: Records the streams read, per table.
    read: dict[str, int]
    #: Rows the store changed, per table: inserted, updated, or flagged deleted (unchanged rows are not written).
    written: dict[str, int]
    #: Records the streams skipped as bad, per table (their reasons are in ``errors``).
    skipped: dict[str, int]
    #: Why records were skipped (the first few per stream), as the sync report lists them.
    errors: list[str]
    #: What the streams and the connector noted (unknown fields, columns no record gave, ...).
    notes: list[str]
    #: The cursor each stream saved, by stream name.
    cursors: dict[str, str | None]
    #: The state each stream saved, by stream name.
    states: dict[str, dict[str, Any] | None]
    report: SyncReport = field(repr=False, compare=False)


class KpiStore:
    """A migrated SQLite store in ``folder``, with the helpers a plugin's tests need.

    ``template``: an empty migrated store to copy instead of migrating (the fixture shares one per
    session). The registry is loaded on first use, as every crmkpi command loads it: the installed
    plugins that ``CRMKPI_LOAD_PLUGINS`` selects (all when it is unset).
    """

    def __init__(self, folder: Path, *, template: Path | None = None) -> None:
        from crmkpi.store import Store

        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.path = self.folder / "crmkpi.db"
        if template is not None and not self.path.exists():
            _copy_sqlite(template, self.path)
        self.url = f"sqlite:///{self.path}"
        self.store: Store = Store(self.url)
        self._registry: Registry | None = None

    @property
    def engine(self) -> Engine:
        return self.store.engine

    @property
    def registry(self) -> Registry:
        """The loaded plugins (loaded once per store)."""
        if self._registry is None:
            from crmkpi.plugins import load_registry

            self._registry = load_registry()
        return self._registry

    def close(self) -> None:
        self.store.engine.dispose()

    # -- rows in -----------------------------------------------------------------------------------

    def load(self, table: str, rows: Iterable[Mapping[str, Any]], *, source: str = DEFAULT_SOURCE,
             timezone: str = "UTC", allow: Sequence[str] = ()) -> int:
        """Write ``rows`` (dicts of column -> value) into ``table``; returns how many rows the store changed.

        Values are what a file or an API would give: ISO 8601 strings, or ``datetime``/``date`` objects
        (a datetime or text without an offset is in ``timezone``), numbers or numeric text, ``true``/
        ``false``. They are parsed and checked as the files connector does, including the table's
        consistency rules (a won deal that is not closed, a negative amount...; ``allow`` names rules to
        let through, as the files connector's ``allow:``). Every row needs an ``id``; custom fields go in
        an ``extra`` dict. A bad value, an unknown column or an id given twice raises a one-line
        :class:`~crmkpi.errors.SourceDataError` naming the row, and nothing is written. Loading an id
        already in the store (of the same ``source``) updates its row.
        """
        from crmkpi.connectors.files.rules import RowRules
        from crmkpi.errors import SourceDataError
        from crmkpi.normalize import FieldError, Layout, RecordRows

        _entity(table)
        records = [_record(table, number, row) for number, row in enumerate(rows, 1)]
        builder = RecordRows(table, Layout(timezone=timezone), source=source, synced_at=datetime.now(UTC),
                             encoder=self.store.encoder)
        rules = RowRules(table, builder.columns)
        at = builder.columns.index("id")
        built: list[tuple] = []
        first_row_of: dict[Any, int] = {}
        for number, record in enumerate(records, 1):
            where = f"{table} row {number} (id {record.get('id')!r})"
            try:
                row = builder.build(record)
            except FieldError as exc:
                raise SourceDataError(f"{where}: {exc}") from None
            breach = rules.check(row)
            if breach is not None and breach.rule not in allow:
                raise SourceDataError(f"{where}: {breach.reason} ({breach.rule}; load(..., allow=[{breach.rule!r}]) "
                                      f"lets it through)")
            repeated = first_row_of.setdefault(row[at], number)
            if repeated != number:
                raise SourceDataError(f"{where}: the id of row {repeated} again (one load writes each id once)")
            built.append(row)
        if not built:
            return 0
        with self.store.transaction() as conn:
            return self.store.upsert_rows(conn, table, builder.columns, built)

    def load_sample(self, *, deals: int = 200, seed: int = 42) -> SyncResult:
        """Load the sample company (``crmkpi sample-data``: 2024-2025 of a B2B SaaS company, every table)
        with ``deals`` deals, through the files connector, as connector ``sample``. The same seed gives the
        same rows. 200 deals (about 2,700 rows) load in well under a second."""
        from crmkpi.sample_data import CUSTOM_COLUMNS, generate

        folder = self.folder / "sample-data"
        generate(folder, seed=seed, deals=deals)
        # Its custom columns are kept in extra on purpose: no note about them.
        tables = {table: {"extra": list(columns)} for table, columns in CUSTOM_COLUMNS.items()}
        return self.sync(_files_connector(), {"path": str(folder), "tables": tables}, name=SAMPLE_SOURCE)

    # -- rows out ----------------------------------------------------------------------------------

    def rows(self, table: str) -> list[dict[str, Any]]:
        """Every row of ``table`` (deleted ones too), ordered by source and id, datetimes as aware UTC."""
        from sqlalchemy import select

        from crmkpi.models import TABLES
        from crmkpi.store import aware_utc

        if table not in TABLES:
            _entity(table)  # raises, naming the tables
        found = TABLES[table]
        with self.engine.connect() as conn:
            rows = conn.execute(select(found).order_by(*found.primary_key.columns)).mappings().all()
        return [{k: aware_utc(v) if isinstance(v, datetime) else v for k, v in row.items()} for row in rows]

    # -- metrics -----------------------------------------------------------------------------------

    def run(self, metric: str, period: str, *, grouped: bool = True, stop_on_error: bool = False,
            **options: Unpack[RunOptions]) -> list[ResultCell]:
        """Run ``metric`` over ``period`` (``"2025"``, ``"2025-Q1"``, ``"2025-03"``, ... as ``crmkpi run
        --period`` takes it) through :func:`crmkpi.engine.run_metrics`, and return its cells: one per part
        of the period (with ``grain``) and segment, parts first. Nothing is saved.

        ``options`` (:class:`RunOptions`) are ``crmkpi run``'s: ``grain``, ``segments`` (a dimension or
        several, as ``--segment``), ``params`` (values or text, coerced to each param's type), ``compare``
        (``"previous"``, ``"year_ago"`` or ``"both"``), the reporting ``currency``, ``timezone``,
        ``fiscal_year_start_month`` and ``week_start``, and ``today`` (the reporting day: fix it for
        measures as of today). A failing metric leaves its error on its cells (``ResultCell.error``);
        ``stop_on_error`` raises it instead, with its traceback. ``grouped=False`` computes every cell
        with ``compute``, the oracle of the grouped compute (a run of one cell always uses ``compute``).
        """
        return [ResultCell.of(row) for row in self._results(self._metric(metric), period, grouped, stop_on_error,
                                                             options)]

    def one(self, metric: str, period: str, **options: Unpack[RunOptions]) -> ResultCell:
        """The only cell of a run (no grain, no segments); :meth:`run`'s options."""
        cells = self.run(metric, period, **options)
        if len(cells) != 1:
            raise AssertionError(f"{metric} over {period}: expected one cell, got {len(cells)} "
                                 f"(use run() for a grain or segments)")
        return cells[0]

    def assert_grouped_agrees(self, metric: str, period: str, **options: Unpack[RunOptions]) -> list[ResultCell]:
        """Run ``metric`` both ways, with its ``grouped`` compute and cell by cell with ``compute``, assert
        that every value, numerator, denominator, note, error and comparison agrees (floats to 1e-12, by
        :func:`crmkpi.same_results`) and return the cells.

        It fails when the grouped compute was not used: the metric has none, the run has one cell (give a
        ``grain``, ``segments`` or ``compare``), or it raised (the engine then computes cell by cell, and
        there would be nothing to compare)."""
        from crmkpi.engine import same_results

        found = self._metric(metric)
        if found.grouped is None:
            raise AssertionError(f"{metric} has no grouped compute")
        calls: list[BaseException | None] = []
        original = found.grouped

        def watched(grid: Any) -> Any:
            try:
                value = original(grid)
            except BaseException as exc:
                calls.append(exc)
                raise
            calls.append(None)
            return value

        grouped = self._results(replace(found, grouped=watched), period, True, False, options)
        if not calls:
            raise AssertionError(f"{metric} over {period}: the run has one cell, which compute fills: give a grain, "
                                 f"segments or compare")
        if calls[0] is not None:
            raise AssertionError(f"{metric}: grouped raised {type(calls[0]).__name__}: {calls[0]} (the engine "
                                 f"computed cell by cell instead)") from calls[0]
        per_cell = self._results(found, period, False, False, options)
        if len(grouped) != len(per_cell):  # the engine makes the cells: a difference here is crmkpi's bug
            raise AssertionError(f"{metric}: {len(grouped)} cells grouped, {len(per_cell)} cell by cell")
        ignored = ("run_id", "computed_at")
        for a, b in zip(grouped, per_cell):
            differing = [key for key in a if key not in ignored and not same_results(a[key], b.get(key))]
            if differing:
                shown = "; ".join(f"{key}: {a[key]!r} (grouped) != {b.get(key)!r} (compute)" for key in differing)
                raise AssertionError(f"{metric} {a['period']} {a['segment']}: grouped and per-cell differ in {shown}")
        return [ResultCell.of(row) for row in grouped]

    def _metric(self, metric_id: str) -> Metric:
        return _loaded(self.registry, self.registry.metrics, "metric", metric_id)

    def _results(self, metric: Metric, period: str, grouped: bool, stop_on_error: bool,
                 options: RunOptions) -> list[dict[str, Any]]:
        from zoneinfo import ZoneInfo

        from crmkpi.engine import COMPARISONS, Run, Settings, run_metrics
        from crmkpi.errors import ConfigError
        from crmkpi.periods import GRAINS, Calendar

        grain = options.get("grain")
        if grain is not None and grain not in GRAINS:
            raise ConfigError(f"grain {grain!r}: expected one of {', '.join(GRAINS)}")
        compare = options.get("compare", ())
        compare = COMPARISONS if compare == "both" else (compare,) if isinstance(compare, str) else tuple(compare)
        if unknown := [kind for kind in compare if kind not in COMPARISONS]:
            raise ConfigError(f"compare {unknown[0]!r}: expected previous, year_ago or both")
        segments = options.get("segments", ())
        calendar = Calendar(options.get("fiscal_year_start_month", 1), options.get("week_start", "monday"))
        timezone = options.get("timezone", "UTC")
        today = options.get("today")
        settings = Settings(calendar, timezone, options.get("currency", "USD"), today)
        chosen = calendar.parse(period, today=today or datetime.now(ZoneInfo(timezone)).date())
        run = Run([metric], chosen, {metric.id: dict(options.get("params") or {})}, grain,
                  (segments,) if isinstance(segments, str) else tuple(segments), compare)
        return run_metrics(self.engine, run, settings, persist=False, grouped=grouped, stop_on_error=stop_on_error)

    # -- connectors --------------------------------------------------------------------------------

    def sync(self, connector: str | ConnectorType, settings: Mapping[str, Any] | BaseModel | None = None, *,
             name: str | None = None, base_dir: Path | None = None, full_refresh: bool = False) -> SyncResult:
        """Sync a connector into the store through :func:`crmkpi.sync.sync_connector`, as ``crmkpi sync`` does:
        its streams, checkpoints, deletions, saved cursors and coverage checks, and its lock and sync run.

        ``connector``: a connector type's name (a loaded plugin's) or a :class:`~crmkpi.connector.ConnectorType`
        (registered for this sync only). ``settings``: the connector's config block without ``type``, as a dict
        (validated by the type's settings model: a mistake raises ``ConfigError`` as ``crmkpi validate``
        words it) or a settings object. ``name`` is the connector's name in a config, the ``source`` of its
        rows and the key of its cursors (default: the type's name); relative paths are taken from
        ``base_dir`` (default: the store's folder). A sync that fails raises its one-line error. Sync again
        with the same name to check that a second sync starts from the saved cursor.
        """
        from pydantic import BaseModel, ValidationError

        from crmkpi.config import ConnectorConfig, format_validation_error
        from crmkpi.connector import ConnectorType
        from crmkpi.errors import ConfigError
        from crmkpi.sync import sync_connector

        ctype = connector if isinstance(connector, ConnectorType) else self._connector_type(connector)
        name = name or ctype.name
        if not isinstance(settings, BaseModel):
            try:
                settings = ctype.settings.model_validate(dict(settings or {}))
            except ValidationError as exc:
                raise ConfigError(format_validation_error(exc, ("connectors", name), ctype.settings)) from None
        report = sync_connector(self.store, self._registry_with(ctype), name, ConnectorConfig(ctype.name, settings),
                                Path(base_dir) if base_dir is not None else self.folder, full_refresh=full_refresh)
        return self._sync_result(name, report)

    def _connector_type(self, name: str) -> ConnectorType:
        return _loaded(self.registry, self.registry.connectors, "connector type", name)

    def _registry_with(self, ctype: ConnectorType) -> Registry:
        """The loaded plugins, with ``ctype`` as its name's connector type (the sync looks the type up by name,
        and reads the loaded metrics' needs)."""
        from crmkpi.plugins import Registry

        registry = Registry()
        registry.metrics = self.registry.metrics
        registry.connectors = {**self.registry.connectors, ctype.name: ctype}
        return registry

    def _sync_result(self, name: str, report: SyncReport) -> SyncResult:
        read: dict[str, int] = {}
        written: dict[str, int] = {}
        skipped: dict[str, int] = {}
        for stream in report.streams:
            read[stream.table] = read.get(stream.table, 0) + stream.read
            written[stream.table] = written.get(stream.table, 0) + stream.written
            skipped[stream.table] = skipped.get(stream.table, 0) + stream.skipped
        saved = {stream.name: self.store.get_state(name, stream.name) for stream in report.streams}
        return SyncResult(
            connector=name, read=read, written=written, skipped=skipped,
            errors=[error for stream in report.streams for error in stream.errors],
            notes=[*report.notes, *(note for stream in report.streams for note in stream.notes)],
            cursors={stream: state.cursor if state else None for stream, state in saved.items()},
            states={stream: state.state if state else None for stream, state in saved.items()},
            report=report)


class RunOptions(TypedDict, total=False):
    """What a run is asked, besides its metric and period: :meth:`KpiStore.run`'s options."""

    grain: str | None
    segments: str | Sequence[str]
    params: Mapping[str, Any] | None
    compare: str | Sequence[str]
    currency: str
    timezone: str
    fiscal_year_start_month: int
    week_start: str
    today: date | None


def _entity(table: str) -> None:
    """Refuse a name that is no normalized table."""
    from crmkpi.errors import ConfigError
    from crmkpi.models import ENTITIES
    from crmkpi.suggest import did_you_mean

    if table not in ENTITIES:
        raise ConfigError(f"unknown table {table!r}{did_you_mean(table, ENTITIES)} (tables: {', '.join(ENTITIES)})")


def _record(table: str, number: int, row: Mapping[str, Any]) -> dict[str, Any]:
    """A row given to :meth:`KpiStore.load` as a record of the files connector: its columns, and the fields of its
    ``extra`` dict beside them (which the connector keeps in ``extra``). A key that is no column is refused: kept
    in ``extra``, a misspelt column would leave the column empty without a word."""
    from crmkpi.errors import SourceDataError
    from crmkpi.store import column_kinds
    from crmkpi.suggest import did_you_mean

    columns = set(column_kinds(table)) - {"source", "synced_at", "extra"}
    where = f"{table} row {number} (id {row.get('id')!r})"
    for key in row:
        if key not in columns and key != "extra":
            raise SourceDataError(f"{where}: {key!r} is not a column of {table}{did_you_mean(str(key), columns)} "
                                  f"(custom fields go in an 'extra' dict)")
    extra = row.get("extra") or {}
    if not isinstance(extra, Mapping):
        raise SourceDataError(f"{where}: extra must be a dict of custom fields, got {type(extra).__name__}")
    if clash := sorted(str(key) for key in extra if key in columns or key == "extra"):
        raise SourceDataError(f"{where}: extra field {clash[0]!r} has the name of a column: give it as the column")
    kinds = column_kinds(table)
    # A date where a moment is due is its midnight, as "2025-01-31" is (JSON, the connector's input, has no dates).
    return {**{key: datetime.combine(value, time()) if kinds.get(key) == "datetime" and type(value) is date else value
               for key, value in row.items() if key != "extra"}, **extra}


def _loaded(registry: Registry, provided: Mapping[str, Any], kind: str, key: str) -> Any:
    """What the loaded plugins provide as ``key``; an unknown key raises, naming what is known and why a
    plugin may be missing."""
    found = provided.get(key)
    if found is None:
        from crmkpi.errors import PluginError

        known = ", ".join(sorted(provided)) or "none loaded"
        raise PluginError(f"unknown {kind} {key!r} (known: {known}){_load_errors(registry)}")
    return found


def _load_errors(registry: Registry) -> str:
    """The plugins that failed to load, for a message about something not found: the plugin under test may
    be one of them."""
    errors = registry.errors()
    return f"; plugins that failed to load: {'; '.join(errors)}" if errors else ""


def _files_connector() -> ConnectorType:
    """The built-in files connector, whatever ``CRMKPI_LOAD_PLUGINS`` selects: the sample company is loaded with it."""
    from crmkpi.connectors import files

    found: list[ConnectorType] = []
    files.register_connectors(register=found.append)
    return found[0]


def _copy_sqlite(source: Path, target: Path) -> None:
    """Copy a SQLite database with SQLite's backup (consistent whatever its journal holds)."""
    with sqlite3.connect(source) as original, sqlite3.connect(target) as copy:
        original.backup(copy)
    original.close()
    copy.close()


# -- fixtures ----------------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def crmkpi_empty_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An empty migrated SQLite store, made once per session: each ``crmkpi_store`` starts as a copy of it
    (migrating a store takes a quarter of a second)."""
    store = KpiStore(tmp_path_factory.mktemp("crmkpi-empty"))
    store.close()
    return store.path


@pytest.fixture
def crmkpi_store(tmp_path: Path, crmkpi_empty_store: Path) -> Iterator[KpiStore]:
    """An empty :class:`KpiStore` in ``tmp_path / "crmkpi"``: load rows, run metrics, sync connectors."""
    store = KpiStore(tmp_path / "crmkpi", template=crmkpi_empty_store)
    yield store
    store.close()
