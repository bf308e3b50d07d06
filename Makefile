# orchestrator: `make help` lists the targets.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
ORCH := $(VENV)/bin/orchestrator
PYTEST_ARGS ?=
PURE_PYTEST_ARGS ?= tests/unit

.DEFAULT_GOAL := help
.PHONY: help venv run test promtool graphviz unit kafka-up kafka-down kafka-status bench clean

help: ## list the targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-13s %s\n", $$1, $$2}'

# The install and `run` are orchestrator/admin/makerun.py, run with $(PYTHON) before the venv exists:
# a step per line, the stamp touched only after a complete install, and for `run` Ctrl-C at any
# moment (install, broker start, demo) as a clean stop, exit 0.
# The install compiles the hot path (setup.py, orchestrator/compiled.py): it is redone when one of
# those sources changes too. The list is makerun's, which `make run` checks the same way.
INSTALL_INPUTS := $(shell $(PYTHON) -c 'from orchestrator.admin.makerun import install_inputs; print(*install_inputs())')
$(VENV)/.installed: pyproject.toml $(INSTALL_INPUTS)
	@$(PYTHON) -m orchestrator.admin.makerun install --venv $(VENV)

venv: $(VENV)/.installed ## create .venv and install the package with its test dependencies

run: ## local Kafka + worker + example journeys + demo traffic, with a live progress line (Ctrl-C stops all)
	@$(PYTHON) -m orchestrator.admin.makerun run --venv $(VENV) -- $(DEMO_ARGS)

test: venv promtool graphviz ## unit, repository and integration tests against a real local Kafka (started and stopped here)
	@started=0; \
	if [ -z "$$ORCH_BOOTSTRAP" ] && ! $(ORCH) kafka status | grep -q '"running": true'; then \
	  $(ORCH) kafka up || exit 1; started=1; \
	fi; \
	$(PY) -m pytest $(PYTEST_ARGS); rc=$$?; \
	if [ $$started = 1 ]; then $(ORCH) kafka down; fi; \
	if [ $$rc = 0 ] && $(PY) -c 'import sys, orchestrator.compiled as c; sys.exit(c.BUILD != "compiled")'; then \
	  echo "the unit tests again, on the plain-Python build (ORCH_PURE_PYTHON=1)"; \
	  ORCH_PURE_PYTHON=1 $(PY) -m pytest -q -m 'not integration' $(PURE_PYTEST_ARGS); rc=$$?; \
	fi; \
	exit $$rc

promtool: ## install promtool (Debian package prometheus, no recommends; its service stays off) if missing
	@command -v promtool >/dev/null 2>&1 || { \
	  echo "installing promtool (Debian package prometheus, without recommends)"; \
	  apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >/dev/null && \
	  if [ -d /run/systemd/system ]; then systemctl disable --now prometheus.service >/dev/null 2>&1 || true; fi; \
	} || { echo "could not install promtool: run apt-get install --no-install-recommends prometheus as root" >&2; exit 1; }

graphviz: ## install Graphviz's dot (Debian package graphviz, no recommends) if missing: journeys graph --format svg|png
	@command -v dot >/dev/null 2>&1 || { \
	  echo "installing dot (Debian package graphviz, without recommends)"; \
	  apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends graphviz >/dev/null; \
	} || { echo "could not install dot: run apt-get install --no-install-recommends graphviz as root" >&2; exit 1; }

unit: venv promtool graphviz ## only the tests that need no Kafka
	$(PY) -m pytest -m 'not integration' $(PYTEST_ARGS)

.PHONY: chaos
chaos: venv ## fault suite on its own 3-broker cluster (ports 19092-19097): kills, restarts, scaling, bad input (~10 min)
	$(PY) -m tests.chaos.run $(CHAOS_ARGS)

$(VENV)/.bench-installed: $(VENV)/.installed pyproject.toml
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[test,bench]'
	@touch $@

bench: venv $(VENV)/.bench-installed ## load benchmark (ceiling, Quix Streams apps, naive Faust, engine, pure core, 1/2/4 workers) -> benchmarks/results/
	@started=0; \
	if [ -z "$$ORCH_BOOTSTRAP" ] && ! $(ORCH) kafka status | grep -q '"running": true'; then \
	  $(ORCH) kafka up || exit 1; started=1; \
	fi; \
	$(PY) -m benchmarks.load $(BENCH_ARGS); rc=$$?; \
	if [ $$started = 1 ]; then $(ORCH) kafka down; fi; \
	exit $$rc

# `make soak SOAK_ARGS="--minutes 3 --interval-s 20 --warmup-minutes 1 --rate 1000"`: a quick check,
# nothing written (the default arguments write benchmarks/results/soak.json and soak.md).
SOAK_ARGS ?= --write
.PHONY: soak
soak: venv ## one worker, 3,000 events/s for 30 min: does its cost per event grow? -> benchmarks/results/soak.md (SOAK_ARGS; needs a broker)
	$(PY) -m benchmarks.load soak $(SOAK_ARGS)

kafka-up: venv ## start the local single-node Kafka (KRaft), fetched from Maven Central on first use
	$(ORCH) kafka up

kafka-down: venv ## stop the local Kafka
	$(ORCH) kafka down

kafka-status: venv ## is the local Kafka running?
	$(ORCH) kafka status

clean: ## remove the venv, local broker data and worker state
	-$(ORCH) kafka down 2>/dev/null
	rm -rf $(VENV) .orch *.egg-info
