#!/usr/bin/env bash
# Copies the console's pinned JavaScript (htmx, ECharts) into crates/parcours-console/assets/vendor/, where the
# build embeds it: the Rust build needs no Node, and the console loads nothing from another
# origin. Run it only to change a pinned version (the copies are committed), then check the
# console's tests (bash scripts/console-e2e.sh).
#
#   bash scripts/vendor-js.sh
set -euo pipefail
cd "$(dirname "$0")/.."

HTMX=2.0.11
ECHARTS=6.1.0

dest=crates/parcours-console/assets/vendor
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
(cd "$work" && npm pack --silent "htmx.org@$HTMX" >/dev/null && tar xzf htmx.org-$HTMX.tgz)
mkdir -p "$dest"
cp "$work/package/dist/htmx.min.js" "$dest/htmx.min.js"
cp "$work/package/LICENSE" "$dest/htmx.LICENSE"
# ECharts' common build (line, bar and pie charts with tooltips, legends and zoom) and its
# French strings.
(cd "$work" && npm pack --silent "echarts@$ECHARTS" >/dev/null && mkdir ec && tar xzf echarts-$ECHARTS.tgz -C ec)
cp "$work/ec/package/dist/echarts.common.min.js" "$dest/echarts.min.js"
cp "$work/ec/package/i18n/langFR.js" "$dest/echarts-lang-fr.js"
cp "$work/ec/package/LICENSE" "$dest/echarts.LICENSE"
cp "$work/ec/package/NOTICE" "$dest/echarts.NOTICE"
printf 'htmx.org %s\necharts %s\n' "$HTMX" "$ECHARTS" > "$dest/VERSIONS"
echo "vendored htmx.org $HTMX and echarts $ECHARTS into $dest"
