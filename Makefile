# Two entry points, each self-contained on a fresh machine with Python 3.10+:
#   make demo   set up .venv and run the main job
#   make paper  set up .venv and run the paper's experiments at CPU scale (runs/paper/report.md)
#   make test   set up .venv and run the test suite but the slow end-to-end runs (what .ci/run calls, then test-slow)
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
SHARED ?= ../shared/data/lmlm-annotated
CORPORA = $(filter-out %database.json,$(wildcard $(SHARED)/*.json))

.PHONY: demo wiki paper real-data test test-slow setup clean

setup: $(VENV)/.installed

# torch is pinned here (the CPU build); the package itself only asks for a range.
$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e '.[dev]'
	touch $@

demo: setup
	$(BIN)/lmlm demo --out runs/demo

# LMLM vs Standard on the wiki world, at relation noise 0 and at the measured noisy default (README, Synthetic world)
wiki: setup
	$(BIN)/lmlm demo --profile wiki --out runs/wiki

# every experiment of the paper; a rerun skips the stages already done (delete runs/paper to start over)
paper: setup
	$(BIN)/lmlm experiment paper --out runs/paper

# the real data in ../shared: markup report and a knowledge base
real-data: setup
	$(BIN)/lmlm markup check $(CORPORA)
	$(BIN)/lmlm kb build $(wildcard $(SHARED)/*.json) --out runs/real-kb.sqlite
	$(BIN)/lmlm kb query runs/real-kb.sqlite --entity "Beyonce Knowles" --relation "place of birth"

# the unit and integration layers; the end-to-end runs marked slow are their own target (README, Tests)
test: setup
	$(BIN)/python -m pytest -q -m "not slow"

test-slow: setup
	$(BIN)/python -m pytest -q -m slow

clean:
	rm -rf $(VENV) build src/*.egg-info .pytest_cache .hypothesis
