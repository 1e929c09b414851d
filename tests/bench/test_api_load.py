"""bench/api_load.py keeps working: a tiny run answers every request right (its timings are not judged here)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from conftest import ALL_BUILTINS

SCRIPT = Path(__file__).parents[2] / "bench" / "api_load.py"


def test_a_short_load_gets_only_right_answers(tmp_path, monkeypatch):
    monkeypatch.setenv("CRMKPI_LOAD_PLUGINS", ALL_BUILTINS)
    done = subprocess.run([sys.executable, str(SCRIPT), "--clients", "4", "--duration", "1", "--deals", "60",
                           "--save-every", "0.3", "--work", str(tmp_path)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    verdicts = [line for line in done.stdout.splitlines() if "zero errors" in line]
    assert verdicts == [f"| {phase}: zero errors | 0 | PASS |"
                        for phase in ("baseline", "latest", "series", "mixed", "saving", "dashboard")], done.stdout
    assert "| saving (1 runs saved) |" in done.stdout or "| saving (2 runs saved) |" in done.stdout, done.stdout
