#!/usr/bin/env bash
# Paths with a small MTU: TCP over HITs must adapt, not stall. A and B are two routers apart;
# one link has an MTU of 1280 — B's own link (both ends, as on a PPPoE or mobile link), or
# the link between the routers only (A and B see 1500 and learn the rest from ICMP). For
# each case, both outer families (B configured by its IPv4 or its IPv6 locator) and both
# directions: an iperf3 run whose every second carries data, and a file that arrives
# intact. Throughput against the same lab at MTU 1500 is measured by
# scripts/bench-pmtu.sh (tests hold no timing thresholds).
#
#   A ── 198.51.100.0/26 ── R1 ── 198.51.100.64/26 ── R2 ── 203.0.113.0/25 ── B
#        2001:db8:1::/64          2001:db8:3::/64            2001:db8:2::/64
#                           "middle": MTU 1280        "edge": MTU 1280
set -uo pipefail
cd "$(dirname "$0")/../.."
HB=${HB:-$PWD/target/release/hipbone}
source tests/lab/common.sh

SECONDS_PER_RUN=${SECONDS_PER_RUN:-4}
lab_init
pmtu_lab
dir=$(lab_state)
HIT_A=$(node_hit a)
HIT_B=$(node_hit b)
head -c 8000000 /dev/urandom >"$dir/blob"

# steady FROM TO_HIT: an iperf3 run from FROM to TO_HIT whose every interval moved data.
steady() {
  local json
  json=$(lab_exec "$1" iperf3 -c "$2" -t "$SECONDS_PER_RUN" -J 2>/dev/null)
  python3 - "$json" <<'PY'
import json, sys
try:
    r = json.loads(sys.argv[1])
    rates = [i["sum"]["bits_per_second"] for i in r["intervals"]]
except Exception as e:
    print("    no iperf3 result:", e); sys.exit(1)
print("    Mbit/s per second:", " ".join("%.0f" % (x / 1e6) for x in rates))
sys.exit(0 if rates and min(rates) > 0 else 1)
PY
}

# intact FROM TO TO_HIT: the blob sent over TCP from FROM to TO's HIT hashes the same there.
intact() {
  local want got
  want=$(sha256sum <"$dir/blob" | cut -d' ' -f1)
  lab_exec "$2" sh -c "timeout 30 socat -u TCP6-LISTEN:5002,reuseaddr - | sha256sum | cut -d' ' -f1 >'$dir/got'" &
  local receiver=$!
  sleep 0.3
  lab_exec "$1" timeout 30 socat -u "FILE:$dir/blob" "TCP6:[$3]:5002" || true
  wait "$receiver"
  got=$(cat "$dir/got")
  [ "$want" = "$got" ]
}

for case in edge middle; do
  pmtu_set "$case" 1280
  for family in 4 6; do
    pmtu_nodes "$family" || { finish; exit 1; }
    lab_spawn a iperf3 -s >/dev/null 2>&1
    servers=$LAB_PID
    lab_spawn b iperf3 -s >/dev/null 2>&1
    servers="$servers $LAB_PID"
    sleep 0.3
    check "$case, IPv$family outer: A reaches B" lab_exec a ping -6 -q -c 2 -W 2 "$HIT_B" >/dev/null
    check "$case, IPv$family outer: A→B never stalls" steady a "$HIT_B"
    check "$case, IPv$family outer: B→A never stalls" steady b "$HIT_A"
    check "$case, IPv$family outer: 8 MB A→B intact" intact a b "$HIT_B"
    check "$case, IPv$family outer: 8 MB B→A intact" intact b a "$HIT_A"
    for n in a b; do
      echo "    $n: path MTU $(node_field "$n" '[x.get("path_mtu") for x in s["associations"]]'), send failures $(node_field "$n" 's["counters"]["udp_send_failed"]')"
    done
    kill $servers 2>/dev/null
    node_down a
    node_down b
  done
  pmtu_set "$case" 1500
done

finish
