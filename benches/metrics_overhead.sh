#!/usr/bin/env bash
# What serving metrics costs `run` (issue 14, acceptance 4: at most 2% of its throughput),
# measured side by side: `run --retention --duration D` without and with `--metrics-addr`, the
# latter scraped once a second the way Prometheus and the live page do (GET /metrics and
# GET /samples.json?after=N), ROUNDS rounds, each run on a fresh data directory.
#
# Two ways to put them side by side (MODE):
#   together   (default) both runs at the same time, so the machine's other load hits both
#              alike; each round's ratio compares runs that shared the same moments. On a busy
#              shared machine this is the one whose ratios do not swing by tens of percent.
#   alternate  one after the other, order swapped every other round (A B, B A, ...).
# It prints every run's MB/s, the median of the per-round ratios (with / without) and the ratio
# of the medians. It also reports the direct cost: the CPU time of the server's own thread
# (`metrics-http`, from /proc) as a share of the process's CPU time. The scraper uses bash
# built-ins only (/dev/tcp, read), so it starts no process per scrape to compete for the CPUs.
#
# Usage: [MODE=together|alternate] benches/metrics_overhead.sh [ROUNDS] [DURATION]
#        (defaults: together, 8 rounds of 20s)
# Needs: cargo, jq. Data goes to a temporary directory under ${TMPDIR:-/tmp}, removed after.
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-8}
duration=${2:-20s}
mode=${MODE:-together}
case $mode in together | alternate) ;; *) echo "MODE must be together or alternate" >&2; exit 2 ;; esac
cargo build --release --quiet
bin=target/release/stream-sum
work=$(mktemp -d "${TMPDIR:-/tmp}/stream-sum-metrics-overhead.XXXXXX")
trap 'rm -rf "$work"' EXIT
ticks=$(getconf CLK_TCK)

# GET http://$1$2 with built-ins only; the response lands in $reply. A run that is exiting
# refuses or resets the connection: that is the end of its scrapes, not an error.
get() {
  local host=${1%:*} port=${1##*:}
  reply=""
  { exec 3<>"/dev/tcp/$host/$port"; } 2>/dev/null || return 1
  printf 'GET %s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n' "$2" "$1" >&3
  IFS= read -r -d '' -u 3 reply 2>/dev/null || true
  exec 3<&-
}

# utime+stime, in clock ticks, of /proc/$1/stat (a process or a thread).
cpu_ticks() {
  local stat f
  IFS= read -r stat <"$1/stat" || return 1
  stat=${stat##*) }       # the fields after the command name: f[0] is field 3
  read -r -a f <<<"$stat" # utime and stime are fields 14 and 15
  echo $((f[11] + f[12]))
}

# Runs the given arms ("off", "on") at the same time, scraping the "on" ones once a second until
# all end; prints one line per arm, in order: "MB/s process_cpu_s metrics_thread_cpu_s".
run_set() {
  local arms=("$@") i pids=() addr=() task=() seq=() proc_t=() http_t=() alive t d
  for i in "${!arms[@]}"; do
    rm -rf "$work/data$i"
    local args=(run --data "$work/data$i" --retention --duration "$duration" --progress-interval 1h --json)
    [ "${arms[$i]}" = on ] && args+=(--metrics-addr 127.0.0.1:0)
    "$bin" "${args[@]}" >"$work/out$i" 2>"$work/err$i" &
    pids[i]=$! addr[i]="" task[i]="" seq[i]=0 proc_t[i]=0 http_t[i]=0
  done
  while :; do
    alive=0
    for i in "${!arms[@]}"; do
      kill -0 "${pids[$i]}" 2>/dev/null || continue
      alive=1
      if [ "${arms[$i]}" = on ]; then
        [ -n "${addr[$i]}" ] ||
          addr[i]=$(sed -n 's|^stream-sum: metrics at http://\([^/]*\)/metrics.*|\1|p' "$work/err$i")
        if [ -z "${task[$i]}" ]; then
          # The thread names itself once it runs, which may be after the address is printed.
          for d in /proc/"${pids[$i]}"/task/*; do
            [ "$(cat "$d/comm" 2>/dev/null)" = metrics-http ] && task[i]=$d
          done
        fi
        if [ -n "${addr[$i]}" ]; then
          get "${addr[$i]}" /metrics || true
          if get "${addr[$i]}" "/samples.json?after=${seq[$i]}"; then
            t=${reply##*\"seq\":}
            t=${t%%[!0-9]*}
            [ -n "$t" ] && seq[i]=$t
          fi
        fi
        [ -n "${task[$i]}" ] && t=$(cpu_ticks "${task[$i]}" 2>/dev/null) && http_t[i]=$t
      fi
      t=$(cpu_ticks "/proc/${pids[$i]}" 2>/dev/null) && proc_t[i]=$t
    done
    [ "$alive" = 1 ] || break
    sleep 1
  done
  for i in "${!arms[@]}"; do
    wait "${pids[$i]}" || { echo "run (${arms[$i]}) failed: $(cat "$work/err$i")" >&2; exit 1; }
    [ "${arms[$i]}" = off ] || [ -n "${task[$i]}" ] || { echo "no metrics-http thread found" >&2; exit 1; }
    awk -v mb="$(jq -r .chunk_mb_per_s "$work/out$i")" -v p="${proc_t[$i]}" -v h="${http_t[$i]}" -v k="$ticks" \
      'BEGIN { print mb, p / k, h / k }'
  done
}

median() { sort -g | awk '{v[NR]=$1} END {print (NR%2 ? v[(NR+1)/2] : (v[NR/2]+v[NR/2+1])/2)}'; }

off=() on=() ratio=() share=()
echo "MODE=$mode: run --retention --duration $duration at full rate, $rounds rounds"
echo "round  without MB/s  with metrics MB/s  ratio   metrics-http CPU / process CPU"
for r in $(seq "$rounds"); do
  if [ "$mode" = together ]; then
    if [ $((r % 2)) -eq 1 ]; then mapfile -t res < <(run_set off on); a=${res[0]} b=${res[1]}
    else mapfile -t res < <(run_set on off); b=${res[0]} a=${res[1]}; fi
  else
    if [ $((r % 2)) -eq 1 ]; then a=$(run_set off); b=$(run_set on); else b=$(run_set on); a=$(run_set off); fi
  fi
  read -r a_mb _ _ <<<"$a"
  read -r b_mb b_cpu b_http <<<"$b"
  q=$(awk -v a="$a_mb" -v b="$b_mb" 'BEGIN { print b / a }')
  s=$(awk -v h="$b_http" -v p="$b_cpu" 'BEGIN { print (p > 0 ? h / p : 0) }')
  off+=("$a_mb") on+=("$b_mb") ratio+=("$q") share+=("$s")
  printf '%5d  %12.1f  %17.1f  %.3f  %6.3f s / %5.1f s = %.3f%%\n' "$r" "$a_mb" "$b_mb" "$q" "$b_http" "$b_cpu" \
    "$(awk -v s="$s" 'BEGIN { print s * 100 }')"
done
m_off=$(printf '%s\n' "${off[@]}" | median)
m_on=$(printf '%s\n' "${on[@]}" | median)
m_ratio=$(printf '%s\n' "${ratio[@]}" | median)
m_share=$(printf '%s\n' "${share[@]}" | median)
awk -v on="$m_on" -v off="$m_off" -v q="$m_ratio" -v s="$m_share" 'BEGIN {
  printf "median of per-round ratios (with / without): %.4f (%+.2f%%)\n", q, (q - 1) * 100
  printf "median MB/s: without %.1f, with metrics %.1f; ratio of medians %.4f\n", off, on, on / off
  printf "median CPU share of the metrics-http thread: %.3f%%\n", s * 100 }'
