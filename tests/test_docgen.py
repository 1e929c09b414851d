"""The generated reference pages match the code, and the check notices when they do not."""

from __future__ import annotations

from pathlib import Path

import pytest

from crmkpi import docgen

REFERENCE = Path(__file__).resolve().parent.parent / "docs" / "reference"


def test_reference_pages_are_current() -> None:
    stale = docgen.stale_pages(REFERENCE)
    assert stale == [], f"stale reference pages {stale}: run `make docs`"


def test_check_reports_an_edited_page(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert docgen.main(["--out", str(tmp_path)]) == 0
    assert docgen.main(["--out", str(tmp_path), "--check"]) == 0
    page = tmp_path / "metrics.md"
    page.write_text(page.read_text() + "hand edit\n")
    (tmp_path / "cli.md").unlink()
    assert docgen.main(["--out", str(tmp_path), "--check"]) == 1
    err = capsys.readouterr().err
    assert "metrics.md is stale" in err and "cli.md is stale" in err


def test_pages_document_builtins_whatever_plugins_are_selected(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CRMKPI_LOAD_PLUGINS", "")
    pages = docgen.pages()
    assert "## close_rate" in pages["metrics.md"] and "## win_rate" in pages["metrics.md"]
    assert "| `by` | str | `count` | `count`, `amount` |" in pages["metrics.md"]
    assert "## `connectors.*` with `type: files`" in pages["config.md"]
    assert "| `path` | str | required |" in pages["config.md"]
    assert "## `crmkpi sync`" in pages["cli.md"] and "--full-refresh" in pages["cli.md"]
    assert "## `register_metrics(register: Callable[[Metric], None]) -> None`" in pages["hooks.md"]
    assert "| `entered_at` | timestamp (UTC) | no |" in pages["schema.md"]
