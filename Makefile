# The README's two commands: `make demo` and `make test`. Both create the virtual environment
# on first use and (re)install the package whenever pyproject.toml changes.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
EXTRAS ?= dev

.PHONY: demo test lint typecheck install clean bench validate headline paper-figures paper check-published

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[$(EXTRAS)]"
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/fi-sim run experiments/demo.toml --out runs/demo

# ruff (lint) and mypy (types, the whole package; settings in pyproject.toml) run before the tests
lint: $(STAMP)
	$(BIN)/ruff check fi_sim tests experiments benchmarks

typecheck: $(STAMP)
	$(BIN)/mypy

# The tests run in one worker per core (at most 4; pytest-xdist), a test file per worker: most of their time is
# XLA compiling and subprocesses starting, which one process leaves single-threaded.
test: lint typecheck
	$(BIN)/python -m pytest -q -n auto --maxprocesses 4 --dist loadfile

# The engine benchmark against a Python loop and three PyTorch peers, interleaved (about 20 minutes on 2 shared
# CPU cores, torch.compile included): prints the table, writes benchmarks/results.json (benchmarks/README.md).
# torch is a benchmark-only dependency, pinned (its CPU wheel); it is never a dependency of fi_sim.
bench: $(STAMP)
	$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/python -m pip install --quiet "torch==2.13.0"
	$(BIN)/python -m benchmarks.run --out benchmarks

# The validation suite: every finding's check at small size (FULL=1: the study files' full size).
validate: $(STAMP)
	$(BIN)/python experiments/validate.py $(if $(FULL),--full,)

# The headline experiment: one frozen dataset replayed under every other factor (FULL=1: full size).
headline: $(STAMP)
	$(BIN)/python experiments/headline.py $(if $(FULL),--full,)

# Every figure and number of the paper, from the finished runs (runs them where missing).
paper-figures: $(STAMP)
	$(BIN)/python experiments/paper_figures.py

# Rerun the demo from scratch and fail if the README's or the paper's demo numbers differ from it (a few minutes).
check-published: $(STAMP)
	$(BIN)/python experiments/check_published.py

paper: paper-figures
	cd paper && (command -v latexmk >/dev/null && latexmk -pdf -interaction=nonstopmode fi_sim.tex \
	  || (pdflatex -interaction=nonstopmode fi_sim.tex && bibtex fi_sim && pdflatex -interaction=nonstopmode fi_sim.tex \
	      && pdflatex -interaction=nonstopmode fi_sim.tex)) \
	  || echo "make paper: no LaTeX here (latexmk or pdflatex); the figures and numbers are in paper/generated/"

clean:
	rm -rf $(VENV) runs
