#!/usr/bin/env bash
# Hosts move to another network in the middle of a TCP transfer (topology: mobile_lab in
# tests/lab/common.sh — A and B each with two links to a router):
#
#   A ── link 1 (198.51.100.2, removed mid-way) ──┐   ┌── link 2 (203.0.113.2) ──── B
#                                                  R
#   A ── link 3 (198.51.100.130) ─────────────────┘   └── link 4 (203.0.113.130) ── B
#
# A sends 60 MB to B over HITs at about 15 MB/s. Two seconds in, A's address on link 1 is
# removed and its default route moved to link 3. A's node learns it from netlink and tells
# B by UPDATE; B checks the new address and moves. The transfer must finish intact, over
# the same TCP connection. Then the same with B moving from link 2 to link 4; a failover
# when A's preferred link goes down while its other link stays up; a failover when the
# path over a link stops carrying traffic while the link stays up (found by silence and
# probes); and a move from IPv4 to IPv6.
set -uo pipefail
cd "$(dirname "$0")/../.."
HB=${HB:-$PWD/target/release/hipbone}
source tests/lab/common.sh

mobile_lab || { finish; exit 1; }
dir=$(lab_state)
HIT_B=$(node_hit b)
check "A reaches B by HIT" lab_exec a ping -6 -c 2 -W 2 "$HIT_B"

head -c 60M /dev/urandom >"$dir/blob"

# A moves from link 1 to link 3.
move_a() {
  lab_exec a ip addr del 198.51.100.2/25 dev "$(lab_if a r)"
  lab_exec a ip route replace default via 198.51.100.129
}
check "A moves mid-transfer: no reset, SHA-256 matches" transfer_while move_a
locator=$(node_field b '[x["locator"] for x in s["associations"]][0]')
check "B now sends to A's new address ($locator)" test "$locator" = "198.51.100.130:10500"

# B moves from link 2 to link 4.
move_b() {
  lab_exec b ip addr del 203.0.113.2/25 dev "$(lab_if b r)"
  lab_exec b ip route replace default via 203.0.113.129
}
check "B moves mid-transfer: no reset, SHA-256 matches" transfer_while move_b
locator=$(node_field a '[x["locator"] for x in s["associations"]][0]')
check "A now sends to B's new address ($locator)" test "$locator" = "203.0.113.130:10500"
# Failover: A has both links again, link 3 preferred (a lower metric); link 3 goes down.
# The kernel routes over link 1, authenticated ESP arrives at B from A's address there, B
# checks it and follows.
lab_exec a ip addr add 198.51.100.2/25 dev "$(lab_if a r)"
lab_exec a ip route replace default via 198.51.100.129 metric 10
lab_exec a ip route add default via 198.51.100.1 metric 100
sleep 1
# A's interface on link 3 (its second link to R).
a_link3() { awk '$1 == "a" && $2 == "r" { n++; if (n == 2) print $3 }' "$dir/ifs"; }
link_down() { lab_exec a ip link set dev "$(a_link3)" down; }
check "A's preferred link fails mid-transfer: no reset, SHA-256 matches" transfer_while link_down
locator=$(node_field b '[x["locator"] for x in s["associations"]][0]')
check "B follows A to its other link ($locator)" test "$locator" = "198.51.100.2:10500"
# Failover on silence: both of A's links are up again, each address routed over its own
# link (source routing, as a multihomed host has it), A's traffic on link 1. Then R drops
# everything on link 1 while the link stays up: no address or link event tells anyone. A
# and B notice that nothing comes back, probe their paths, and move to link 3.
lab_exec a ip link set dev "$(a_link3)" up
lab_exec a ip route replace default via 198.51.100.129 metric 10
lab_exec a ip rule add from 198.51.100.2 table 101
lab_exec a ip route add default via 198.51.100.1 table 101
lab_exec a ip rule add from 198.51.100.130 table 103
lab_exec a ip route add default via 198.51.100.129 table 103
sleep 1
a_local() { node_field a '[x["local"] for x in s["associations"]][0]'; }
check "A's traffic is on link 1 before ($(a_local))" test "$(a_local)" = "198.51.100.2:10500"
r_link1() { awk '$1 == "r" && $2 == "a" { print $3; exit }' "$dir/ifs"; }
blackhole() {
  lab_exec r nft -f - <<EOF
table inet blackhole {
  chain forward {
    type filter hook forward priority 0;
    iifname "$(r_link1)" drop
    oifname "$(r_link1)" drop
  }
}
EOF
}
check "A's path over link 1 goes silent mid-transfer: no reset, SHA-256 matches" transfer_while blackhole
locator=$(node_field b '[x["locator"] for x in s["associations"]][0]')
check "B follows A to link 3 ($locator)" test "$locator" = "198.51.100.130:10500"
check "A sends from link 3 ($(a_local))" test "$(a_local)" = "198.51.100.130:10500"
lab_exec r nft delete table inet blackhole
# A leaves IPv4 altogether: its nodes announce from IPv6, to B's IPv6 locator, and both
# ends move to IPv6 (the tunnel's inner packets are IPv6 between HITs either way).
drop_ipv4() { lab_exec a ip -4 addr flush scope global; }
check "A moves from IPv4 to IPv6 mid-transfer: no reset, SHA-256 matches" transfer_while drop_ipv4
locator=$(node_field b '[x["locator"] for x in s["associations"]][0]')
check "B sends to A over IPv6 now ($locator)" test "$locator" = "[2001:db8:1::2]:10500"
locator=$(node_field a '[x["locator"] for x in s["associations"]][0]')
check "A sends to B over IPv6 now ($locator)" test "$locator" = "[2001:db8:2::2]:10500"
finish
