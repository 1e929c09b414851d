"""bench/grouped.py keeps working: a tiny run finds the grouped and per-cell series equal (timings not judged)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from conftest import ALL_BUILTINS, BUILT_IN_GROUPED

SCRIPT = Path(__file__).parents[2] / "bench" / "grouped.py"


def test_a_small_run_compares_every_grouped_metric(tmp_path, monkeypatch):
    monkeypatch.setenv("CRMKPI_LOAD_PLUGINS", ALL_BUILTINS)
    done = subprocess.run([sys.executable, str(SCRIPT), "--deals", "200", "--repeat", "1", "--per-cell",
                           "--work", str(tmp_path)], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    rows = [line.split("|") for line in done.stdout.splitlines() if line.startswith("| ") and "metric" not in line]
    assert [cells[1].strip() for cells in rows] == BUILT_IN_GROUPED
    assert all(cells[-2].strip() == "yes" for cells in rows), done.stdout
    assert "Whole catalog: one period" in done.stdout and "MB), ratio" in done.stdout


def test_catalog_only_measures_the_whole_catalog_and_its_memory(tmp_path, monkeypatch):
    monkeypatch.setenv("CRMKPI_LOAD_PLUGINS", ALL_BUILTINS)
    done = subprocess.run([sys.executable, str(SCRIPT), "--deals", "200", "--repeat", "1", "--catalog-only",
                           "--work", str(tmp_path)], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    assert not [line for line in done.stdout.splitlines() if line.startswith("| ") and "metric" not in line]
    catalog = next(line for line in done.stdout.splitlines() if line.startswith("Whole catalog"))
    peaks = [float(part.split(" MB")[0]) for part in catalog.split("(peak ")[1:]]
    assert len(peaks) == 2 and all(20 < peak < 2000 for peak in peaks), catalog
