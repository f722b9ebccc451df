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
# The live-ingest tests serve the demo clip from a real RTSP server (GStreamer, system Python).
if ! /usr/bin/python3 -c "import gi; gi.require_version('GstRtspServer', '1.0')" 2>/dev/null; then
  sudo=""
  [ "$(id -u)" = 0 ] || sudo="sudo"
  { $sudo apt-get update -qq && $sudo apt-get install -y -qq gstreamer1.0-rtsp \
      gir1.2-gst-rtsp-server-1.0 python3-gi gstreamer1.0-plugins-base gstreamer1.0-plugins-good \
      gstreamer1.0-plugins-ugly gstreamer1.0-plugins-bad gstreamer1.0-libav >/dev/null; } ||
    echo "warning: could not install GStreamer; the RTSP tests skip (fail under CI=true)" >&2
fi
# The dashboard test loads the page in a real headless browser: Debian's Chromium.
if ! command -v chromium >/dev/null; then
  sudo=""
  [ "$(id -u)" = 0 ] || sudo="sudo"
  { $sudo apt-get update -qq && $sudo apt-get install -y -qq chromium >/dev/null; } ||
    echo "warning: could not install Chromium; the dashboard tests skip (fail under CI=true)" >&2
fi
.venv/bin/ruff check .
.venv/bin/ruff format --check .
.venv/bin/mypy truckcount ingest detector aggregator storage tests benchmarks
.venv/bin/pytest -q "$@"
