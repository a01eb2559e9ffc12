#!/usr/bin/env bash
# What serving metrics costs `run` (issue 14, acceptance 4: at most 2% of its throughput),
# measured side by side: `run --retention --duration D` alternately without and with
# `--metrics-addr`, the latter scraped once a second the way Prometheus and the live page do
# (GET /metrics and GET /samples.json?after=N). Each round runs both, in swapped order every other
# round (A B, B A, ...), each on a fresh data directory; the machine is shared and noisy, so the
# result is the ratio of the medians, with every run's figure printed.
#
# Usage: benches/metrics_overhead.sh [ROUNDS] [DURATION]     (defaults: 6 rounds of 20s)
# Needs: cargo, curl, jq. Data goes to a temporary directory under ${TMPDIR:-/tmp}, removed after.
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-6}
duration=${2:-20s}
cargo build --release --quiet
bin=target/release/stream-sum
work=$(mktemp -d "${TMPDIR:-/tmp}/stream-sum-metrics-overhead.XXXXXX")
trap 'rm -rf "$work"' EXIT

# One run; prints its chunk MB/s (from the JSON summary). $1: "off" or "on".
one_run() {
  local mode=$1 data="$work/data" pid addr scraper="" n=0
  rm -rf "$data"
  local args=(run --data "$data" --retention --duration "$duration" --progress-interval 1h --json)
  if [ "$mode" = on ]; then
    "$bin" "${args[@]}" --metrics-addr 127.0.0.1:0 >"$work/out" 2>"$work/err" &
    pid=$!
    for _ in $(seq 100); do
      addr=$(sed -n 's|^stream-sum: metrics at http://\([^/]*\)/metrics.*|\1|p' "$work/err")
      [ -n "$addr" ] && break
      sleep 0.1
    done
    [ -n "$addr" ] || { echo "no metrics address in: $(cat "$work/err")" >&2; exit 1; }
    (
      while kill -0 "$pid" 2>/dev/null; do
        curl -sf -o /dev/null "http://$addr/metrics" || true
        n=$(curl -sf "http://$addr/samples.json?after=$n" | jq '[.samples[].seq] | max // '"$n" 2>/dev/null || echo "$n")
        sleep 1
      done
    ) &
    scraper=$!
  else
    "$bin" "${args[@]}" >"$work/out" 2>"$work/err" &
    pid=$!
  fi
  wait "$pid" || { echo "run ($mode) failed: $(cat "$work/err")" >&2; exit 1; }
  [ -n "$scraper" ] && wait "$scraper"
  jq -r .chunk_mb_per_s "$work/out"
}

median() { sort -g | awk '{v[NR]=$1} END {print (NR%2 ? v[(NR+1)/2] : (v[NR/2]+v[NR/2+1])/2)}'; }

off=() on=()
echo "round  without MB/s  with metrics MB/s  (run --retention --duration $duration, full rate)"
for r in $(seq "$rounds"); do
  if [ $((r % 2)) -eq 1 ]; then a=$(one_run off); b=$(one_run on); else b=$(one_run on); a=$(one_run off); fi
  off+=("$a") on+=("$b")
  printf '%5d  %12.1f  %17.1f\n' "$r" "$a" "$b"
done
m_off=$(printf '%s\n' "${off[@]}" | median)
m_on=$(printf '%s\n' "${on[@]}" | median)
pairs=$(for i in "${!off[@]}"; do echo "${on[$i]} ${off[$i]}" | awk '{print $1/$2}'; done | median)
awk -v on="$m_on" -v off="$m_off" -v pairs="$pairs" 'BEGIN {
  printf "median MB/s: without %.1f, with metrics %.1f; ratio of medians %.4f (cost %+.2f%%); median of per-round ratios %.4f\n",
    off, on, on / off, (1 - on / off) * 100, pairs }'
