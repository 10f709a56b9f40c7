#!/usr/bin/env bash
# Console end-to-end tests: a demo node on a temporary data directory and a free port, then
# console-e2e/run.mjs drives the console in Debian's headless Chromium (playwright-core; the
# Playwright browser download is not used) and checks each main page with axe-core.
# Screenshots are written to console-e2e/screenshots (or SCREENSHOTS).
#
#   bash scripts/console-e2e.sh                       # uses target/release/parcours
#   PARCOURS_BIN=target/debug/parcours bash scripts/console-e2e.sh
#
# Needs Node 20+ with npm, and Debian's chromium (installed here when running as root).
# Any missing piece is an error: nothing is skipped.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

fail() { echo "console-e2e: $*" >&2; exit 1; }

BIN=${PARCOURS_BIN:-target/release/parcours}
case "$BIN" in /*) ;; *) BIN="$root/$BIN" ;; esac
[ -x "$BIN" ] || fail "no Parcours binary at $BIN: build it (cargo build --release -p parcours-cli) or set PARCOURS_BIN"

command -v node >/dev/null || fail "node is not installed (Node 20 or later is needed)"
command -v npm >/dev/null || fail "npm is not installed"
node_major=$(node -p 'process.versions.node.split(".")[0]')
[ "$node_major" -ge 20 ] || fail "Node $(node --version) is too old: Node 20 or later is needed"
echo "console-e2e: installing playwright-core and axe-core" >&2
(cd console-e2e && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --no-audit --no-fund --loglevel=error >/dev/null) || fail "npm ci in console-e2e failed"

CHROMIUM=${CHROMIUM:-/usr/bin/chromium}
if [ ! -x "$CHROMIUM" ]; then
  if [ "$CHROMIUM" = /usr/bin/chromium ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "console-e2e: installing Debian's chromium" >&2
    apt-get update -qq >/dev/null || fail "apt-get update failed"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null || fail "apt-get install chromium failed"
  fi
  [ -x "$CHROMIUM" ] || fail "no Chromium at $CHROMIUM: install Debian's chromium package (as root: apt-get install -y chromium) or set CHROMIUM"
fi
export CHROMIUM

work=$(mktemp -d)
pid=""
cleanup() {
  if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT

# A small demo (the same brand and scenarios as `parcours demo`, fewer customers and days).
# Its logs at debug for Parcours' own crates: they are searched for personal data at the end.
(cd "$work" && exec env PARCOURS__DATA_DIR="$work/data" PARCOURS__STORAGE__DURABILITY=normal \
  PARCOURS_LOG="info,parcours_api=debug,parcours_engine=debug,parcours_service=debug,parcours_channels=debug,parcours_cli=debug,parcours_console=debug" \
  "$BIN" demo --port 0 --customers "${DEMO_CUSTOMERS:-300}" --days "${DEMO_DAYS:-45}" \
  >"$work/demo.out" 2>"$work/demo.err") &
pid=$!
for _ in $(seq 1 600); do
  grep -q "Parcours demo is running on" "$work/demo.err" 2>/dev/null && break
  kill -0 "$pid" 2>/dev/null || { cat "$work/demo.err" >&2; fail "the demo node exited"; }
  sleep 0.5
done
grep -q "Parcours demo is running on" "$work/demo.err" || { tail -20 "$work/demo.err" >&2; fail "the demo did not finish loading in 300 s"; }

URL=$(sed -n 's/^Parcours demo is serving on \([^ ]*\) .*/\1/p' "$work/demo.out" | head -1)
ADMIN_TOKEN=$(sed -n 's/^  admin token: *\([^ ]*\)$/\1/p' "$work/demo.out" | head -1)
[ -n "$URL" ] || fail "no URL in the demo's output"
[ -n "$ADMIN_TOKEN" ] || fail "no admin token in the demo's output"
grep -q "console: *$URL/console" "$work/demo.out" || fail "the demo does not print the console's URL"
json() { node -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>{const v=JSON.parse(s);console.log(eval(process.argv[1]))})' "$1"; }
# A member of "Left the cart online, bought in a shop" (her web cart and her shop purchase are
# the timeline the tests look for) with a merge in effect (the tests undo it) and an email
# (she is found in the console by it).
EMAIL=$(PARCOURS_URL=$URL ADMIN_TOKEN=$ADMIN_TOKEN node -e '
  const get = async (p) => (await fetch(process.env.PARCOURS_URL + p,
    { headers: { authorization: `Bearer ${process.env.ADMIN_TOKEN}` } })).json();
  (async () => {
    const { members } = await get("/api/v1/audiences/online_cart_store_purchase/members?limit=200");
    for (const m of members) {
      const p = await get(`/api/v1/profiles/${m.profile_id}`);
      const email = p.identifiers.find((i) => i.type === "email");
      const { merges } = await get(`/api/v1/profiles/${m.profile_id}/merges`);
      if (email && merges.some((x) => x.status === "active")) { console.log(email.value); return; }
    }
    process.exit(1);
  })();') || fail "no member of online_cart_store_purchase with an email and a merge in the demo"

READ_ONLY_TOKEN=$(curl -sf -X POST "$URL/api/v1/tokens" -H "authorization: Bearer $ADMIN_TOKEN" \
  -H 'content-type: application/json' -d '{"name": "console e2e viewer", "role": "read_only"}' \
  | json 'v.secret') \
  || fail "could not create a read-only token"

# A new customer signs up on the web now, with consent: the demo's welcome journey sends her
# its first email at once, to the capture channel (the Messages page shows it).
WEB_KEY=$(sed -n 's/^  write key (web shop): *\([^ ]*\)$/\1/p' "$work/demo.out" | head -1)
[ -n "$WEB_KEY" ] || fail "no web write key in the demo's output"
consent='"context": {"consent": {"categoryPreferences": {"marketing": true, "analytics": true}}}'
curl -sf -u "$WEB_KEY:" "$URL/v1/batch" -H 'content-type: application/json' -d "{\"batch\": [
  {\"type\": \"identify\", \"userId\": \"e2e-lea\", \"traits\": {\"email\": \"lea.e2e@example.com\", \"first_name\": \"Léa\"}, $consent},
  {\"type\": \"track\", \"userId\": \"e2e-lea\", \"event\": \"Signed Up\", $consent}]}" >/dev/null \
  || fail "could not send the sign-up"

echo "console-e2e: demo on $URL, customer $EMAIL" >&2
PARCOURS_URL=$URL ADMIN_TOKEN=$ADMIN_TOKEN READ_ONLY_TOKEN=$READ_ONLY_TOKEN CUSTOMER_EMAIL=$EMAIL \
  node console-e2e/run.mjs

# Personal data never reaches the logs: the node's whole log of this run (the demo's load, every
# console page, the sign-up, the journey's email) holds none of the customers' emails or phones.
python3 scripts/no-personal-data-in-logs.py --store "$work/data/parcours.projections.sqlite3" "$work/demo.err" \
  || fail "personal data in the node's logs"
