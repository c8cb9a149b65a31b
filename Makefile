# `make run` runs Warden's demo on the embedded defaults (the service, and the reference hybrid
# stack sending it traffic); `make test` runs the whole test suite.
# Both create the virtual environment .venv on first use.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install sdk-wheels run test lint bench lock clean

install: $(STAMP)

$(STAMP): pyproject.toml constraints.txt collectors/pyproject.toml policies/pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[dev]'
	$(MAKE) sdk-wheels
	touch $(STAMP)

# The SDK's own distributions and every wheel they need, pinned by constraints.txt: a test
# installs the SDK from them, offline, into a fresh virtual environment. setuptools builds in
# the source folders, so its leftovers there are removed before (stale files would end up in
# the wheels) and after.
SDK_WHEELS := $(VENV)/sdk-wheels
SDK_LEFTOVERS := collectors/build collectors/*.egg-info policies/build policies/*.egg-info

sdk-wheels:
	rm -rf $(SDK_WHEELS) $(SDK_LEFTOVERS)
	$(BIN)/python -m pip wheel --quiet -c constraints.txt --wheel-dir $(SDK_WHEELS) \
	  ./policies ./collectors
	rm -rf $(SDK_LEFTOVERS)

run: $(STAMP)
	$(BIN)/warden demo

test: $(STAMP)
	$(BIN)/pytest

lint: $(STAMP)
	$(BIN)/ruff check app collectors policies migrations examples tests bench
	$(BIN)/mypy app collectors policies

bench: $(STAMP)
	$(BIN)/python bench/ingest.py
	$(BIN)/python bench/sdk_overhead.py

# Re-pin constraints.txt to what is installed now (after a change to pyproject.toml).
lock: $(STAMP)
	{ sed -n '1,2p' constraints.txt; $(BIN)/pip freeze --exclude-editable \
	  | sed 's/^torch==\(.*\)+cpu$$/torch==\1/'; } > constraints.tmp && mv constraints.tmp constraints.txt

clean:
	rm -rf $(VENV) .warden .pytest_cache .mypy_cache .ruff_cache
