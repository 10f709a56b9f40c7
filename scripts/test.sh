#!/usr/bin/env bash
# Runs the whole test suite. It sets up what the tests need first:
# - Segment's official Python SDK in a virtualenv (.venv), driven against Parcours by the SDK
#   compatibility test;
# - a PostgreSQL server for the PostgreSQL store's conformance suite and the multi-node tests.
#   They use PARCOURS_TEST_DATABASE_URL (default postgres://postgres@127.0.0.1:5432/postgres),
#   create a database per test and drop it afterwards. If nothing answers there, this script
#   starts the machine's PostgreSQL cluster, and fails if it still cannot reach one.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ ! -x .venv/bin/python ] || ! .venv/bin/python -c "import segment.analytics" 2>/dev/null; then
  echo "installing Segment's Python SDK into .venv" >&2
  python3 -m venv .venv
  .venv/bin/pip install --quiet "segment-analytics-python==2.4.0"
fi
export PARCOURS_TEST_PYTHON="$PWD/.venv/bin/python"

export PARCOURS_TEST_DATABASE_URL="${PARCOURS_TEST_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/postgres}"
bash scripts/postgres.sh "$PARCOURS_TEST_DATABASE_URL"

cargo test --workspace "$@"
