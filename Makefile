# `make demo` and `make test` work on a fresh machine with Python 3.11+ and make.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test docs clean

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

clean:
	rm -rf $(VENV) build
