#!/usr/bin/env bash
# Create .venv and install truckcount with its pinned torch/torchvision. Safe to run again:
# it does nothing when the environment already matches pyproject.toml.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
TORCH_PINS=(torch==2.14.1 torchvision==0.29.1)

if ! command -v "$PYTHON" >/dev/null; then
  echo "error: $PYTHON not found; install Python 3.11 or newer" >&2
  exit 1
fi
"$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' || {
  echo "error: Python 3.11 or newer is required" >&2
  exit 1
}

stamp=.venv/.truckcount-setup
want=$(cat pyproject.toml scripts/setup.sh | sha256sum | cut -d' ' -f1)
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && [ -x .venv/bin/truckcount ]; then
  exit 0
fi

echo "setting up .venv (the first time installs torch and takes a few minutes)..." >&2
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
log=.venv/setup.log
pip_install() {
  .venv/bin/python -m pip install --quiet "$@" >>"$log" 2>&1 || {
    tail -n 30 "$log" >&2
    echo "error: pip install $* failed (full log: $log)" >&2
    exit 1
  }
}
pip_install --upgrade pip
pip_install "${TORCH_PINS[@]}"
pip_install -e ".[dev]" "${TORCH_PINS[@]}"
echo "$want" > "$stamp"
echo "set-up done" >&2
