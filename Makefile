# Two commands do all the set-up on a fresh machine:
#   make demo   -> installs, then runs the whole pipeline on the built-in Last.fm-2k data
#   make test   -> installs, then runs the test suite
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: install demo test test-fast lint bench clean

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# The CPU wheel of torch first: anything unpinned would pull the multi-GB CUDA build.
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e '.[dev,onnx,serve,ray]'
	# musicnn's metadata pins tensorflow/numpy versions impossible on 3.11; we only need its weights.
	$(PY) -m pip install -q --no-deps musicnn==0.1.0
	bash scripts/install-chromium.sh
	touch $@

install: $(VENV)/.installed

demo: install
	$(VENV)/bin/psrq run

test: install
	# pytest exits 5 when it collects no tests: not a failure of the code under test.
	$(PY) -m pytest; rc=$$?; [ $$rc -eq 5 ] && echo 'no tests collected' && rc=0; exit $$rc

test-fast: install
	$(PY) -m pytest -m "not slow"

LINT_PATHS := src tests benchmarks

lint: install
	$(VENV)/bin/ruff check $(LINT_PATHS)
	$(VENV)/bin/ruff format --check $(LINT_PATHS)

bench: install
	$(PY) benchmarks/run_all.py

clean:
	rm -rf $(VENV) .psrq-cache runs
