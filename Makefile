# The two commands a fresh machine needs are `make demo` and `make test`; everything else
# here is for developers. Each target creates .venv on first use and reinstalls only when
# pyproject.toml changes.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test lint typecheck bench docs clean

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@$(BIN)/python -m pip install -q --disable-pip-version-check --upgrade pip
	@$(BIN)/python -m pip install -q --disable-pip-version-check -e '.[dev]'
	@touch $(STAMP)

demo: $(STAMP)
	@$(BIN)/kservice demo

test: $(STAMP)
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check kservice backends tests benchmarks
	$(BIN)/mypy

bench: $(STAMP)
	$(BIN)/python -m pytest benchmarks --benchmark-only -q $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) .kservice .pytest_cache .hypothesis .mypy_cache .ruff_cache
