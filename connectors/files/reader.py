"""One file into its table: rows built from its records, checked, and reported on.

A CSV header is read in the sync's process, so that a file that does not fit its table fails
before any row. The rows are then built in a forked worker (:mod:`crmkpi.prefetch`), which
also keeps what the report needs: which mapping keys matched, which ids repeated, which lookup
rows joined (and, for JSON Lines, which fields the records had). It hands its counts and notes
back at the end.
"""

from __future__ import annotations

import hashlib
from array import array
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Protocol, Sequence

from crmkpi.connector import Checkpoint, Coverage, StreamStats, SyncContext
from crmkpi.errors import ConnectorError, SourceDataError
from crmkpi.models import SCHEMA_REVISION
from crmkpi.normalize import Derivation, FieldError, Layout, RecordRows, RowBuilder, Usage
from crmkpi.prefetch import prefetch
from crmkpi.store import column_kinds
from crmkpi.suggest import suggest

from .duplicates import IdHashes
from .lookups import Join, LookupTable
from .names import column_matches
from .records import CsvRecords, JsonlRecords, file_format, ignore, open_text
from .rules import Breach, RowRules
from .settings import FileOptions, FilesSettings, table_columns

#: How many examples (lines, ids, values) a note gives.
EXAMPLES = 5


class Builder(Protocol):
    """What the rows of a file are built with: a :class:`RowBuilder` (CSV) or :class:`RecordRows` (JSON)."""

    usage: Usage

    @property
    def provided(self) -> set[str]: ...

    def build(self, record: Any) -> tuple: ...

    def key(self, record: Any) -> Any: ...

    def source_of(self, column: str) -> str: ...


class FileStream:
    """Rows of one file; bad rows fail the sync or are skipped and counted."""

    def __init__(self, table: str, path: Path, options: FileOptions, settings: FilesSettings,
                 context: SyncContext) -> None:
        self.table = table
        self.name = path.name
        self.path = path
        self.format = file_format(path, options.format)
        self.options = options
        self.on_error = options.on_error or settings.on_error
        self.strict = settings.strict if options.strict is None else options.strict
        #: None: the last row of a repeated id is kept, and the repeat is a warning.
        self.duplicates = options.duplicates or settings.duplicates
        self.context = context
        columns: dict[str, str | tuple[str, ...]] = {
            c: s if isinstance(s, str) else tuple(s) for c, s in options.columns.items()}
        for lookup in options.lookups:
            columns.update({c: f"{lookup.file}:{s}" for c, s in lookup.columns.items()})
        self.layout = Layout(
            columns=columns,
            values=options.values,
            derive={c: Derivation(d.from_, d.map, d.default) for c, d in options.derive.items()},
            constants=options.constants,
            datetime_format=options.datetime_format,
            date_format=options.date_format,
            formats=options.formats,
            timezone=options.timezone or settings.timezone,
        )
        # Fields the config names, which are kept in extra without being reported as unknown.
        self.declared_extra = {*options.extra, *(f for lookup in options.lookups for f in lookup.extra),
                               *(d.from_ for d in options.derive.values()), *options.values}
        self.stats = StreamStats()
        self.columns: list[str] = []
        self.coverage: Coverage | None = None
        self._delimiter = options.delimiter
        self._skipped_lines = array("q")
        self._allowed: dict[str, list[int]] = {}

    # -- the stream --------------------------------------------------------------------------

    def fingerprint(self) -> dict[str, Any]:
        """What the rows depend on: the file's bytes (and its lookups'), and how they are read."""
        digests = [_sha256(self.path), *(_sha256(self.path.parent / lookup.file) for lookup in self.options.lookups)]
        options = "".join((self.options.model_dump_json(), self.layout.timezone, self.on_error, str(self.strict),
                           str(self.duplicates)))
        return {"sha256": digests, "options": hashlib.sha256(options.encode()).hexdigest(), "schema": SCHEMA_REVISION}

    def read(self, cursor: str | None, state: dict | None) -> Iterator[list[tuple] | Checkpoint]:
        fingerprint = self.fingerprint()
        if state == fingerprint:  # committed by an earlier sync: nothing in the file can differ
            self.stats.unchanged = True
            yield Checkpoint(state=fingerprint)
            return
        try:
            lookups = [LookupTable(lookup, self.path.parent) for lookup in self.options.lookups]
            with open_text(self.path, self.options.encoding) as handle:
                rows = self._csv(handle, lookups) if self.format == "csv" else self._jsonl(handle, lookups)
                yield []  # the columns (and a CSV's coverage) are known: the sync checks them before any row
                yield from prefetch(rows, finish=lambda: (self.stats, self.coverage), absorb=self._absorb)
        except UnicodeDecodeError as exc:
            raise SourceDataError(f"{self.name}: not {self.options.encoding} text ({exc.reason})") from None
        except OSError as exc:
            raise ConnectorError(f"{self.name}: {exc.strerror or exc}") from None
        yield Checkpoint(state=fingerprint)

    def _absorb(self, outcome: tuple[StreamStats, Coverage | None]) -> None:
        self.stats, self.coverage = outcome

    # -- planning: in the sync's process ------------------------------------------------------------

    def _csv(self, handle, lookups: list[LookupTable]) -> Callable[[], Iterator[tuple]]:
        """Read the header here, so that ``columns`` is known; return the producer of the rows."""
        source = CsvRecords(handle, self.name, self._delimiter, self.layout.sources("id"))
        self._delimiter = source.delimiter  # for a second pass over the file
        joins = [lookup.joiner(self.name, source.header) for lookup in lookups]
        fields = [*source.header, *(f for lookup in lookups for f in lookup.fields)]
        try:
            builder = RowBuilder(self.table, fields, self.layout, source=self.context.name,
                                 synced_at=self.context.synced_at, encoder=self.context.encoder)
        except FieldError as exc:
            raise SourceDataError(self._plan_problem(exc, source)) from None
        self.columns = builder.columns
        unknown = [f for f, _ in builder.extra_fields if f not in self.declared_extra]
        self._unknown_columns(unknown)
        self._cover(builder.provided, unknown)
        return lambda: self._rows(source, builder, joins, lookups)

    def _jsonl(self, handle, lookups: list[LookupTable]) -> Callable[[], Iterator[tuple]]:
        try:
            records = RecordRows(self.table, self.layout, source=self.context.name,
                                 synced_at=self.context.synced_at, encoder=self.context.encoder)
        except FieldError as exc:
            raise SourceDataError(f"{self.name}: {exc}") from None
        self.columns = records.columns
        joins = [lookup.joiner(self.name, None) for lookup in lookups]

        def rows() -> Iterator[tuple]:
            yield from self._rows(JsonlRecords(handle), records, joins, lookups)
            # Only now are the fields of every record known.
            unknown = sorted(records.extra_fields - self.declared_extra)
            self._unknown_columns(unknown)
            for column in self.layout.columns:
                for source in self.layout.sources(column):
                    if source in records.unseen:
                        self._warn(f"{self.name}: columns.{column}: no record has {source!r}")
            self._cover(records.provided, unknown)

        return rows

    def _cover(self, provided: set[str], unknown: Sequence[str]) -> None:
        self.coverage = Coverage(frozenset(provided), self.strict, ColumnHint(self.name, self.table, tuple(unknown)))

    def _plan_problem(self, exc: FieldError, source: CsvRecords) -> str:
        """The message of a header that does not fit the table, with what it may have meant."""
        message = f"{self.name}: {exc}"
        if exc.reason != "required field missing from the source":
            return message
        meant = [f for f in source.header if exc.column in column_matches(f, table_columns(self.table))]
        if meant:
            message += f"{suggest(meant)} (map it with columns: {{{exc.column}: {meant[0]}}})"
        if exc.column == "id":
            shown = ", ".join(repr(f) for f in source.header[:EXAMPLES]) + (", ..." if len(source.header) > EXAMPLES
                                                                            else "")
            message += (f"; the header, split at {source.delimiter!r}, has {shown}: set delimiter: if the file "
                        f"separates its columns with another character")
        return message

    def _unknown_columns(self, unknown: Sequence[str]) -> None:
        if not unknown:
            return
        columns = table_columns(self.table)
        listed = ", ".join(f"{f!r}" + (f" (did you mean {m[0]!r}?)" if (m := column_matches(f, columns)) else "")
                           for f in unknown)
        self._warn(f"{self.name}: not columns of {self.table}, kept in extra: {listed}; map them with columns:, "
                   f"or list custom fields under extra: to keep them without this note")

    # -- rows: in the row worker ---------------------------------------------------------------------

    def _rows(self, source: CsvRecords | JsonlRecords, builder: Builder, joins: list[Join],
              lookups: list[LookupTable]) -> Iterator[tuple]:
        build = _joined(builder.build, joins) if joins else builder.build
        rules = RowRules(self.table, self.columns)
        check = rules.check if rules.rules else None
        ids = IdHashes()
        add_id = ids.add
        at = self.columns.index("id")
        try:
            for record in source.records(self._bad_row):
                try:
                    row = build(record)
                except FieldError as exc:
                    self._bad_row(source.line, self._value_problem(exc))
                    continue
                if check is not None:
                    breach = check(row)
                    if breach is not None and not self._keep(source.line, breach, builder.source_of):
                        continue
                add_id(row[at])
                yield row
        finally:
            self.stats.read = source.read
        self._report_usage(builder.usage, builder.provided)
        self._report_lookups(lookups)
        self._report_allowed()
        yield from self._repeated(ids.repeated(), builder.key, build)

    def _bad_row(self, line: int, reason: str) -> None:
        message = f"{self.name}: line {line}: {reason}"
        if self.on_error == "fail":
            raise SourceDataError(message)
        self.stats.skip(message)
        self._skipped_lines.append(line)

    def _keep(self, line: int, breach: Breach, source_of: Callable[[str], str]) -> bool:
        """Whether a row that breaks a consistency rule is written (the rule is allowed)."""
        if breach.rule in self.options.allow:
            self._allowed.setdefault(breach.rule, []).append(line)
            return True
        reason = f"column {source_of(breach.column)!r}: {breach.reason} ({breach.rule})"
        if self.strict:
            raise SourceDataError(f"{self.name}: line {line}: {reason} (strict)")
        self._bad_row(line, reason)
        return False

    def _value_problem(self, exc: FieldError) -> str:
        """A bad value's message; for a date or a datetime, with the format it was read with."""
        kind = column_kinds(self.table).get(exc.target or "")
        if kind not in ("date", "datetime") or not exc.reason.startswith("not a valid"):
            return str(exc)
        option, fmt = f"formats.{exc.target}", self.options.formats.get(exc.target)
        if fmt is None:
            option, fmt = f"{kind}_format", self.layout.format_of(exc.target, kind)
        if fmt is None:
            iso = "ISO 8601" if kind == "datetime" else "YYYY-MM-DD"
            return f"{exc} (expected {iso}: set {kind}_format, or formats.{exc.target})"
        return f"{exc} (expected {option} {fmt!r})"

    def _warn(self, message: str) -> None:
        """A problem that may skew a number: a note, or with ``strict`` an error."""
        if self.strict:
            raise SourceDataError(f"{message} (strict)")
        self.stats.note(message)

    # -- the report, at the end of the rows ----------------------------------------------------------

    def _report_usage(self, usage: Usage, provided: set[str]) -> None:
        columns = table_columns(self.table)
        maps = [(f"values.{key}", key, uses) for key, uses in usage.values.items()]  # key: a column, or a field
        maps += [(f"derive.{column}.map", None, uses) for column, uses in usage.derive.items()]
        for where, recoded, uses in maps:
            if recoded in columns and recoded not in provided:
                self._warn(f"{self.name}: {where}: the file has no column for {recoded}, so the map is not used")
            elif unmatched := uses.unmatched():
                self._warn(f"{self.name}: {where}: {_listed(unmatched)} matched no row "
                           f"(values seen: {_listed(uses.seen()) or 'none'})")
        for column, counts in usage.fallbacks.items():
            sources = self.layout.sources(column)
            for source, rows in zip(sources[1:], counts):
                if rows:
                    self.stats.note(f"{self.name}: {column}: {_row_count(rows)} took {source!r} "
                                    f"({sources[0]!r} was empty)")

    def _report_lookups(self, lookups: list[LookupTable]) -> None:
        for lookup in lookups:
            by = lookup.by if lookup.by == lookup.lookup.key else f"{lookup.by} = {lookup.lookup.key}"
            self.stats.note(f"{self.name}: {lookup.found} of {_row_count(self.stats.read - self.stats.skipped)} "
                            f"matched a row of {lookup.name} by {by}")
            if unmatched := lookup.unmatched():
                self._warn(f"{lookup.name}: {len(unmatched)} of its {_row_count(len(lookup.rows))} matched no row of "
                           f"{self.name} by {by}, e.g. {_listed(unmatched)}")
            if lookup.empty_keys:
                self._warn(f"{lookup.name}: {_row_count(lookup.empty_keys)} without {lookup.lookup.key} match nothing")

    def _report_allowed(self) -> None:
        for rule, lines in self._allowed.items():
            self.stats.note(f"{self.name}: {_row_count(len(lines))} broke {rule}, kept (allow: {rule}): "
                            f"line{'s' * (len(lines) > 1)} {_listed(lines, quote=False)}")

    def _repeated(self, candidates: set[int], key: Callable[[Any], Any],
                  build: Callable[[Any], tuple]) -> Iterator[tuple]:
        """Confirm the ids that repeat (a second pass, only when hashes repeated) and apply ``duplicates``.

        What it keeps is bounded by the repeated ids: a count for each, the lines of the first
        few (for the report) and, with ``duplicates: first``, each one's first record."""
        if not candidates:
            return
        skipped = set(self._skipped_lines)
        counts: dict[Any, int] = {}
        lines_of: dict[Any, list[int]] = {}
        first_record: dict[Any, Any] = {}
        with open_text(self.path, self.options.encoding) as handle:
            source = CsvRecords(handle, self.name, self._delimiter, ()) if self.format == "csv" \
                else JsonlRecords(handle)
            for record in source.records(ignore):
                try:
                    id_ = key(record)
                except FieldError:
                    continue  # skipped in the first pass
                if hash(id_) not in candidates or source.line in skipped:
                    continue
                counts[id_] = counts.get(id_, 0) + 1
                if id_ in lines_of or len(lines_of) < EXAMPLES * 2:  # enough to show a few that do repeat
                    lines = lines_of.setdefault(id_, [])
                    if len(lines) <= EXAMPLES:  # one more than shown, for the "..."
                        lines.append(source.line)
                if self.duplicates == "first":
                    first_record.setdefault(id_, record)
        repeated = [id_ for id_, count in counts.items() if count > 1]
        if not repeated:
            return  # only two ids whose hashes are the same
        self.stats.duplicates = sum(counts[id_] - 1 for id_ in repeated)
        shown = [id_ for id_ in lines_of if counts[id_] > 1][:3]
        examples = "; ".join(f"{id_!r} on lines {_listed(lines_of[id_], quote=False)}" for id_ in shown)
        summary = (f"{self.name}: {_row_count(self.stats.duplicates)} repeated the id of an earlier row "
                   f"({len(repeated)} id{'s' * (len(repeated) > 1)}: {examples}{'; ...' if len(repeated) > 3 else ''})")
        if self.duplicates == "error":
            raise SourceDataError(f"{summary} (duplicates: error)")
        if self.duplicates is None:
            self._warn(f"{summary}: the last row of each id is kept; set duplicates: last, first or error")
        else:
            self.stats.note(f"{summary}: the {self.duplicates} row of each id is kept (duplicates: {self.duplicates})")
        if self.duplicates == "first":  # written again after the later rows, so that the first is what stays
            for id_ in repeated:
                yield build(first_record[id_])


@dataclass(frozen=True)
class ColumnHint:
    """Where a file may have a column the metrics need: a column kept in extra that means it.

    (A class, not a closure: the row worker sends it back with the stream's coverage.)"""

    file: str
    table: str
    unknown: tuple[str, ...]

    def __call__(self, column: str) -> str:
        meant = [f for f in self.unknown if column in column_matches(f, table_columns(self.table))]
        if not meant:
            return ""
        return f" ({self.file} has {meant[0]!r}, kept in extra: map it with columns: {{{column}: {meant[0]}}})"


def _joined(build: Callable[[Any], tuple], joins: list[Join]) -> Callable[[Any], tuple]:
    def build_joined(record: Any) -> tuple:
        for join in joins:
            join(record)
        return build(record)

    return build_joined


def _row_count(count: int) -> str:
    return f"{count} row{'s' * (count != 1)}"


def _listed(values: Sequence[Any], quote: bool = True) -> str:
    shown = ", ".join(repr(v) if quote else str(v) for v in values[:EXAMPLES])
    return shown + (", ..." if len(values) > EXAMPLES else "")


def _sha256(path: Path) -> str:
    with path.open("rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()
