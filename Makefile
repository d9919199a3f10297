# Two commands for a newcomer: `make run` and `make test`. Both create .venv and install what they need.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
PYTEST_ARGS ?=

.DEFAULT_GOAL := help
.PHONY: help run test lint format system-deps clean

help:
	@echo "make run          serve the bundled models on http://\$${CATDOG_HOST:-127.0.0.1}:\$${CATDOG_PORT:-8000}"
	@echo "make test         the whole test suite (installs the dev, convert and loadtest extras)"
	@echo "make lint         ruff + mypy"
	@echo "make system-deps  Debian packages the container/monitoring/browser tests use (root)"

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

# One stamp per install flavour: editing pyproject.toml reinstalls.
$(VENV)/.stamp-run: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e .
	touch $@

$(VENV)/.stamp-test: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[dev,convert,loadtest]'
	touch $@ $(VENV)/.stamp-run

run: $(VENV)/.stamp-run
	$(BIN)/catdog serve

test: $(VENV)/.stamp-test
	@# pytest exits 5 when it collects nothing: that is not a failure of the suite.
	$(BIN)/pytest $(PYTEST_ARGS); rc=$$?; if [ $$rc -eq 5 ]; then echo "no tests collected"; rc=0; fi; exit $$rc

lint: $(VENV)/.stamp-test
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

format: $(VENV)/.stamp-test
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

system-deps:
	bash scripts/install-system-deps.sh

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache build *.egg-info

# Performance (docs/benchmarks.md). Not run in CI. BENCH_ARGS e.g. "--model-dir /path --seconds 5 --repeat 3".
BENCH_ARGS ?=
LOADTEST_PROFILE ?= smoke
LOADTEST_HOST ?= http://127.0.0.1:8000
.PHONY: bench loadtest
bench: $(VENV)/.stamp-test
	$(BIN)/python -m loadtest bench -- $(BENCH_ARGS)

loadtest: $(VENV)/.stamp-test
	$(BIN)/python -m loadtest run --profile $(LOADTEST_PROFILE) --host $(LOADTEST_HOST)

# Not in CI: 600 clients posting JPEGs at one server core (large, small, mixed, two models one hot), with the
# saturated throughput measured in the same run (docs/benchmarks.md, "Overload"). About 2 minutes.
# OVERLOAD_ARGS e.g. "--variants large --seconds 5", or "--checkout /tmp/old --label before" for a before/after.
OVERLOAD_ARGS ?=
.PHONY: overload
overload: $(VENV)/.stamp-test
	$(BIN)/python -m loadtest.overload --expect-continue --label expect-continue $(OVERLOAD_ARGS)
	$(BIN)/python -m loadtest.overload --label whole-body $(OVERLOAD_ARGS)

# Not in CI: a few minutes of steady load on a real server; reports errors and RSS growth (docs/operations.md).
SOAK_ARGS ?=
.PHONY: soak
soak: $(VENV)/.stamp-test
	$(BIN)/python scripts/soak.py $(SOAK_ARGS)

# Not in CI: catdog against KServe, LitServe, Triton (PyTriton), BentoML, MLServer and Ray Serve on the same core
# (docs/benchmarks.md, "catdog against its peers"). Installs each peer's venv under .peers/ on first use (network).
# PEERS_ARGS e.g. "--smoke", "--work card" (the peers as users set them up, only), or
# "--peers kserve,litserve --sizes small --seconds 5 --repeat 1".
PEERS_ARGS ?=
.PHONY: bench-peers
bench-peers: $(VENV)/.stamp-test
	$(BIN)/python -m loadtest.peers $(PEERS_ARGS)

# Not in CI: the choice of autoscaling signal (docs/benchmarks.md, "Autoscaling"). `make autoscale` replays the HPA over
# the measured rows in loadtest/autoscale/measured-rows.json (seconds) and redraws docs/images/autoscale-*.png;
# AUTOSCALE_ARGS=all measures a real catdog anew first (about 6 minutes, two free cores).
AUTOSCALE_ARGS ?= replay --rows loadtest/autoscale/measured-rows.json
.PHONY: autoscale cold-start
autoscale: $(VENV)/.stamp-test
	$(BIN)/python -m loadtest autoscale $(AUTOSCALE_ARGS)

# Not in CI: start to ready and to the first answer on one core, 5 runs (docs/benchmarks.md, "Cold start").
cold-start: $(VENV)/.stamp-test
	$(BIN)/python -m loadtest cold-start

# Not in CI: Triton's perf_analyzer (scripts/install-perf-analyzer.sh) in its default mode against catdog and Triton
# (PyTriton, from bench-peers' venv) on the same core (docs/benchmarks.md, "Triton's perf_analyzer").
# TRITON_PERF_ARGS e.g. "--servers catdog --protocols grpc --repeat 1".
TRITON_PERF_ARGS ?=
.PHONY: bench-triton
bench-triton: $(VENV)/.stamp-test
	bash scripts/install-perf-analyzer.sh
	$(BIN)/python -m loadtest.peers --peers pytriton --install-only
	$(BIN)/python -m loadtest.triton_perf $(TRITON_PERF_ARGS)
