#!/usr/bin/env bash
# Runs fuzz targets for a while each, from the committed seeds, and prints libFuzzer's summary.
#
#   fuzz/run.sh [seconds] [target...]      (default: 60 seconds, every target)
#
# New inputs go to fuzz/work/<target>/ (ignored by git; emptied first so every run starts from
# the seeds); crash inputs go to fuzz/artifacts/<target>/. Builds on stable Rust without a
# sanitizer (our crates have no unsafe code); pass SANITIZER=address with a nightly toolchain
# (`cargo +nightly fuzz ...`, see docs/reliability.md) for AddressSanitizer.
set -u
cd "$(dirname "$0")/.."
seconds=${1:-60}
shift || true
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
    mapfile -t targets < <(cargo fuzz list)
fi
for t in "${targets[@]}"; do
    rm -rf "fuzz/work/$t"
    mkdir -p "fuzz/work/$t"
    log="fuzz/work/$t.log"
    cargo fuzz run --sanitizer "${SANITIZER:-none}" "$t" "fuzz/work/$t" "fuzz/corpus/$t" -- \
        -max_total_time="$seconds" -timeout=10 -print_final_stats=1 >"$log" 2>&1
    rc=$?
    echo "== $t (exit $rc)"
    grep -E '^#[0-9]+[[:space:]]+(INITED|DONE)' "$log" | tail -2
    grep -E 'stat::(number_of_executed_units|average_exec_per_sec|peak_rss_mb)' "$log"
    grep -E 'panicked at|Test unit written|ERROR: libFuzzer' "$log" | head -3
done
