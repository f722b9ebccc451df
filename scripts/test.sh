#!/usr/bin/env bash
# README command 2: set up and run the whole suite: lint, format check, types, every test.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# The storage tests start their own PostgreSQL server; Debian keeps pg_ctl off the PATH.
if ! compgen -G "/usr/lib/postgresql/*/bin/pg_ctl" >/dev/null; then
  sudo=""
  [ "$(id -u)" = 0 ] || sudo="sudo"
  { $sudo apt-get update -qq && $sudo apt-get install -y -qq postgresql >/dev/null; } ||
    echo "warning: could not install PostgreSQL; its storage tests skip (fail under CI=true)" >&2
fi
.venv/bin/ruff check .
.venv/bin/ruff format --check .
.venv/bin/mypy truckcount ingest detector aggregator storage
.venv/bin/pytest -q "$@"
