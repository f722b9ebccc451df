#!/usr/bin/env bash
# README command 1: set up, count trucks in the bundled km39 clip into SQLite, print daily counts.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/truckcount run demo/km39-siang.mp4 --camera km39 --config demo/km39.yaml
.venv/bin/truckcount counts --camera km39 --daily --config demo/km39.yaml
