#!/usr/bin/env bash
# Coverage-guided fuzzing (cargo fuzz / libFuzzer, nightly toolchain) of every
# decoder that reads untrusted bytes: native protocol frames, line protocol
# bodies, storage blocks, WAL records, InfluxQL queries. Runs each target for SECS seconds
# (default 60) and prints one line per target: runs, corpus size, crashes.
# A crash leaves its input in fuzz/artifacts/TARGET/ and makes this exit 1;
# replay it with `cargo +nightly fuzz run TARGET fuzz/artifacts/TARGET/crash-...`.
#
# Env: SECS TARGETS ("frame line block wal_record influxql") JOBS (parallel workers per target, default 1)
set -euo pipefail
cd "$(dirname "$0")/../fuzz"

SECS=${SECS:-60}
TARGETS=${TARGETS:-"frame line block wal_record influxql"}
JOBS=${JOBS:-1}

rustup toolchain list | grep -q '^nightly' || rustup toolchain install nightly --profile minimal
cargo fuzz --version >/dev/null 2>&1 || cargo install cargo-fuzz --locked
cargo +nightly fuzz build -O >&2

status=0
echo "| target | seconds | runs | corpus | crashes |"
echo "|---|---|---|---|---|"
for t in $TARGETS; do
  mkdir -p "corpus/$t"
  log=$(mktemp)
  par=()
  # -jobs makes libFuzzer write fuzz-N.log files (ignored by git); only ask for it when parallel.
  [ "$JOBS" -gt 1 ] && par=(-jobs="$JOBS" -workers="$JOBS")
  if cargo +nightly fuzz run -O "$t" -- -max_total_time="$SECS" "${par[@]}" \
    -print_final_stats=1 >"$log" 2>&1; then
    crashes=0
  else
    crashes=1
    status=1
    tail -30 "$log" >&2
  fi
  runs=$(grep -oE 'stat::number_of_executed_units: *[0-9]+' "$log" | awk '{s+=$2} END {print s+0}')
  corpus=$(find "corpus/$t" -type f | wc -l)
  echo "| $t | $SECS | $runs | $corpus | $crashes |"
  rm -f "$log"
done
exit $status
