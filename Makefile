# `make demo` and `make test` work on a fresh machine with Python 3.11+ and make.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test docs bench reliability clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test,pdf]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/crmkpi sample-data --out build/demo-data
	$(BIN)/crmkpi sync --config config/demo.yaml
	$(BIN)/crmkpi run --config config/demo.yaml --period 2025
	$(BIN)/crmkpi run --config config/demo.yaml --period 2025-Q4

# The pdf extra too: tests/test_report_html.py renders a PDF.
test: $(STAMP)
	$(BIN)/python -m pytest

docs: $(STAMP)
	$(BIN)/python -m crmkpi.docgen

# Several minutes each; run on a quiet machine. Figures go to docs/performance.md.
bench: $(STAMP)
	$(BIN)/python bench/ingest.py --rows 1000000 --repeat 3 --check
	$(BIN)/python bench/metrics.py --deals 1000000 --repeat 3 --check
	$(BIN)/python bench/connectors.py --records 20000 --check

# The long reliability run (about an hour on two cores): 63 kills per case and signal, 1,008 in all, the
# property tests with 400 examples each, and the secret scan. Each kill case prints its seed;
# CRMKPI_KILL_SEED=<seed> replays it. Figures go to docs/reliability.md.
KILL_TRIALS ?= 63
reliability: $(STAMP)
	mkdir -p build
	CRMKPI_RELIABILITY=long CRMKPI_KILL_TRIALS=$(KILL_TRIALS) CRMKPI_KILL_REPORT=$(CURDIR)/build/kill-trials.txt $(BIN)/python -m pytest -m reliability -s tests/reliability

clean:
	rm -rf $(VENV) build
