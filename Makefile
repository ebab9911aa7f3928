# Every target creates .venv and installs on first use, so each works on a fresh clone.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PY := $(BIN)/python
# NB=03_attention (or NB=A_engineering) limits sync/execute to one chapter.
NB ?=
# Chapters are NN_topic and appendices X_topic; tools/chapters.py is the one place that says so.
CHAPTER_PY = $(if $(NB),chapters/$(NB).py,$(shell $(PYTHON) tools/chapters.py py))
NBVAL := --nbval --nbval-current-env --nbval-cell-timeout 600 --nbval-sanitize-with chapters/sanitize.cfg
ROOT_FLAG := $(if $(filter 0,$(shell id -u)),--allow-root,)

.PHONY: install run test quick-base test-portable lab execute export check sync book book-test clean

$(VENV)/.installed: requirements.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q -r requirements.txt
	$(PY) -m pip install -q --no-deps -e .
	touch $@

$(VENV)/.installed-dev: $(VENV)/.installed requirements-dev.txt
	$(PY) -m pip install -q -r requirements-dev.txt
	touch $@

# Only ruff, at the version requirements-dev.txt pins: `make check` stays quick on a fresh clone.
$(VENV)/.installed-ruff: $(VENV)/.installed requirements-dev.txt
	$(PY) -m pip install -q "$$(grep -E '^ruff==' requirements-dev.txt)"
	touch $@

install: $(VENV)/.installed

## The main job: train the course model on The Verdict, save a checkpoint, print text.
run: $(VENV)/.installed
	$(PY) -m gpt2scratch run
	@echo "(the package is installed in $(VENV): 'source $(BIN)/activate' before calling python -m gpt2scratch yourself)"

## Everything: pairs, exporter and book checks, package tests, then every chapter under nbval (quick mode).
## The browser tests (pytest marker `browser`) need Chromium and a built book: `make book-test` runs them.
test: $(VENV)/.installed-dev
	$(MAKE) --no-print-directory check
	$(PY) -m pytest -q -m "not browser" tests
	$(MAKE) --no-print-directory quick-base
	GPT2SCRATCH_QUICK=1 $(PY) -m pytest -q -p no:cacheprovider $(NBVAL) chapters

## Chapters 7-10's pretrained base in quick mode (Appendix A.8), trained once before the chapters
## run so that none of them pays for it (cached in runs/, keyed by its recipe).
quick-base: $(VENV)/.installed
	GPT2SCRATCH_QUICK=1 $(PY) -c "from gpt2scratch.base_model import train_base; print('quick base:', train_base())"

## The chapters under nbval again, computing the way other CPUs do, so that an output whose digits
## depend on the machine fails here rather than on a reader's laptop. Each variant changes float
## bits without changing the math: one thread (another summation order in reductions and matmuls),
## then, on x86-64, ATen's AVX2 kernels with oneDNN and MKL held to AVX2 too (a laptop without
## AVX-512). Two pytest workers of one thread each keep it about as fast as the chapters in `make test`.
## The AVX2 variant keeps its own torch.compile cache: torch 2.13 reuses kernels compiled under
## AVX-512 when ATEN_CPU_CAPABILITY=avx2 is set, and they compute NaN (chapter 8's compiled decoder).
PORTABLE := "OMP_NUM_THREADS=1" \
  $(if $(filter x86_64 amd64 AMD64,$(shell uname -m)),"OMP_NUM_THREADS=1 ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2 MKL_CBWR=AVX2 TORCHINDUCTOR_CACHE_DIR=$(CURDIR)/runs/inductor-avx2")
test-portable: $(VENV)/.installed-dev quick-base
	for settings in $(PORTABLE); do \
	  echo "== every chapter under nbval with $$settings"; \
	  env $$settings GPT2SCRATCH_QUICK=1 $(PY) -m pytest -q -p no:cacheprovider -n 2 --dist loadfile $(NBVAL) chapters; \
	done

## Pairs agree, src/ is fresh, the house style holds (CONTRIBUTING.md), every number in the prose
## is in the outputs (tools/prose_numbers.py), ruff finds nothing in src/, tests/ and tools/
## (rules in pyproject.toml). Runs all five, then fails.
check: $(VENV)/.installed $(VENV)/.installed-ruff
	@status=0; \
	$(BIN)/ruff check src tests tools || status=1; \
	$(PY) tools/check_pairs.py || status=1; \
	$(PY) tools/export.py --check || status=1; \
	$(PY) tools/book_check.py || status=1; \
	$(PY) tools/prose_numbers.py || status=1; \
	exit $$status

export: $(VENV)/.installed
	$(PY) tools/export.py

## py:percent -> ipynb, keeping existing outputs (for edits made outside JupyterLab).
sync: $(VENV)/.installed
	for f in $(CHAPTER_PY); do $(BIN)/jupytext --quiet --to ipynb --update "$$f"; done

## Re-run chapters in place with the full settings; these outputs are what the book shows.
execute: $(VENV)/.installed
	$(MAKE) --no-print-directory sync export
	for f in $(CHAPTER_PY); do \
	  echo "executing $${f%.py}.ipynb"; \
	  env -u GPT2SCRATCH_QUICK $(BIN)/jupyter nbconvert --log-level WARN --to notebook --execute --inplace \
	    --ExecutePreprocessor.timeout=7200 --ExecutePreprocessor.kernel_name=python3 "$${f%.py}.ipynb"; \
	done
	$(MAKE) --no-print-directory export

## JupyterLab on 127.0.0.1 only, with a token (a random one unless LAB_TOKEN is set).
LAB_PORT ?= 8888
LAB_TOKEN ?=
lab: $(VENV)/.installed
	exec $(BIN)/jupyter lab --ip 127.0.0.1 --port $(LAB_PORT) --no-browser $(ROOT_FLAG) \
	  --notebook-dir . $(if $(LAB_TOKEN),--IdentityProvider.token=$(LAB_TOKEN))

book: $(VENV)/.installed-dev
	$(PY) tools/build_book.py

## Build the book, then open every page in headless Chromium (screenshots in _build/screenshots/).
book-test: $(VENV)/.installed-dev
	$(MAKE) --no-print-directory book
	$(PY) -m pytest -q -rs -p no:cacheprovider -m browser tests

clean:
	rm -rf $(VENV) _build _toc.yml .pytest_cache .hypothesis src/*.egg-info
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
