# Two commands do everything on a fresh machine: `make demo` and `make test`.
# Installs use the lock of the tested environment (requirements-lock.txt): every fresh
# machine gets exactly the versions CI passed with. `make test-latest` runs the same suite
# against the newest versions pyproject.toml allows; `make lock` refreshes the lock.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-dev
LOCK := requirements-lock.txt
REFS := requirements-reference.txt
TORCH := torch==2.13.0
LATEST := .venv-latest

.PHONY: demo test test-latest lint install lock reference clean

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

# the CPU wheel first, so that no dependency pulls a CUDA build of torch
$(STAMP): pyproject.toml $(LOCK) $(REFS) | $(BIN)/python
	$(BIN)/pip install -q $(TORCH)
	$(BIN)/pip install -q -c $(LOCK) -e ".[dev,ray]"
	$(BIN)/pip install -q --no-deps -r $(REFS)
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/unlearnkit demo --out demo-out --overwrite

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks examples docs
	$(BIN)/ruff format --check src tests benchmarks examples docs

test: lint
	$(BIN)/python docs/gen_reference.py --check
	$(BIN)/python -m pytest tests -p no:cacheprovider

# regenerate the API reference (docs/reference/) from the docstrings
reference: $(STAMP)
	$(BIN)/python docs/gen_reference.py

# the same lint and suite against the newest allowed versions, without the lock (drift on purpose);
# torch stays at $(TORCH) (the CPU wheel): `make test-latest TORCH=torch==2.14.1` tries another
test-latest:
	rm -rf $(LATEST)
	$(PY) -m venv $(LATEST)
	$(LATEST)/bin/pip install -q --upgrade pip
	$(LATEST)/bin/pip install -q $(TORCH)
	echo "$(TORCH)" > $(LATEST)/torch-pin.txt
	$(LATEST)/bin/pip install -q --upgrade --upgrade-strategy eager -c $(LATEST)/torch-pin.txt -e ".[dev,ray]"
	$(LATEST)/bin/pip install -q --no-deps -r $(REFS)
	$(LATEST)/bin/pip freeze --exclude-editable > $(LATEST)/versions.txt
	$(LATEST)/bin/ruff check src tests benchmarks examples docs
	$(LATEST)/bin/ruff format --check src tests benchmarks examples docs
	$(LATEST)/bin/python docs/gen_reference.py --check
	$(LATEST)/bin/python -m pytest tests -p no:cacheprovider

# regenerate the lock from pyproject.toml's ranges (pip-tools); commit the result
lock: | $(BIN)/python
	$(BIN)/pip install -q pip-tools
	echo "$(TORCH)" > $(VENV)/torch-pin.txt
	$(BIN)/pip-compile --quiet --upgrade --strip-extras --extra dev --extra ray -c $(VENV)/torch-pin.txt \
		--no-emit-find-links --no-emit-index-url --no-emit-trusted-host \
		--output-file $(LOCK) pyproject.toml
	sed -i -E 's/^(torch==[0-9.]+)\+[a-z0-9]+/\1/' $(LOCK)

clean:
	rm -rf $(VENV) $(LATEST) demo-out .pytest_cache
