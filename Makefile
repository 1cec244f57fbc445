# The README's two commands are `make demo` and `make test`; both install first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# uv installs the locked versions; where the machine has none, it is bootstrapped with pip into
# its own small venv (.tools) so that `uv sync` never removes it from the project's venv.
UV := $(shell command -v uv 2>/dev/null || echo .tools/bin/uv)
STAMP := $(VENV)/.installed

.PHONY: install test lint typecheck pytest demo ui bench sandbox clean

install: $(STAMP)

$(STAMP): pyproject.toml uv.lock
	@if [ ! -x "$(UV)" ]; then \
		$(PYTHON) -m venv .tools && .tools/bin/python -m pip install --quiet "uv>=0.9,<1"; fi
	$(UV) sync --frozen --all-extras --compile-bytecode --python $(PYTHON)
	@touch $(STAMP)

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: install
	$(BIN)/mypy

pytest: install
	$(BIN)/pytest $(PYTEST_ARGS)

test: lint typecheck pytest

demo: install
	$(BIN)/python -m dagster_defs.demo

ui: install
	$(BIN)/python -m dagster_defs.ui

bench: install
	$(BIN)/python -m benchmarks $(if $(QUICK),--quick,)

sandbox: install
	$(BIN)/mm-pipeline sandbox serve --port 8765

clean:
	rm -rf $(VENV) .tools .mypy_cache .ruff_cache build dist
