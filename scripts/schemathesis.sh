#!/usr/bin/env bash
# Property-based API testing of a running node against its own OpenAPI document
# (/api/openapi.json) with schemathesis: no 5xx, and no status, content type, header or body
# outside the document. The admin API is driven with an admin token, the tracking API with a
# write key. The node must still be running at the end and stop cleanly.
#
#   bash scripts/schemathesis.sh                 # about 4 minutes
#   SCHEMATHESIS_TIME=1200 bash scripts/schemathesis.sh   # longer
set -euo pipefail
cd "$(dirname "$0")/.."

VERSION=4.32.5
VENV=.venv-schemathesis
if [ ! -x "$VENV/bin/schemathesis" ] || ! "$VENV/bin/schemathesis" --version | grep -q "$VERSION"; then
  echo "installing schemathesis $VERSION into $VENV" >&2
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet "schemathesis==$VERSION"
fi

# Works around a CPython 3.11 bug that can stop hypothesis at random (see the file).
site=$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
cp scripts/schemathesis_sitecustomize.py "$site/sitecustomize.py"
"$VENV/bin/python" -c 'import sitecustomize, hypothesis.internal.lambda_sources as l; assert l.lambda_description.__name__ == "_lambda_description"'

cargo build --quiet -p parcours-cli
WRITE_KEY="wk_schemathesis_$(head -c 12 /dev/urandom | od -An -tx1 | tr -d " \n")"
ADMIN="pat_schemathesis_$(head -c 12 /dev/urandom | od -An -tx1 | tr -d " \n")"
work=$(mktemp -d)
cleanup() {
  if [ -n "${pid:-}" ] && kill -0 "$pid" 2>/dev/null; then kill -KILL "$pid" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

(cd "$work" && exec env PARCOURS__DATA_DIR="$work/data" PARCOURS__HTTP__PORT=0 \
  PARCOURS__STORAGE__DURABILITY=normal \
  PARCOURS__BOOTSTRAP__WRITE_KEY=$WRITE_KEY PARCOURS__BOOTSTRAP__ADMIN_TOKEN=$ADMIN \
  "$OLDPWD/target/debug/parcours" serve 2>"$work/parcours.log" >/dev/null) &
pid=$!
url=""
for _ in $(seq 1 300); do
  url=$(grep -o 'listening on http://[0-9.:]*' "$work/parcours.log" | head -1 | sed 's/listening on //') || true
  [ -n "$url" ] && break
  kill -0 "$pid" 2>/dev/null || { cat "$work/parcours.log" >&2; echo "parcours serve exited" >&2; exit 1; }
  sleep 0.1
done
[ -n "$url" ] || { echo "parcours serve did not start" >&2; exit 1; }
echo "node at $url" >&2

TIME=${SCHEMATHESIS_TIME:-200}
CHECKS=not_a_server_error,status_code_conformance,content_type_conformance,response_headers_conformance,response_schema_conformance,negative_data_rejection,ignored_auth,unsupported_method,allow_header_conformance
run() {
  "$VENV/bin/schemathesis" run "$url/api/openapi.json" --checks "$CHECKS" \
    --max-examples 25 --workers 2 --request-timeout 20 --suppress-health-check all \
    --continue-on-failure "$@"
}
status=0
echo "== admin API (admin token), $((TIME * 3 / 5)) s" >&2
# The live debugger's stream never ends by design: a request/response fuzzer cannot check it
# (crates/parcours-cli/tests/sources.rs does).
run --include-path-regex '^/api/v1/' --exclude-path-regex '/live$' -H "Authorization: Bearer $ADMIN" --max-time $((TIME * 3 / 5)) || status=1
echo "== tracking API (write key), $((TIME / 5)) s" >&2
run --include-path-regex '^/(v1/|sourceConfig)' --auth "$WRITE_KEY:" --max-time $((TIME / 5)) || status=1
echo "== health, readiness, metrics, $((TIME / 5)) s" >&2
run --include-path-regex '^/(healthz|readyz|metrics)$' --max-time $((TIME / 5)) || status=1

if ! kill -0 "$pid" 2>/dev/null; then
  echo "parcours serve stopped during the run:" >&2
  tail -50 "$work/parcours.log" >&2
  exit 1
fi
if grep -E "panicked|overflowed its stack" "$work/parcours.log" >&2; then
  echo "the node logged a panic" >&2
  status=1
fi
kill -TERM "$pid"
wait "$pid" || { echo "parcours serve did not stop cleanly" >&2; status=1; }
pid=""
exit $status
