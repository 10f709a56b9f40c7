#!/usr/bin/env bash
# Copies the console's pinned JavaScript into crates/parcours-console/assets/vendor/, where the
# build embeds it: the Rust build needs no Node, and the console loads nothing from another
# origin. Run it only to change a pinned version (the copies are committed), then check the
# console's tests (bash scripts/console-e2e.sh).
#
#   bash scripts/vendor-js.sh
set -euo pipefail
cd "$(dirname "$0")/.."

HTMX=2.0.11

dest=crates/parcours-console/assets/vendor
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
(cd "$work" && npm pack --silent "htmx.org@$HTMX" >/dev/null && tar xzf htmx.org-$HTMX.tgz)
mkdir -p "$dest"
cp "$work/package/dist/htmx.min.js" "$dest/htmx.min.js"
cp "$work/package/LICENSE" "$dest/htmx.LICENSE"
echo "htmx.org $HTMX" > "$dest/VERSIONS"
echo "vendored htmx.org $HTMX into $dest"
