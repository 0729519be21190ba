# Two commands do all the set-up on a fresh machine: `make demo` and `make test`.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.geo3d-installed
OUT ?= out

.PHONY: setup test test-all demo clean

setup: $(STAMP)

$(STAMP): pyproject.toml scripts/install_system_deps.sh
	bash scripts/install_system_deps.sh
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	# torch first and pinned, so the CPU wheel is used rather than the CUDA build.
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e ".[dev]"
	touch $(STAMP)

test: setup
	$(PY) -m pytest

test-all: setup
	$(PY) -m pytest -m ""

# The main job: the quick benchmark suite (10-20 min on 2 cores); it prints the report path.
demo: setup
	$(VENV)/bin/geo3d bench --suite quick --out $(OUT)/bench-quick

clean:
	rm -rf $(VENV) $(OUT) .pytest_cache .hypothesis
