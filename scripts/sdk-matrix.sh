#!/usr/bin/env bash
# SDK matrix: a fresh node on a temporary data directory and a free port, then the official
# Segment and RudderStack SDKs (analytics-node, rudder-sdk-node, and analytics-next and
# analytics-js v3 in headless Chromium on a page of another origin) send to it, and the admin
# API must show each SDK's events on the profile of the user it identified. See
# sdk-matrix/run.mjs.
#
#   bash scripts/sdk-matrix.sh                       # uses target/release/parcours
#   PARCOURS_BIN=target/debug/parcours bash scripts/sdk-matrix.sh
#   CHROMIUM=/path/to/chromium bash scripts/sdk-matrix.sh
#
# Needs Node 20+ with npm, and Debian's chromium (installed here when running as root).
# Any missing piece is an error: nothing is skipped.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

fail() { echo "sdk-matrix: $*" >&2; exit 1; }

# --- the node binary (this script does not build it)
BIN=${PARCOURS_BIN:-target/release/parcours}
case "$BIN" in /*) ;; *) BIN="$root/$BIN" ;; esac
[ -x "$BIN" ] || fail "no Parcours binary at $BIN: build it (cargo build --release -p parcours-cli) or set PARCOURS_BIN"

# --- Node and the SDK packages (exact versions in sdk-matrix/package.json and its lock file)
command -v node >/dev/null || fail "node is not installed (Node 20 or later is needed)"
command -v npm >/dev/null || fail "npm is not installed"
node_major=$(node -p 'process.versions.node.split(".")[0]')
[ "$node_major" -ge 20 ] || fail "Node $(node --version) is too old: Node 20 or later is needed"
echo "sdk-matrix: installing the SDK packages" >&2
(cd sdk-matrix && npm ci --no-audit --no-fund --loglevel=error >/dev/null) || fail "npm ci in sdk-matrix failed"

# --- the browser
CHROMIUM=${CHROMIUM:-/usr/bin/chromium}
if [ ! -x "$CHROMIUM" ]; then
  if [ "$CHROMIUM" = /usr/bin/chromium ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "sdk-matrix: installing Debian's chromium" >&2
    apt-get update -qq >/dev/null || fail "apt-get update failed"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null || fail "apt-get install chromium failed"
  fi
  [ -x "$CHROMIUM" ] || fail "no Chromium at $CHROMIUM: install Debian's chromium package (as root: apt-get install -y chromium) or set CHROMIUM"
fi
export CHROMIUM

# --- a fresh node with random bootstrap secrets
rand() { od -An -N16 -tx1 /dev/urandom | tr -d ' \n'; }
WRITE_KEY="wk_$(rand)"
ADMIN_TOKEN="pat_$(rand)"
work=$(mktemp -d)
pid=""
cleanup() {
  if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then kill -KILL "$pid" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

(cd "$work" && exec env PARCOURS__DATA_DIR="$work/data" PARCOURS__HTTP__HOST=127.0.0.1 PARCOURS__HTTP__PORT=0 \
  PARCOURS__STORAGE__DURABILITY=normal \
  PARCOURS__BOOTSTRAP__WRITE_KEY="$WRITE_KEY" PARCOURS__BOOTSTRAP__ADMIN_TOKEN="$ADMIN_TOKEN" \
  "$BIN" serve 2>"$work/parcours.log" >"$work/parcours.out") &
pid=$!
url=""
for _ in $(seq 1 300); do
  url=$(grep -o 'listening on http://[0-9.:]*' "$work/parcours.log" | head -1 | sed 's/listening on //') || true
  [ -n "$url" ] && break
  kill -0 "$pid" 2>/dev/null || { cat "$work/parcours.log" >&2; fail "parcours serve exited at start"; }
  sleep 0.1
done
[ -n "$url" ] || { cat "$work/parcours.log" >&2; fail "parcours serve did not say where it listens within 30 s"; }
healthy=""
for _ in $(seq 1 100); do
  if node -e 'fetch(process.argv[1]).then(r => process.exit(r.ok ? 0 : 1), () => process.exit(1))' "$url/healthz"; then
    healthy=1; break
  fi
  sleep 0.1
done
[ -n "$healthy" ] || { cat "$work/parcours.log" >&2; fail "$url/healthz did not answer 200"; }
echo "sdk-matrix: node at $url" >&2

status=0
PARCOURS_URL="$url" PARCOURS_WRITE_KEY="$WRITE_KEY" PARCOURS_ADMIN_TOKEN="$ADMIN_TOKEN" \
  node sdk-matrix/run.mjs || status=$?

if ! kill -0 "$pid" 2>/dev/null; then
  echo "sdk-matrix: parcours serve stopped during the run:" >&2
  tail -50 "$work/parcours.log" >&2
  exit 1
fi
if grep -E "panicked|overflowed its stack" "$work/parcours.log" >&2; then
  echo "sdk-matrix: the node logged a panic" >&2
  status=1
fi
kill -TERM "$pid"
wait "$pid" || { echo "sdk-matrix: parcours serve did not stop cleanly" >&2; status=1; }
pid=""
if [ "$status" -ne 0 ]; then
  echo "sdk-matrix: FAILED (node log: last lines below)" >&2
  tail -20 "$work/parcours.log" >&2
fi
exit "$status"
