#!/usr/bin/env bash
# Runs the whole test suite. It sets up what the tests need first:
# - Segment's and RudderStack's official Python SDKs in a virtualenv (.venv), driven against
#   Parcours by the SDK compatibility tests, and aiosmtpd, the real SMTP server the email
#   tests send to;
# - the published data sets of the measurement reference tests (scripts/reference-data.py);
# - a PostgreSQL server for the PostgreSQL store's conformance suite and the multi-node tests.
#   They use PARCOURS_TEST_DATABASE_URL (default postgres://postgres@127.0.0.1:5432/postgres),
#   create a database per test and drop it afterwards. If nothing answers there, this script
#   starts the machine's PostgreSQL cluster, and fails if it still cannot reach one.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ ! -x .venv/bin/python ] || ! .venv/bin/python -c "import segment.analytics, rudderstack.analytics, aiosmtpd" 2>/dev/null; then
  echo "installing Segment's and RudderStack's Python SDKs and aiosmtpd into .venv" >&2
  python3 -m venv .venv
  .venv/bin/pip install --quiet "segment-analytics-python==2.4.0" "rudder-sdk-python==2.1.9" "aiosmtpd==1.4.6"
fi
export PARCOURS_TEST_PYTHON="$PWD/.venv/bin/python"

# The published data sets the measurement reference tests read (CDNOW from the `lifetimes`
# wheel, the 10,000 paths of the `channelattribution` sdist), fetched once and checked by
# SHA-256; the run fails when they cannot be had.
export PARCOURS_REFERENCE_DATA="${PARCOURS_REFERENCE_DATA:-$PWD/target/reference-data}"
.venv/bin/python scripts/reference-data.py "$PARCOURS_REFERENCE_DATA"

export PARCOURS_TEST_DATABASE_URL="${PARCOURS_TEST_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/postgres}"
bash scripts/postgres.sh "$PARCOURS_TEST_DATABASE_URL"

# Every node the tests start logs into target/test-logs (Parcours at debug in the tests'
# processes, info for spawned cluster nodes); after the tests, no line of it may hold an
# email address or a phone number (the senders' aside).
export PARCOURS_TEST_LOG_DIR="$PWD/target/test-logs"
rm -rf "$PARCOURS_TEST_LOG_DIR"
cargo test --workspace "$@"
if [ "$#" -eq 0 ]; then
  if ! compgen -G "$PARCOURS_TEST_LOG_DIR/*.log" > /dev/null; then
    echo "test.sh: the tests left no log in $PARCOURS_TEST_LOG_DIR: nothing to search for personal data" >&2
    exit 1
  fi
  python3 scripts/no-personal-data-in-logs.py --any \
    --allow news@shop.example --allow hello@shop.example --allow +33600000000 \
    "$PARCOURS_TEST_LOG_DIR"/*.log
fi

# The SDK matrix: the Node SDKs and both browser SDKs (in Chromium, on a page of another
# origin) against the binary the tests just built. It installs its npm packages and Debian's
# chromium when missing, and fails loudly when it cannot.
# Then the console's end-to-end tests in Chromium on a demo node (same rules).
if [ "$#" -eq 0 ]; then
  PARCOURS_BIN=target/debug/parcours bash scripts/sdk-matrix.sh
  PARCOURS_BIN=target/debug/parcours bash scripts/console-e2e.sh
else
  echo "test.sh: a filter was given ($*): the SDK matrix and the console's end-to-end tests run only in the whole suite (bash scripts/sdk-matrix.sh and bash scripts/console-e2e.sh run them alone)" >&2
fi
