#!/usr/bin/env bash
# NAT traversal measurement (not a test): the NAT lab of tests/lab/nat.sh (A behind NA, B
# behind NB, relay R, real nftables NATs). For every pair of NAT kinds it reports the path
# the association settles on, the time to first byte of a fresh TCP connection to B's HIT
# (base exchange through R included), and single-stream iperf3 throughput from A to B once
# the path settled. Last, the median throughput of relayed pairs as a share of the median
# of direct pairs, measured in the same run (goal: at least 50 %).
# A pair whose nodes do not come up, whose path does not settle on the path hole punching
# allows there (tests/lab/nat_nodes.sh `expected`), whose first byte does not arrive or
# whose iperf3 run fails is a failed row: it says why, iperf3 is not run on an unsettled
# path, it enters no median, and the script ends with the number of failed pairs and exits
# 1 if there is any.
#   sudo scripts/bench-nat.sh [SECONDS_PER_IPERF]
set -uo pipefail
cd "$(dirname "$0")/.."
DURATION=${1:-5}
cargo build --release --quiet --bin hipbone
HB=$PWD/target/release/hipbone
source tests/lab/common.sh
source tests/lab/nat_topology.sh
source tests/lab/nat_nodes.sh

nat_topology_up || exit 1
nat_nodes_init
# The relay's rate quota is lifted: this measures the path, not the quota.
relay_config "max_rate = 10000000000"

median() { sort -g | awk '{ v[NR] = $1 } END { if (NR == 0) print "nan"; else if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

# ttfb: ms from A's connect to B's HIT (no association yet) until B's first byte arrives.
ttfb() {
  lab_exec a python3 - "$HIT_B" <<'PY'
import socket, sys, time
t = time.time()
s = socket.create_connection((sys.argv[1], 5002), timeout=20)
s.recv(1)
print("%.0f" % ((time.time() - t) * 1000))
PY
}

printf '%-16s %-16s %-8s %9s %12s\n' "NAT A" "NAT B" path "TTFB ms" "Gbit/s"
: >"$dir/direct"
: >"$dir/relayed"
pairs=0
failed=0
# row TA TB PATH TTFB GBITS [WHY]: prints a row; with WHY it is a failed row.
row() {
  printf '%-16s %-16s %-8s %9s %12s%s\n' "$1" "$2" "$3" "$4" "$5" "${6:+   FAILED: $6}"
  [ -z "${6:-}" ] || failed=$((failed + 1))
}
for ta in none full_cone port_restricted symmetric; do
  for tb in none full_cone port_restricted symmetric; do
    pairs=$((pairs + 1))
    nat_set "$ta" NA && nat_set "$tb" NB || { row "$ta" "$tb" - - - "NATs not set"; continue; }
    if ! nodes_up; then
      row "$ta" "$tb" - - - "nodes did not come up or register"
      nodes_down
      continue
    fi
    lab_spawn b socat TCP6-LISTEN:5002,reuseaddr,fork SYSTEM:'printf x' >/dev/null 2>&1
    server=$LAB_PID
    lab_spawn b iperf3 -s -1 >/dev/null 2>&1
    iperf_server=$LAB_PID
    sleep 0.3
    want=$(expected "$ta" "$tb")
    if ! first=$(ttfb 2>/dev/null) || [ -z "$first" ]; then
      row "$ta" "$tb" - - - "no first byte"
    elif ! path_settles a b "$want" 2>/dev/null; then
      row "$ta" "$tb" "$(path a b | cut -d' ' -f1)" "$first" - "path did not settle on $want"
    else
      gbits=$(iperf_gbits a "$HIT_B" "$DURATION")
      if [ "$gbits" = 0 ]; then
        row "$ta" "$tb" "$want" "$first" - "iperf3 failed"
      else
        row "$ta" "$tb" "$want" "$first" "$gbits"
        echo "$gbits" >>"$dir/$want"
      fi
    fi
    kill "$server" "$iperf_server" 2>/dev/null
    nodes_down
  done
done
direct=$(median <"$dir/direct")
relayed=$(median <"$dir/relayed")
echo
echo "median direct:  $direct Gbit/s ($(wc -l <"$dir/direct") pairs)"
echo "median relayed: $relayed Gbit/s ($(wc -l <"$dir/relayed") pairs)"
python3 -c "import sys; d, r = float(sys.argv[1]), float(sys.argv[2]); print('relayed / direct: %.0f %% (goal: at least 50 %%)' % (100 * r / d if d else 0))" "$direct" "$relayed"
echo "pairs: $pairs attempted, $failed failed"
[ "$failed" = 0 ]
