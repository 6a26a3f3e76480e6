# tierstream developer entry points. `make demo` and `make test` are the whole set-up.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
# The benchmark's quix-streams peer, in an environment of its own (see pyproject.toml).
PEER_VENV  := .venv-peer
PEER_STAMP := $(PEER_VENV)/.installed

.PHONY: install constraints promtool chromium demo test test-unit test-integration test-acceptance lint typecheck services-up services-down bench schemas clean

install: $(STAMP) $(PEER_STAMP) promtool

# constraints.txt pins every package to the versions the tests passed with (reproducible).
$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c constraints.txt -e '.[dev]'
	touch $(STAMP)

# After changing dependencies in pyproject.toml and testing: pin what .venv now holds.
constraints: $(STAMP)
	{ sed -n '1,2p' constraints.txt; $(PY) -m pip freeze --exclude-editable | grep -v -i '^tierstream\|@ file'; } > constraints.txt.new
	mv constraints.txt.new constraints.txt

$(PEER_STAMP): bench/peer-requirements.txt
	$(PYTHON) -m venv $(PEER_VENV)
	$(PEER_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(PEER_VENV)/bin/python -m pip install --quiet -r bench/peer-requirements.txt
	touch $(PEER_STAMP)

# promtool checks the compose stack's alert rules (Debian's prometheus package; the test
# skips, saying so, without it).
promtool:
	command -v promtool >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus; } \
		|| echo "prometheus (promtool) could not be installed: the alert-rule checks will be skipped, saying so"

# The browser the dashboard test drives (Debian's; the test skips, saying so, without it).
chromium:
	command -v chromium >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; } \
		|| echo "chromium could not be installed: the dashboard's browser tests will be skipped, saying so"

demo: install
	$(VENV)/bin/tierstream replay cdnow --format cdnow --as-of 1998-07-01 \
		--changes-out out/cdnow-changes.jsonl --state-out out/cdnow-state.jsonl

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

typecheck: install
	$(VENV)/bin/mypy scoring models tierstream streams

# The test tiers. Each test belongs to exactly one (markers set by the directory conftests):
# unit (no services, no full CDNOW run, under a minute), integration (the local Kafka and
# Redis), acceptance (the CDNOW reference runs and the installed wheel; some need the
# services). `make test` runs all three in one session.
test-unit: install
	$(PY) -m pytest --doctest-modules models tests -m "not integration and not acceptance"

test-integration: install chromium
	bash infra/services.sh up
	$(PY) -m pytest tests -m "integration and not acceptance"; status=$$?; bash infra/services.sh down; exit $$status

test-acceptance: install
	bash infra/services.sh up
	$(PY) -m pytest tests -m acceptance; status=$$?; bash infra/services.sh down; exit $$status

services-up: install
	bash infra/services.sh up

services-down:
	bash infra/services.sh down

# Starts its own Kafka and Redis, runs every test, and always stops the services again.
test: install chromium
	bash infra/services.sh up
	$(PY) -m pytest --doctest-modules models tests; status=$$?; bash infra/services.sh down; exit $$status

bench: install
	bash infra/services.sh up
	$(VENV)/bin/tierstream bench; status=$$?; bash infra/services.sh down; exit $$status

schemas: install
	$(PY) -m tierstream.schemas

clean:
	rm -rf $(VENV) $(PEER_VENV) out .pytest_cache .mypy_cache .ruff_cache
