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

# The benchmark suite at the sizes the issues name (benchmarks/bench_*.py), then the table of
# figures, targets and measurements in docs/performance.md (benchmarks/report.py). The
# real-iptables-restore comparison runs only as root with iptables-restore installed. No
# --benchmark-only: the checks that are not timings (peak memory, the 10k/10 trace ratio)
# assert their targets too.
BENCH_JSON ?= .kservice/bench.json
bench: $(STAMP)
	@mkdir -p $(dir $(BENCH_JSON))
	$(BIN)/python -m pytest benchmarks -o python_files='bench_*.py' -p no:cacheprovider \
		-q --benchmark-json=$(BENCH_JSON) $(PYTEST_ARGS); status=$$?; \
	$(BIN)/python benchmarks/report.py $(BENCH_JSON) -o docs/performance.md && exit $$status

# The documentation site, into site/: docs/gen.py writes the generated pages (CLI and API
# references, tutorial blocks, pictures), then MkDocs builds strictly. The pictures need
# Graphviz's `dot`: apt-get install graphviz (Debian/Ubuntu), dnf install graphviz (Fedora),
# brew install graphviz (macOS); without it the pages show the DOT text instead.
docs: $(STAMP)
	@command -v dot >/dev/null 2>&1 || echo "make docs: Graphviz 'dot' not found; pictures stay DOT text (install: apt-get install graphviz / brew install graphviz)"
	$(BIN)/python docs/gen.py
	$(BIN)/mkdocs build --strict -d site

clean:
	rm -rf $(VENV) .kservice .pytest_cache .hypothesis .mypy_cache .ruff_cache
