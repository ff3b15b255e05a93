# Two commands set up everything on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
# Two pytest workers (the machine budget is 2 cores); `make test PYTEST_ARGS=` runs serially.
PYTEST_ARGS ?= -n 2 --dist loadgroup --durations=25

.PHONY: install faketime demo test lint format bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)  ## create .venv and install harperbq with its dev tools (idempotent)

# libfaketime (Debian package `faketime`) for the clock-skew test; as root without sudo.
faketime:  ## install libfaketime if missing (idempotent)
	@if dpkg -s faketime >/dev/null 2>&1; then :; else \
	  sudo=$$([ "$$(id -u)" = 0 ] || echo sudo); \
	  $$sudo apt-get install -y faketime || { $$sudo apt-get update && $$sudo apt-get install -y faketime; }; \
	fi

demo: install  ## start a local Harper + BigQuery emulator and run the demo end to end
	$(BIN)/harperbq demo

test: install faketime  ## install Harper if missing, then the whole suite (the harness starts the services)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: install  ## ruff lint, ruff format check, mypy
	$(BIN)/ruff check src tests bench docs/tutorials
	$(BIN)/ruff format --check src tests bench docs/tutorials
	$(BIN)/mypy

format: install
	$(BIN)/ruff check --fix src tests bench docs/tutorials
	$(BIN)/ruff format src tests bench docs/tutorials

bench: install  ## run every benchmark; each prints JSON and one summary line
	@set -e; for script in bench/*.py; do echo "== $$script"; $(BIN)/python $$script; done

clean:
	-$(BIN)/harperbq dev down
	rm -rf $(VENV) .harperbq .pytest_cache .mypy_cache .ruff_cache
