# The README's quick start: `make run` (set up + default experiment), `make test` (the test suite).
VENV ?= .venv
PYTHON ?= python3
CORES ?= all
export PATH := $(abspath $(VENV))/bin:$(PATH)

.PHONY: setup run test bench lint clean replicate experiments clean-experiments

$(VENV)/.installed: requirements.txt pyproject.toml
	test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q -r requirements.txt
	$(VENV)/bin/pip install -q --no-deps -e .
	touch $@

setup: $(VENV)/.installed

run: setup
	snakemake --cores $(CORES)
	@echo "Report: $(abspath results/report.html)"

test: setup
	python -m pytest -q $(PYTEST_ARGS)

# Overhead ratios measured side by side, then the default grid end to end on 2 cores (minutes).
bench: setup
	python bench/run.py --cores 2 $(BENCH_ARGS)

# Several workloads, one folder each, then results/compare.html (configs/replication.yaml says which).
replicate: setup
	python -m optbench.replicate configs/replication.yaml --cores $(CORES)

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
