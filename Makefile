# lens-embed developer targets. `make install` sets up .venv; every other target uses it.
PY ?= .venv/bin/python
PIP ?= .venv/bin/pip
DATA ?= ../shared/data
OUTPUT ?= results

.PHONY: install test lint bench quickstart

install:
	test -d .venv || python3 -m venv .venv
	$(PIP) install -q --upgrade pip
	# torch first, pinned: 2.13.0 is the CPU build on disk here; an unpinned torch pulls CUDA wheels.
	$(PIP) install -q torch==2.13.0
	$(PIP) install -q -e ".[dev]"
	# air-benchmark declares pytrec-eval (a source build that downloads trec_eval); mteb's
	# pytrec-eval-terrier provides the same `pytrec_eval` module, so install it without deps.
	$(PIP) install -q --no-deps air-benchmark==0.1.0

test:
	$(PY) -m pytest -q tests

lint:
	$(PY) -m ruff check lens_embed eval tests

# ---- evaluation targets (issue 3) ----

# ---- training targets (issue 4) ----

# ---- benchmarks ----
