# The two commands a reader needs: `make book` and `make test`. Everything installs itself into .venv.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
export PATH := $(abspath $(BIN)):$(PATH)
# (No MPLBACKEND here: kernels must keep matplotlib's inline backend, or figures vanish from outputs.)
export PYDEVD_DISABLE_FILE_VALIDATION := 1
# glibc's malloc keeps freed blocks (up to 1 GiB) in the process: evaluation loops that allocate the
# same large temporaries at every step no longer page-fault them in again each time (up to half of an
# IWAE evaluation's time went to the kernel; see the IWAE table on the benchmarks page). Kernels, tests
# and benchmarks inherit it. The same value as benchmarks.common.GLIBC_MALLOC_TUNABLES (tested).
GLIBC_TUNABLES ?= glibc.malloc.trim_threshold=1073741824:glibc.malloc.mmap_threshold=1073741824
export GLIBC_TUNABLES

NOTEBOOKS := $(sort $(wildcard notebooks/*.ipynb))
VENDOR := _vendor
# Notebooks executed side by side by `make test` (one kernel each, one torch thread each).
NBVAL_WORKERS ?= 2

.PHONY: install assets book test unit nbval browser lint lab serve bench execute clean

install: $(VENV)/.installed assets

$(VENV)/.installed: requirements.txt pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements.txt
	$(BIN)/python -m pip install --quiet --no-deps -e .
	touch $@

node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund --ignore-scripts
	touch $@

# MathJax, require.js and the Jupyter widgets HTML manager, served by the book itself (no CDN).
assets: $(VENDOR)/.copied

$(VENDOR)/.copied: node_modules/.installed
	rm -rf $(VENDOR) && mkdir -p $(VENDOR)/requirejs
	cp -r node_modules/mathjax/es5 $(VENDOR)/mathjax
	cp node_modules/requirejs/require.js $(VENDOR)/requirejs/
	cp -r node_modules/@jupyter-widgets/html-manager/dist $(VENDOR)/html-manager
	rm -f $(VENDOR)/html-manager/*.map
	touch $@

# Builds the HTML into _build/html from the notebooks and the outputs committed with them (no
# execution: `make execute` recomputes the outputs, `make test` proves them reproducible). Warnings
# are errors.
# REPO_URL=https://host/owner/name adds repository, issue and launch buttons; unset, there are none.
book: install
	BOOK_REPOSITORY_URL=$(REPO_URL) $(BIN)/jupyter-book build . --path-output . -W -n --keep-going

# Unit tests, strict nbval over every notebook (each executed once, in a fresh kernel, every output
# compared with the committed one), then the browser tests of the built book.
test: book
	$(BIN)/python -m pytest tests -m "not browser"
	$(BIN)/python -m pytest --nbval --nbval-sanitize-with .nbval_sanitize.cfg --nbval-cell-timeout=1800 -p no:cacheprovider \
	  -n $(NBVAL_WORKERS) --dist loadfile --durations=0 notebooks
	$(BIN)/python -m pytest tests -m browser
	$(BIN)/ruff check .

unit: install
	$(BIN)/python -m pytest tests -m "not browser"

lint: install
	$(BIN)/ruff check .

# Re-execute every notebook in a fresh kernel and store its outputs and the results of the {eval}
# numbers in its prose (run after editing a chapter, then `make book`; a single chapter:
# `make execute NOTEBOOKS=notebooks/04_training.ipynb`). Same as `jupyter nbconvert --execute
# --inplace`, plus the prose's inline expressions (scripts/inline_numbers.py).
execute: install
	for nb in $(NOTEBOOKS); do \
	  $(BIN)/python scripts/inline_numbers.py execute "$$nb" || exit 1; \
	done

# JupyterLab with jupyterlab-myst (requirements.txt): the chapters' MyST (exercises, admonitions, math,
# cross-references, {eval} numbers) renders as prose; a citation shows its key (no bibliography in Lab).
# (Root, as in a container, needs --allow-root.)
lab: install
	$(BIN)/jupyter lab $(if $(filter 0,$(shell id -u)),--allow-root) notebooks

serve: book
	$(BIN)/python -m http.server --bind 127.0.0.1 --directory _build/html 8000

bench: install
	$(BIN)/python -m benchmarks

clean:
	rm -rf _build $(VENDOR)
