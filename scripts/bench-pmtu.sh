#!/usr/bin/env bash
# Throughput over a path with an MTU of 1280 against the same lab at 1500 (measured in the
# same invocation), scaled by what a packet carries on each: single-stream iperf3 over HITs
# in the lab of tests/lab/pmtu.sh (A ── R1 ── R2 ── B), the small MTU on B's link ("edge")
# or between the routers ("middle"), IPv4 and IPv6 outer, both directions.
#
# TCP data per packet: at 1500 the TUN MTU (1400) limits it, at 1280 the path does
# (hip::esp::max_payload less 20 bytes of TCP header and 12 of timestamps). The goal is a
# ratio of at least 80 % of the 1500 throughput scaled by that payload ratio.
#   sudo scripts/bench-pmtu.sh [SECONDS] [REPS]
set -uo pipefail
cd "$(dirname "$0")/.."
DURATION=${1:-5}
REPS=${2:-3}
cargo build --release --quiet --bin hipbone || exit 1
HB=$PWD/target/release/hipbone
source tests/lab/common.sh

lab_init
pmtu_lab
HIT_A=$(node_hit a)
HIT_B=$(node_hit b)
median() { sort -g | awk '{ v[NR] = $1 } END { if (NR == 0) print "nan"; else if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
# TCP data per packet: TUN MTU 1400 less IPv6 40, TCP 20, timestamps 12; on a 1280 path
# the ESP payload (IPv4 outer 1215, IPv6 1195) less TCP 20 and timestamps 12.
data_1500=1328
data_1280_4=1183
data_1280_6=1163

# rate FAMILY CASE: median Gbit/s A→B and B→A over REPS runs, printed as "AB BA"; a run
# that fails counts as 0, is reported and counted (in files: rate runs in a subshell).
runs=$(lab_state)/runs
: >"$runs"
rate() {
  local ab=() ba=() i g
  for i in $(seq "$REPS"); do
    for dir in ab ba; do
      if [ $dir = ab ]; then g=$(iperf_gbits a "$HIT_B" "$DURATION"); else g=$(iperf_gbits b "$HIT_A" "$DURATION"); fi
      echo "$g" >>"$runs"
      [ "$g" = 0 ] && echo "  run failed: IPv$1 $2 $dir" >&2
      if [ $dir = ab ]; then ab+=("$g"); else ba+=("$g"); fi
    done
  done
  echo "$(printf '%s\n' "${ab[@]}" | median) $(printf '%s\n' "${ba[@]}" | median)"
}

printf '%-8s %-6s %-5s %10s %10s %8s\n' case outer dir "1500 Gb/s" "1280 Gb/s" ratio
for family in 4 6; do
  pmtu_nodes "$family" || exit 1
  lab_spawn a iperf3 -s >/dev/null 2>&1
  servers=$LAB_PID
  lab_spawn b iperf3 -s >/dev/null 2>&1
  servers="$servers $LAB_PID"
  sleep 0.3
  lab_exec a ping -6 -q -c 2 -W 2 "$HIT_B" >/dev/null
  read -r base_ab base_ba <<<"$(rate "$family" 1500)"
  for case in edge middle; do
    pmtu_set "$case" 1280
    read -r ab ba <<<"$(rate "$family" "$case")"
    pmtu_set "$case" 1500
    data=$([ "$family" = 4 ] && echo $data_1280_4 || echo $data_1280_6)
    for d in ab ba; do
      base=$([ $d = ab ] && echo "$base_ab" || echo "$base_ba")
      got=$([ $d = ab ] && echo "$ab" || echo "$ba")
      python3 -c "
base, got = $base, $got
want = base * $data / $data_1500
print('%-8s %-6s %-5s %10.3f %10.3f %7.0f%%' % ('$case', 'IPv$family', '$d', base, got, 100 * got / want if want else 0))"
    done
  done
  kill $servers 2>/dev/null
  node_down a
  node_down b
done
echo "runs: $(wc -l <"$runs") attempted, $(grep -cx 0 "$runs") failed; ratio = 1280 throughput / (1500 throughput × $data_1280_4/$data_1500 (IPv4) or $data_1280_6/$data_1500 (IPv6)); goal ≥ 80 %"
