# glint: `make run` serves http://127.0.0.1:8080 on a local stack; `make test` runs the suite.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: setup run stop test lint bench backup restore clean

setup: $(VENV)/.installed

$(VENV)/.installed: setup.cfg pyproject.toml constraints.txt
	$(PYTHON) -c 'import sys; sys.exit("glint needs Python 3.11+") if sys.version_info < (3, 11) else None'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[dev]'
	touch $@

run: setup
	$(BIN)/glint stack up
	$(BIN)/glint migrate
	$(BIN)/glint serve

stop: setup
	$(BIN)/glint stack down

test: setup
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

clean: stop
	rm -rf .glint $(VENV)
