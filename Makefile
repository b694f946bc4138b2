# paratag: the two commands a newcomer needs are `make demo` and `make test`.
# Every target creates/uses .venv and installs pinned versions from constraints.txt
# (torch==2.13.0 CPU build among them), so CI never pulls CUDA wheels.

PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin
PIP     = $(BIN)/python -m pip
STAMP   = $(VENV)/.installed-$(shell cat pyproject.toml constraints.txt | cksum | cut -d' ' -f1)
OUT    ?= demo_output
JOBS   ?= 2

.PHONY: install demo test lint bench validate wheel-check clean

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q -c constraints.txt -e '.[all]'
	$(PIP) install -q -c constraints.txt --no-deps weaver-core  # the peer of tests and benchmarks
	rm -f $(VENV)/.installed-* && touch $@

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/paratag demo --out $(OUT)

test: $(STAMP) lint
	$(BIN)/python -m pytest -m "not slow"

lint: $(STAMP)
	$(BIN)/ruff check src processors training tests benchmarks examples
	$(BIN)/mypy

bench: $(STAMP)
	for b in benchmarks/bench_*.py; do echo "== $$b"; $(BIN)/python $$b || exit 1; done

validate: $(STAMP)
	$(BIN)/paratag validate --out validation_output

clean:
	rm -rf build dist *.egg-info $(OUT) .pytest_cache .mypy_cache .ruff_cache
