# One command per chore; CI calls the same ones (.ci/run -> make test).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
SRC    := src tests bench examples tools

.PHONY: install lint format typecheck test test-fast test-loaded test-slow test-slurm test-dask test-browser test-package docs bench scale demo clean

# Installs go through uv (from PyPI, into the virtualenv) where it can be had, else pip.
UV_INSTALL = ($(BIN)/python -m pip install -q --disable-pip-version-check uv \
	  && $(BIN)/uv pip install -q --python $(BIN)/python -e '.[$(1)]') \
	  || $(BIN)/python -m pip install -q --disable-pip-version-check -e '.[$(1)]'

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@$(call UV_INSTALL,dev)
	@touch $(STAMP)

install: $(STAMP)

lint: install
	$(BIN)/ruff check $(SRC)
	$(BIN)/ruff format --check $(SRC)
	$(BIN)/lint-imports --no-cache

format: install
	$(BIN)/ruff check --fix $(SRC)
	$(BIN)/ruff format $(SRC)

typecheck: install
	$(BIN)/mypy

# Every step below in turn (lint, typecheck, the fast suite, the fast suite again under load,
# the slow suites (crash/chaos), the engine suites: a real single-node Slurm, set up by
# .ci/setup-slurm.sh as root, and real Dask; the browser). A failing step does not stop the
# others; .ci/suites prints a summary of all of them and exits 1 if any failed.
test:
	@MAKE="$(MAKE)" .ci/suites

FAST := not slow and not slurm and not dask

test-fast: install
	$(BIN)/pytest -m "$(FAST)"

# The fast suite once more with every core kept busy by CPU hogs (stopped when it ends,
# whatever happens): a test that passes only on an idle machine fails here.
test-loaded: install
	.ci/loaded $(BIN)/pytest -m "$(FAST)"

test-slow: install
	$(BIN)/pytest -m "slow and not slurm and not dask and not browser"

test-slurm: install
	$(BIN)/pytest -m slurm

test-dask: install
	$(BIN)/pytest -m "dask and not slurm"

# The dashboard in a real browser (Debian's Chromium, installed with apt-get when missing).
test-browser: install
	$(BIN)/pytest -m browser

# The wheel as a user gets it: built, installed in fresh virtualenvs, `legato demo` run from it.
test-package: install
	.ci/package-smoke

# The documentation site (mkdocs-material, strict: a broken link, anchor or docstring
# reference fails the build) into site/, with the reference pages generated from the code.
docs: install
	$(BIN)/python tools/docs_reference.py
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict

bench: install
	$(BIN)/python bench/run.py $(BENCH_ARGS)
	$(BIN)/python bench/claims.py
	$(BIN)/python bench/remote.py
	$(BIN)/python bench/long_polls.py
	$(BIN)/python bench/cold_start.py
	$(BIN)/python bench/fanout.py

# 10,000 recordings through the 7-step pipeline shape (70,000 task runs), memory sampled.
scale: install
	$(BIN)/python bench/scale.py --items 10000 --mode embedded
	$(BIN)/python bench/scale.py --items $(or $(SCALE_SERVER_ITEMS),10000) --mode server

# Only what the demo needs (the `demo` extra), not the dev toolchain: seconds, not minutes.
DEMO_STAMP := $(VENV)/.demo-stamp

$(DEMO_STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@$(call UV_INSTALL,demo)
	@touch $(DEMO_STAMP)

demo: $(DEMO_STAMP)
	$(BIN)/legato demo $(DEMO_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache build dist site docs/reference
