#!/bin/sh
# Trend page: time from load to first drawn trend for a 7-day range of a
# 1 Hz tag (604,800 points, flushed and compacted), in headless chromium,
# five runs with a fresh browser each. Needs `chromium` (Debian package).
# Usage: scripts/ui_bench.sh
set -eu
cd "$(dirname "$0")/.."
command -v chromium >/dev/null || { echo "needs chromium (apt-get install -y chromium)" >&2; exit 1; }
CARGO_BUILD_JOBS=${CARGO_BUILD_JOBS:-1} exec nice -n 19 cargo test --release --test ui_browser -- --ignored --nocapture bench_load_to_first_trend_7d
