# Set-up and everyday commands. `make run` and `make test` each build the virtual
# environment on first use (torch and torchvision come from the local wheel cache).
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.realface-installed

.PHONY: run test lint format typecheck clean-venv browser

# The web page's browser tests drive Debian's Chromium (never a downloaded browser build).
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  echo "installing Debian's chromium for the browser tests"; \
	  apt-get install -y -qq chromium >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq chromium; }; }

$(STAMP): pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.14.1 torchvision==0.29.1
	$(PY) -m pip install -q -e '.[dev,ui]'
	touch $(STAMP)

run: $(STAMP)
	$(VENV)/bin/realface apply examples/avatar.jpg -o out/example --coarse-to-fine --sheet

test: $(STAMP) browser
	$(VENV)/bin/ruff check src tests benchmarks
	$(VENV)/bin/ruff format --check src tests benchmarks
	$(VENV)/bin/mypy
	$(PY) -m pytest -q

# Static type check of the package (configured in pyproject.toml; also run by `test`).
typecheck: $(STAMP)
	$(VENV)/bin/mypy

lint: $(STAMP)
	$(VENV)/bin/ruff check --fix src tests benchmarks
	$(VENV)/bin/ruff format src tests benchmarks

clean-venv:
	rm -rf $(VENV)
