# glint: `make run` serves http://127.0.0.1:8080 on a local stack; `make test` runs the suite.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: setup run stop test lint bench clean createsuperuser

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

# make createsuperuser USERNAME=ana EMAIL=ana@example.com (password asked, or GLINT_SUPERUSER_PASSWORD)
createsuperuser: setup
	@test -n "$(USERNAME)" -a -n "$(EMAIL)" || { echo "usage: make createsuperuser USERNAME=... EMAIL=..."; exit 2; }
	$(BIN)/glint createsuperuser --username "$(USERNAME)" --email "$(EMAIL)"

test: setup
	$(BIN)/python -m pytest

lint: setup
	$(BIN)/lint-imports

bench: setup
	$(BIN)/glint bench --help

clean: stop
	rm -rf .glint $(VENV)
