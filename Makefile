# glint: `make run` serves http://127.0.0.1:8080 on a local stack; `make test` runs the suite.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: setup run stop test lint bench clean constraints

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
