#!/usr/bin/env bash
# Re-fetch the vendored Bootstrap and Chart.js from the npm registry (maintainers only;
# the files are committed so that nothing is fetched at run time or in CI).
set -euo pipefail
cd "$(dirname "$0")/.."
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
(cd "$tmp" && npm pack --silent bootstrap@5.3.9 chart.js@4.6.1 >/dev/null)
mkdir -p "$tmp/bs" "$tmp/cj" static/vendor/bootstrap/{css,js} static/vendor/chartjs
tar xzf "$tmp/bootstrap-5.3.9.tgz" -C "$tmp/bs" --strip-components=1
tar xzf "$tmp/chart.js-4.6.1.tgz"  -C "$tmp/cj" --strip-components=1
cp "$tmp"/bs/dist/css/bootstrap.min.css{,.map}      static/vendor/bootstrap/css/
cp "$tmp"/bs/dist/js/bootstrap.bundle.min.js{,.map} static/vendor/bootstrap/js/
cp "$tmp"/cj/dist/chart.umd.js{,.map}               static/vendor/chartjs/
cp "$tmp/bs/LICENSE" static/vendor/bootstrap/; cp "$tmp/cj/LICENSE.md" static/vendor/chartjs/
