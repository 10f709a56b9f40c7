#!/usr/bin/env bash
# Runs the whole test suite. It installs what the tests need first: Segment's official Python
# SDK in a virtualenv (.venv), which the SDK compatibility test drives against Parcours.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ ! -x .venv/bin/python ] || ! .venv/bin/python -c "import segment.analytics" 2>/dev/null; then
  echo "installing Segment's Python SDK into .venv" >&2
  python3 -m venv .venv
  .venv/bin/pip install --quiet "segment-analytics-python==2.4.0"
fi
export PARCOURS_TEST_PYTHON="$PWD/.venv/bin/python"

cargo test --workspace "$@"
