# Common verbs. Everything runs inside the locked environment in .venv (created by `make setup`).
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
export PATH := $(CURDIR)/.venv/bin:$(PATH)
export UV_COMPILE_BYTECODE := 1

.PHONY: setup run repro metrics test lint format bench clean

setup: .venv/.synced
.venv/.synced: pyproject.toml uv.lock
	uv sync --frozen
	touch $@

run: setup  ## the whole pipeline on the data chosen in params.yaml, then its metrics
	python -m mlcore.params
	dvc repro
	dvc metrics show

repro: run

metrics: setup
	dvc metrics show

test: setup
	pytest

lint: setup
	ruff check .
	ruff format --check .

format: setup
	ruff check --fix .
	ruff format .

bench: setup
	python -m bench.input_pipeline
	python -m bench.stage_times

clean:
	rm -rf .cache logs
