"""A schedule's report step: the report of a period as of the run's day, written whole to its file, and the
message that sends it.

The file is the one ``crmkpi report`` writes for the same period, metrics and options. What can be known
before computing (a PDF needs the extra, the folder must be writable) is checked before computing.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..config import ScheduledReport
from ..engine import Settings
from ..errors import CrmkpiError
from ..metrics import Metric
from ..notify import Message
from ..present.build import build_report
from ..present.cards import Report
from ..present.files import check_writable, pdf_renderer, write_atomically
from ..present.page import report_page
from ..present.summary import summary_text
from ..store import Store
from ..targets import Target


@dataclass(frozen=True)
class WrittenReport:
    path: Path
    report: Report
    #: The HTML page, which an email shows; None for a PDF (mail clients do not show one inline).
    page: str | None


def write(store: Store, base_dir: Path, schedule: str, step: ScheduledReport, period_text: str,
          metrics: list[Metric], params: dict[str, dict[str, Any]], targets: list[Target],
          settings: Settings) -> WrittenReport:
    """Build the report of ``period_text`` as of the reporting day ``settings.today`` and write it to the step's
    file (relative to ``base_dir``); a one-line CrmkpiError when it cannot be built or written (a previous file
    is then left as it was)."""
    period = settings.calendar.parse(period_text, today=settings.today)
    path = step.path(base_dir, period.label)
    render_pdf = pdf_renderer(f"schedules.{schedule}.report.format: pdf") if step.format == "pdf" else None
    check_writable(path, "report")
    try:
        built = build_report(store.engine, metrics, period, params, targets, settings, dimension=step.segment,
                             trend_grain=step.trend_grain)
    except CrmkpiError as exc:  # a dimension or param that is wrong: nothing was computed
        raise CrmkpiError(f"report {period.label}: {exc}") from None
    page = report_page(built)
    write_atomically(path, render_pdf(page) if render_pdf else page.encode("utf-8"), "report")
    return WrittenReport(path, built, None if render_pdf else page)


def message(written: WrittenReport, schedule: str, occurrence: str) -> Message:
    """The report as a notification: its cards as text lines, the page as the HTML body (an HTML report),
    and where the file is."""
    where = f"The report: {written.path}" if written.page else f"The PDF report: {written.path}"
    return Message(title=f"KPI report {written.report.period}", text=f"{summary_text(written.report)}\n\n{where}",
                   html=written.page, link=written.path.as_uri(),
                   fields={"schedule": schedule, "occurrence": occurrence, "file": str(written.path)})
