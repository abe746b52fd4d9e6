# Two commands on a fresh machine: `make run` serves Signoff on SQLite at
# 127.0.0.1:8000, `make test` passes the tests. Both bootstrap .venv themselves.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# Two installs in one venv: running needs the package alone (make run), testing
# and linting add the extras (make test, make lint).
RUN_STAMP := $(VENV)/.installed-run
STAMP := $(VENV)/.installed
MCP_SERVERS_DIR := tests/mcp_servers
MCP_SERVERS := $(MCP_SERVERS_DIR)/node_modules/.installed
HOST ?= 127.0.0.1
PORT ?= 8000
# The policy the service enforces (the single source of truth; gateways fetch it).
POLICY ?= examples/policy.json

.PHONY: run test lint format bench screenshot clean wheel-check lowest-check

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(RUN_STAMP): pyproject.toml | $(VENV)/bin/python
	$(BIN)/python -m pip install --quiet -e .
	touch $(RUN_STAMP)

$(STAMP): pyproject.toml | $(VENV)/bin/python
	$(BIN)/python -m pip install --quiet -e ".[test,dev,fastmcp,contextforge,postgres]"
	touch $(STAMP) $(RUN_STAMP)

# The real MCP servers the tests and benchmarks run, in a git-ignored folder.
$(MCP_SERVERS): $(MCP_SERVERS_DIR)/package.json $(MCP_SERVERS_DIR)/package-lock.json
	cd $(MCP_SERVERS_DIR) && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --no-audit --no-fund
	touch $(MCP_SERVERS)

run: $(RUN_STAMP)
	$(BIN)/signoff serve --host $(HOST) --port $(PORT) --policy $(POLICY)

test: $(STAMP) $(MCP_SERVERS)
	$(BIN)/pytest

lint: $(STAMP)
	$(BIN)/ruff check approvals gateway_plugin tests bench migrations
	$(BIN)/ruff format --check approvals gateway_plugin tests bench migrations
	$(BIN)/mypy --strict approvals gateway_plugin
	$(BIN)/deptry approvals gateway_plugin
	$(BIN)/hadolint Dockerfile

format: $(STAMP)
	$(BIN)/ruff check --fix approvals gateway_plugin tests bench migrations
	$(BIN)/ruff format approvals gateway_plugin tests bench migrations

# Every benchmark in turn (<= 10 minutes on 2 cores); rewrites bench/RESULTS.md.
bench: $(STAMP) $(MCP_SERVERS)
	$(BIN)/python bench/run_all.py

# The built wheel, pip-installed into a clean venv, serves a fresh database (CI runs it).
wheel-check: $(STAMP)
	$(BIN)/python .ci/wheel_smoke.py

# The lowest declared direct versions pass a fast unit subset (CI runs it).
lowest-check: $(STAMP) $(MCP_SERVERS)
	PYTHON=$(PYTHON) .ci/lowest_versions

# Refresh docs/dashboard.png (needs /usr/bin/chromium).
screenshot: $(STAMP)
	SIGNOFF_SCREENSHOT=1 $(BIN)/pytest -q tests/e2e/test_dashboard.py -k screenshot

clean:
	rm -rf $(VENV) $(MCP_SERVERS_DIR)/node_modules .pytest_cache .ruff_cache .mypy_cache build dist
