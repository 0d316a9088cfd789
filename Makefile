# Two commands on a fresh machine with Python 3.11: `make demo` and `make test`.
# Both create .venv on first use and install the pinned, tested versions of constraints.txt.

PY ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PIP := $(BIN)/python -m pip --disable-pip-version-check -q
DEMO := runs/demo
DEMO_STEPS ?= 1000
DEMO_TASK := --task sudoku --size 4 --set task.mode='"multi"'

.PHONY: test demo bench lint clean

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	# torch first, from the local CPU wheel: otherwise pyro-ppl's torch>=2.0 pulls a multi-GB CUDA build
	$(PIP) install "torch==2.13.0"
	$(PIP) install -c constraints.txt -e ".[dev]"
	touch $(STAMP)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# Tests run on every core (pytest-xdist; each module's tests stay on one worker, so module
# fixtures are built once): `make test WORKERS=0` runs them in this process.
WORKERS ?= auto
test: lint
	$(BIN)/python -m pytest -q $(if $(filter 0,$(WORKERS)),,-n $(WORKERS) --dist loadscope)

demo: $(STAMP)
	rm -rf $(DEMO)
	$(BIN)/gram data build --task nqueens --size 8 --out $(DEMO)/nqueens8
	$(BIN)/gram data build --task coloring --size 8 --num-train 700 --num-test 50 --out $(DEMO)/coloring8
	$(BIN)/gram data build --task sudoku --size 4 --out $(DEMO)/sudoku4
	$(BIN)/gram data build --task sudoku --size 6 --num-train 40 --num-test 10 --out $(DEMO)/sudoku6
	$(BIN)/gram data export $(DEMO)/nqueens8 --limit 5 > $(DEMO)/queens.txt
	@echo "--- 5 held-out 8-Queens puzzles, the number of completions of each, and one solution each:"
	@cat $(DEMO)/queens.txt
	$(BIN)/gram solve --task nqueens --size 8 --puzzles $(DEMO)/queens.txt --count
	$(BIN)/gram solve --task nqueens --size 8 --puzzles $(DEMO)/queens.txt > $(DEMO)/queens-solved.txt
	$(BIN)/gram verify --task nqueens --size 8 --puzzles $(DEMO)/queens.txt --solutions $(DEMO)/queens-solved.txt
	$(BIN)/gram data export $(DEMO)/sudoku6 --limit 5 > $(DEMO)/sudoku.txt
	$(BIN)/gram solve --task sudoku --size 6 --puzzles $(DEMO)/sudoku.txt > $(DEMO)/sudoku-solved.txt
	$(BIN)/gram verify --task sudoku --size 6 --puzzles $(DEMO)/sudoku.txt --solutions $(DEMO)/sudoku-solved.txt
	$(BIN)/gram solve --task coloring --size 10 --puzzles examples/puzzles/petersen.jsonl --count
	@echo "--- GRAM and the deterministic baseline, $(DEMO_STEPS) batches each (in parallel), on 4x4 Sudoku puzzles with 2-6 solutions:"
	$(BIN)/gram fit $(DEMO_TASK) --steps $(DEMO_STEPS) --quiet --out $(DEMO)/gram & g=$$!; \
	$(BIN)/gram fit $(DEMO_TASK) --steps $(DEMO_STEPS) --quiet --out $(DEMO)/deterministic --variant deterministic & d=$$!; \
	wait $$g && wait $$d
	$(BIN)/gram compare $(DEMO)/gram $(DEMO)/deterministic --num-samples 20
	@echo "--- test-time scaling of both runs: validity against depth, and a vote over N samples against width:"
	$(BIN)/python benchmarks/width_depth.py $(DEMO)/gram $(DEMO)/deterministic --samples 20 --puzzles 100 --out $(DEMO)/width-depth.png
	@echo "--- demo done: data sets and runs under $(DEMO)/"

bench: $(STAMP)
	mkdir -p runs
	$(BIN)/python benchmarks/tasks.py --json runs/bench-tasks.json
	$(BIN)/python benchmarks/training.py --json runs/bench-training.json
	$(BIN)/python benchmarks/sampling.py --json runs/bench-sampling.json
	$(BIN)/python benchmarks/scaling.py --json runs/bench-scaling.json

clean:
	rm -rf $(VENV) runs .pytest_cache .ruff_cache .hypothesis
