# glint: `make run` serves http://127.0.0.1:8080 on a local stack; `make test` runs the suite.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: setup run stop test lint bench backup restore clean createsuperuser web chromium constraints

setup: $(VENV)/.installed

$(VENV)/.installed: setup.cfg pyproject.toml constraints.txt
	$(PYTHON) -c 'import sys; sys.exit("glint needs Python 3.11+") if sys.version_info < (3, 11) else None'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[dev]'
	touch $@

run: setup web
	$(BIN)/glint stack up
	$(BIN)/glint migrate
	$(BIN)/glint serve

stop: setup
	$(BIN)/glint stack down

# make createsuperuser USERNAME=ana EMAIL=ana@example.com (password asked, or GLINT_SUPERUSER_PASSWORD)
createsuperuser: setup
	@test -n "$(USERNAME)" -a -n "$(EMAIL)" || { echo "usage: make createsuperuser USERNAME=... EMAIL=..."; exit 2; }
	$(BIN)/glint createsuperuser --username "$(USERNAME)" --email "$(EMAIL)"

test: setup web chromium
	$(BIN)/python -m pytest

lint: setup
	$(BIN)/lint-imports

# one archive of the local stack's PostgreSQL and S3 media: `make backup [OUT=file.tar]`
backup: setup
	$(BIN)/glint backup $(if $(OUT),--out $(OUT))

# into an empty stack: `make restore FILE=glint-backup-....tar [FORCE=1]`
restore: setup
	@test -n "$(FILE)" || { echo "usage: make restore FILE=glint-backup-....tar [FORCE=1]"; exit 2; }
	$(BIN)/glint restore $(FILE) $(if $(FORCE),--force)

bench: setup
	$(BIN)/glint bench --help

# Regenerate constraints.txt: resolve setup.cfg's requirements afresh from the package index in a
# throw-away venv and pin what was installed, by name and version only.
constraints:
	rm -rf .venv-constraints
	$(PYTHON) -m venv .venv-constraints
	.venv-constraints/bin/python -m pip install --quiet --upgrade pip
	.venv-constraints/bin/python -m pip install --quiet '.[dev]'
	.venv-constraints/bin/python -m pip freeze --exclude-editable --exclude glint --exclude pip | LC_ALL=C sort -f > constraints.txt
	rm -rf .venv-constraints build *.egg-info

clean: stop
	rm -rf .glint $(VENV)

# The web client (web/, served at /): built with npm when Node.js 18+ is here and a source is
# newer than web/dist; without Node.js the API still runs and this says so.
WEB_SOURCES := $(shell find web/src web/public -type f 2>/dev/null) web/index.html web/package.json web/package-lock.json web/vite.config.ts

web: web/dist/index.html

web/dist/index.html: $(WEB_SOURCES)
	@if node -e 'process.exit(parseInt(process.versions.node) < 18 ? 1 : 0)' 2>/dev/null; then \
		cd web && npm ci --no-audit --no-fund --loglevel=error && npm run build --silent && touch dist/index.html; \
	else echo "glint: Node.js 18 or newer is not installed, so the web client at / is not built (the API still runs)."; fi

# The browser tests (tests/web/) drive Debian's Chromium: installed here when missing, as root.
chromium:
	@command -v chromium >/dev/null || { [ "$$(id -u)" = 0 ] && apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium fonts-noto-color-emoji >/dev/null; } || \
		echo "glint: could not install chromium; the browser tests will be skipped"
