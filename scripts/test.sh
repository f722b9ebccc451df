#!/usr/bin/env bash
# README command 2: set up and run the whole suite: lint, format check, types, every test.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/ruff check .
.venv/bin/ruff format --check .
.venv/bin/mypy truckcount ingest detector aggregator storage
.venv/bin/pytest -q "$@"
