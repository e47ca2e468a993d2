# The README's quick start: `make run` (set up + default experiment), `make test` (the test suite).
VENV ?= .venv
PYTHON ?= python3
CORES ?= all
export PATH := $(abspath $(VENV))/bin:$(PATH)

.PHONY: setup run test bench lint clean replicate experiments clean-experiments

PROGRESS_LOGGER := $(wildcard tools/progress/pyproject.toml tools/progress/snakemake_logger_plugin_optbench/*.py)

# The pins, then the project (its dependencies are checked against the pins: pyproject.toml names them
# all), then the progress logger (`--logger optbench`, profiles/local), which Snakemake finds only as an
# installed package of its own; reinstalled whenever its source changes.
$(VENV)/.installed: requirements.txt pyproject.toml $(PROGRESS_LOGGER)
	test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q -r requirements.txt
	$(VENV)/bin/pip install -q -e .
	$(VENV)/bin/pip install -q --no-deps --force-reinstall ./tools/progress
	touch $@

setup: $(VENV)/.installed

# profiles/local: every core, one line per job start and end (--logger optbench), a failed job's log tail
run: setup
	snakemake --profile profiles/local --cores $(CORES)
	@echo "Report: $(abspath results/report.html)"

test: setup
	python -m pytest -q $(PYTEST_ARGS)

# Overhead ratios measured side by side, then the default grid end to end on 2 cores (minutes).
bench: setup
	python bench/run.py --cores 2 $(BENCH_ARGS)

# Several workloads, one folder each, then results/compare.html (configs/replication.yaml says which);
# each workload's snakemake takes profiles/local (progress lines, as make run prints them).
replicate: setup
	python -m optbench.replicate configs/replication.yaml --cores $(CORES) --profile profiles/local

lint: setup
	snakemake --lint

clean:
	rm -rf results logs benchmarks .snakemake

# Experiment folders left by earlier settings: `make experiments` lists each with its size and whether
# one of CONFIGS uses it; `make clean-experiments CONFIRM=yes` removes those none uses (without CONFIRM
# it only lists them). List every config you run in this folder: the others' folders count as unused.
CONFIGS ?= config.yaml
experiments: setup
	python -m optbench.experiments $(CONFIGS)

clean-experiments: setup
	python -m optbench.experiments $(if $(filter yes,$(CONFIRM)),--remove) $(CONFIGS)
