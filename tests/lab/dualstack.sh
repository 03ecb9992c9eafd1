#!/usr/bin/env bash
# Dual-stack moves: A and B have an IPv4 and an IPv6 address each; A is configured with
# both of B's, B with nothing (it learns A's addresses from A). During a paced TCP transfer from A to B by HIT (checked end to end
# by SHA-256): A goes from IPv4-only to IPv6-only, then back to IPv4-only; B loses its IPv4
# address and gets it back. Each new address comes before its default route, as DHCP and
# router advertisements deliver them. Every transfer must arrive intact.
#
# The gap of each move is measured from captures on the same clock: the longest stretch
# without ESP arriving at B from A, and at A from B, in the seconds around the move (a
# paced transfer sends both ways every fraction of a millisecond). RUNS=N repeats the
# scenarios and prints medians (scripts/bench-handover.sh records them).
#
#   A ── 198.51.100.0/25, 2001:db8:1::/64 ── R ── 203.0.113.0/25, 2001:db8:2::/64 ── B
set -uo pipefail
cd "$(dirname "$0")/../.."
HB=${HB:-$PWD/target/release/hipbone}
source tests/lab/common.sh

RUNS=${RUNS:-1}
# The sender writes 16 KB about every millisecond, so that a gap in the traffic is the
# move's and not the pacing's.
export CHUNK=16384
lab_init
lab_routed
dir=$(lab_state)
node_key a >/dev/null
node_key b >/dev/null
# A knows both of B's locators; B knows nothing of A but what A tells it.
node_config a b "203.0.113.2:10500 [2001:db8:2::2]:10500"
cat >"$dir/b.toml" <<TOML
[interface]
identity = "$(node_key b)"
control = "$dir/b.sock"
TOML
node_up a && node_up b || { finish; exit 1; }
HIT_B=$(node_hit b)
IF_A=$(lab_if a r)
IF_B=$(lab_if b r)
head -c 90000000 /dev/urandom >"$dir/blob"
check "A reaches B by HIT" lab_exec a ping -6 -q -c 2 -W 2 "$HIT_B" >/dev/null

# v4 HOST on|off, v6 HOST on|off: an address (before its default route) comes or goes.
v4() {
  local host=$1 addr gw dev
  [ "$host" = a ] && addr=198.51.100.2/25 gw=198.51.100.1 dev=$IF_A
  [ "$host" = b ] && addr=203.0.113.2/25 gw=203.0.113.1 dev=$IF_B
  if [ "$2" = on ]; then
    lab_exec "$host" ip addr add "$addr" dev "$dev"
    lab_exec "$host" ip route replace default via "$gw"
  else
    lab_exec "$host" ip addr del "$addr" dev "$dev"
  fi
}
v6() {
  local host=$1 addr gw dev
  [ "$host" = a ] && addr=2001:db8:1::2/64 gw=2001:db8:1::1 dev=$IF_A
  [ "$host" = b ] && addr=2001:db8:2::2/64 gw=2001:db8:2::1 dev=$IF_B
  if [ "$2" = on ]; then
    lab_exec "$host" ip addr add "$addr" dev "$dev" nodad
    lab_exec "$host" ip -6 route replace default via "$gw"
  else
    lab_exec "$host" ip addr del "$addr" dev "$dev"
  fi
}

# capture: inbound ESP-in-UDP at A and at B, until `captured` stops it.
capture() {
  lab_exec a tcpdump -U -n -Q in -i "$IF_A" -w "$dir/a.pcap" 'udp port 10500' >/dev/null 2>&1 &
  DUMP_A=$!
  lab_exec b tcpdump -U -n -Q in -i "$IF_B" -w "$dir/b.pcap" 'udp port 10500' >/dev/null 2>&1 &
  DUMP_B=$!
  sleep 0.5
}
captured() {
  sleep 0.2
  kill "$DUMP_A" "$DUMP_B" 2>/dev/null
  wait "$DUMP_A" "$DUMP_B" 2>/dev/null
}

# gap FILE T: the longest stretch in ms without a packet in pcap FILE, from 0.5 s before
# time T (seconds since the epoch, taken before the change) to 3 s after it.
gap() {
  python3 - "$1" "$2" <<'PY'
import struct, sys
data = open(sys.argv[1], "rb").read()
t0 = float(sys.argv[2])
magic = struct.unpack("<I", data[:4])[0]
scale = 1e-9 if magic == 0xA1B23C4D else 1e-6
times, off = [], 24
while off + 16 <= len(data):
    sec, frac, incl, _ = struct.unpack("<IIII", data[off:off + 16])
    times.append(sec + frac * scale)
    off += 16 + incl
window = [t for t in times if t0 - 0.5 <= t <= t0 + 3]
gaps = [b - a for a, b in zip(window, window[1:])]
print("%.1f" % (max(gaps) * 1000) if gaps else "nan")
PY
}

# moved NAME MOVE: runs a transfer during which the function MOVE moves a host; checks that
# the transfer arrived intact and records the gap both ways.
moved() {
  local name=$1 ok t ab ba
  capture
  if transfer_while "$2"; then ok=0; else ok=1; fi
  captured
  t=$(cat "$dir/t")
  ab=$(gap "$dir/b.pcap" "$t")
  ba=$(gap "$dir/a.pcap" "$t")
  echo "  $name: longest gap A→B $ab ms, B→A $ba ms"
  echo "$name $ab $ba" >>"$dir/gaps"
  check "$name: the transfer arrives intact" test "$ok" = 0
}

# The moves; each notes the time just before it changes anything.
now() { date +%s.%N >"$dir/t"; }
a_to_ipv6() { now; v6 a on; v4 a off; }
a_to_ipv4() { now; v4 a on; v6 a off; }
b_without_ipv4() { now; v4 b off; sleep 6; v4 b on; }

: >"$dir/gaps"
for run in $(seq "$RUNS"); do
  [ "$RUNS" = 1 ] || echo "run $run"
  # A starts IPv4-only.
  v6 a off
  sleep 0.5
  moved "A IPv4-only to IPv6-only" a_to_ipv6
  moved "A IPv6-only to IPv4-only" a_to_ipv4
  v6 a on
  sleep 0.5
  moved "B loses and regains IPv4" b_without_ipv4
done
if [ "$RUNS" -gt 1 ]; then
  echo "medians over $RUNS runs (A→B, B→A, ms):"
  python3 - "$dir/gaps" <<'PY'
import statistics, sys
rows = {}
for line in open(sys.argv[1]):
    *name, ab, ba = line.split()
    rows.setdefault(" ".join(name), []).append((float(ab), float(ba)))
for name, v in rows.items():
    print("  %-28s %6.1f %6.1f   worst %6.1f %6.1f" % (name,
        statistics.median(x for x, _ in v), statistics.median(y for _, y in v),
        max(x for x, _ in v), max(y for _, y in v)))
PY
fi

finish
