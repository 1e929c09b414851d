"""Writing a report's file, whole or not at all, as HTML or PDF: what ``crmkpi report`` and a schedule's
report step share.

Errors name the file as the caller calls it (``--out report.html``, ``report /srv/kpi/weekly.html``).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any, Callable

from ..errors import ConfigError, CrmkpiError

PDF_EXTRA = "needs the pdf extra: pip install 'crmkpi[pdf]'"


def pdf_renderer(asked_by: str = "--format pdf") -> Callable[[str], bytes]:
    """HTML to PDF bytes with WeasyPrint, which may fetch nothing (the page needs nothing). Without the extra,
    a ConfigError saying what asked for a PDF (``asked_by``)."""
    try:
        import weasyprint
    except (ImportError, OSError):  # OSError: installed, but the system's Pango is missing
        raise ConfigError(f"{asked_by} {PDF_EXTRA}") from None

    def refuse(url: str, *args: Any, **kwargs: Any) -> dict:
        raise ValueError(f"the report loads nothing (asked for {url})")

    return lambda page: weasyprint.HTML(string=page, url_fetcher=refuse).write_pdf()


def check_writable(path: Path, name: str = "--out") -> None:
    """Refuse a file that cannot be written before computing anything (and never write half a file)."""
    folder = path.parent
    if path.is_dir():
        raise ConfigError(f"{name} {path}: is a folder")
    if not folder.is_dir():
        raise ConfigError(f"{name} {path}: the folder {folder} does not exist")
    if not os.access(folder, os.W_OK | os.X_OK) or (path.exists() and not os.access(path, os.W_OK)):
        raise ConfigError(f"{name} {path}: not writable")


def write_atomically(path: Path, data: bytes, name: str = "--out") -> None:
    """Write to a temporary file beside ``path``, then rename it over: a reader (a web server, a mail job)
    sees the old file or the new one, never a part."""
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(handle, "wb") as file:
            file.write(data)
        os.chmod(temporary, 0o644)  # mkstemp's 0600 would hide the report from the web server that serves it
        os.replace(temporary, path)
    except BaseException as exc:
        Path(temporary).unlink(missing_ok=True)
        if isinstance(exc, OSError):
            raise CrmkpiError(f"{name} {path}: {exc.strerror or exc}") from None
        raise
