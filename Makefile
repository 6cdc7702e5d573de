# The two commands the README promises on a fresh machine:
#   make demo [SOURCE=<manifest/collection URL, JSON file, folder of images>] [MODEL=<hub id or dir>]   install, ingest, serve
#   make test                                                                          install, run all tests
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
SOURCE ?= https://iiif.io/api/cookbook/recipe/0009-book-1/manifest.json
PORT ?= 5000
DATA_DIR ?= msearch-data
PYTEST_ARGS ?=

.PHONY: setup setup-test system-deps demo test clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --upgrade pip wheel setuptools

# Python packages (torch pinned to 2.13.0 CPU in requirements.txt) and the viewers' npm packages
# (Clover is bundled with React into web/build/clover/ by esbuild: `npm run build`).
setup: $(BIN)/python
	$(BIN)/pip install -r requirements.txt
	$(BIN)/pip install --no-deps -e .
	cd web && npm ci --no-audit --no-fund && npm run build

# Debian packages the integration tests drive: PostgreSQL 15 server and headless Chromium.
system-deps:
	@if [ "$$(id -u)" = "0" ] && command -v apt-get >/dev/null; then \
	  need=""; \
	  [ -x /usr/lib/postgresql/15/bin/postgres ] || need="$$need postgresql-15"; \
	  [ -x /usr/bin/chromium ] || need="$$need chromium"; \
	  { [ -x /usr/lib/iipimage-server/iipsrv.fcgi ] && [ -x /usr/sbin/lighttpd ] && [ -x /usr/bin/vips ]; } || need="$$need iipimage-server lighttpd libvips-tools"; \
	  if [ -n "$$need" ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$need; fi; \
	fi

setup-test: setup system-deps
	$(BIN)/pip install -r requirements-test.txt

demo: setup
	MSEARCH_DATA_DIR=$(DATA_DIR) $(BIN)/msearch harvest $(SOURCE)
	MSEARCH_DATA_DIR=$(DATA_DIR) $(BIN)/msearch embed
	MSEARCH_DATA_DIR=$(DATA_DIR) $(BIN)/msearch index
	MSEARCH_DATA_DIR=$(DATA_DIR) $(BIN)/msearch serve --port $(PORT)

# Everything on SQLite, then every database-touching test again on a real PostgreSQL 15
# (a throw-away cluster made with initdb on 127.0.0.1 by the test fixtures, stopped at the end).
test: setup-test
	HF_HUB_OFFLINE=1 MSEARCH_TEST_DB=sqlite $(BIN)/python -m pytest $(PYTEST_ARGS)
	HF_HUB_OFFLINE=1 MSEARCH_TEST_DB=postgresql $(BIN)/python -m pytest -m db $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) web/node_modules .pytest_cache
