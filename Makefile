# radloop: the two commands a newcomer needs are `make demo` and `make test`.
# Both build .venv/ (and the test command Label Studio's own venv) from scratch when missing.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
LS_VENV ?= $(HOME)/.cache/radloop/label-studio-venv
LS_VERSION ?= 1.23.2
DATA ?= ../shared/data
WORKSPACE ?= radloop-workspace
PYTEST_ARGS ?=

export HF_HUB_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: venv labelstudio browser demo app test test-fast test-postgres clean

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	# pip's output is filtered of this machine's index notices; pipefail keeps a failed install failing make
	set -o pipefail; $(BIN)/pip install -q --upgrade pip 2>&1 | { grep -v 'WARNING: Location' || true; }
	# torch/torchvision first, exactly the builds that lie on this machine's disk
	set -o pipefail; $(BIN)/pip install -q torch==2.14.1 torchvision==0.29.1 2>&1 | { grep -v 'WARNING: Location' || true; }
	set -o pipefail; $(BIN)/pip install -q -e '.[all,test]' 2>&1 | { grep -v 'WARNING: Location' || true; }
	# medspacy pins spacy<3.8 on Python 3.11 (thinc built for numpy 1.x) while label-studio-sdk
	# needs numpy>=2.2: spaCy 3.8 works with medspacy (pip warns about the pin, harmless).
	# Second step, after the resolver is done: spaCy 3.8, numpy 2 and the current label-studio-sdk.
	set -o pipefail; $(BIN)/pip install -q 'spacy>=3.8,<3.9' 'numpy>=2.2' 'label-studio-sdk>=2.1' 2>&1 | \
	  { grep -v "WARNING: Location\|dependency conflicts\|requires spacy<3.8\|resolver does not" || true; }
	$(BIN)/python -c 'import ssl, radloop.core, medspacy, timm, faiss, label_studio_sdk; ssl.create_default_context()'
	@touch $@

# Label Studio lives in its own venv (it pins its own Django/numpy stack); cached between runs.
labelstudio: $(LS_VENV)/.installed-$(LS_VERSION)

$(LS_VENV)/.installed-$(LS_VERSION):
	@mkdir -p $(dir $(LS_VENV))
	@test -x $(LS_VENV)/bin/python || $(PYTHON) -m venv $(LS_VENV)
	$(LS_VENV)/bin/pip install -q --upgrade pip
	$(LS_VENV)/bin/pip install -q 'label-studio==$(LS_VERSION)'
	@touch $@

# Headless Chromium + driver for the Streamlit end-to-end test (Debian packages).
browser:
	@command -v chromium >/dev/null && command -v chromedriver >/dev/null || \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null)

demo: venv
	$(BIN)/radloop demo --data $(DATA) --workspace $(WORKSPACE)

# The Streamlit app on the demo's workspace (or WORKSPACE=...).
app: venv
	RADLOOP_WORKSPACE=$(WORKSPACE) $(BIN)/streamlit run app/main.py --server.headless true --server.address 127.0.0.1 \
	  --browser.gatherUsageStats false

# Each pass gets its own temporary folder (kept when it fails): pytest keeps only the newest three
# /tmp/pytest-of-$$USER/pytest-N folders, so another pytest session on the machine could otherwise delete a
# running pass's files (the PostgreSQL pass's data directory among them).
test: venv labelstudio browser
	@base=$$(mktemp -d -t radloop-tests-XXXXXX); \
	  RADLOOP_LS_VENV=$(LS_VENV) $(BIN)/python -m pytest --basetemp=$$base $(PYTEST_ARGS); status=$$?; \
	  if [ $$status -eq 0 ]; then rm -rf $$base; else echo "test files kept in $$base"; fi; exit $$status
	$(MAKE) --no-print-directory test-postgres

# The tests that use a workspace catalog again, each on a new database of a throwaway PostgreSQL server
# (the Label Studio integration tests included: the server keeps its own SQLite, radloop's catalog is PostgreSQL).
test-postgres: venv labelstudio
	@base=$$(mktemp -d -t radloop-tests-pg-XXXXXX); \
	  RADLOOP_TEST_DATABASE=postgres RADLOOP_LS_VENV=$(LS_VENV) \
	  $(BIN)/python -m pytest -m "catalog and not browser" --basetemp=$$base $(PYTEST_ARGS); status=$$?; \
	  if [ $$status -eq 0 ]; then rm -rf $$base; else echo "test files kept in $$base"; fi; exit $$status

# Unit tests only: no Label Studio, no browser.
test-fast: venv
	$(BIN)/python -m pytest -m "not labelstudio and not browser and not slow" $(PYTEST_ARGS)

# the workspace only when the demo made it (marker file): a real workspace at that path is never deleted
clean:
	rm -rf $(VENV) .pytest_cache
	@if test -f $(WORKSPACE)/.radloop-demo; then rm -rf $(WORKSPACE); \
	 elif test -e $(WORKSPACE); then echo "kept $(WORKSPACE): not made by the demo"; fi
