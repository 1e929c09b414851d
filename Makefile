# `make demo` and `make test` work on a fresh machine with Python 3.11+ and make.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test docs bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/crmkpi sample-data --out build/demo-data
	$(BIN)/crmkpi sync --config config/demo.yaml
	$(BIN)/crmkpi run --config config/demo.yaml --period 2025
	$(BIN)/crmkpi run --config config/demo.yaml --period 2025-Q4

test: $(STAMP)
	$(BIN)/python -m pytest

docs: $(STAMP)
	$(BIN)/python -m crmkpi.docgen

# Several minutes each; run on a quiet machine. Figures go to docs/performance.md.
bench: $(STAMP)
	$(BIN)/python bench/ingest.py --rows 1000000 --repeat 3 --check
	$(BIN)/python bench/metrics.py --deals 1000000 --repeat 3 --check
	$(BIN)/python bench/connectors.py --records 20000 --check

clean:
	rm -rf $(VENV) build
