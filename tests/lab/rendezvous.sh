#!/usr/bin/env bash
# Rendezvous between real nodes: B registers with a rendezvous server on the router R; A
# knows only R's address and B's HIT, and reaches B through R.
#
#   ┌ hb-a ───────────┐         ┌ hb-r ─────────────────────┐         ┌ hb-b ───────────┐
#   │ 198.51.100.2    ├─────────┤ 198.51.100.1  203.0.113.1 ├─────────┤ 203.0.113.2     │
#   │ hipbone up      │         │ hipbone up (rendezvous)   │         │ hipbone up      │
#   │ peer B via R    │         └───────────────────────────┘         │ registered at R │
#   └─────────────────┘                                               └─────────────────┘
#
# Then B moves to another address: R follows it (B's UPDATE), and a new exchange from A,
# again through R, finds B at its new address. Last, both move at once (the double jump):
# A's announcement, unanswered at B's old address, is retried through R.
set -uo pipefail
cd "$(dirname "$0")/../.."
HB=${HB:-$PWD/target/release/hipbone}
source tests/lab/common.sh

lab_init
lab_routed
lab_link r b 203.0.113.128/25
lab_link r a 198.51.100.128/25
dir=$(lab_state)
for n in a r b; do node_key "$n" >/dev/null; done
HIT_A=$(node_hit a)
HIT_B=$(node_hit b)
HIT_R=$(node_hit r)
cat >"$dir/r.toml" <<TOML
[interface]
identity = "$(node_key r)"
control = "$dir/r.sock"
rendezvous = true
TOML
cat >"$dir/b.toml" <<TOML
[interface]
identity = "$(node_key b)"
control = "$dir/b.sock"

[[peer]]
hit = "$HIT_R"
locators = ["203.0.113.1:10500"]
name = "rvs"
rendezvous = true

[[peer]]
hit = "$HIT_A"
locators = ["198.51.100.2:10500"]
name = "a"
TOML
# A knows B only through the rendezvous server's address.
node_config a b 198.51.100.1:10500
node_up r && node_up b && node_up a || { finish; exit 1; }

registered() {
  for _ in $(seq 30); do
    [ "$(node_field r '[x["peer"] for x in s["associations"]]' 2>/dev/null)" = "['$HIT_B']" ] && return 0
    sleep 0.1
  done
  return 1
}
check "B registered with the rendezvous server" registered
check "A reaches B by HIT, through R" lab_exec a ping -6 -c 3 -W 2 "$HIT_B"
locator=$(node_field a '[x["locator"] for x in s["associations"]][0]')
check "then A talks to B directly ($locator)" test "$locator" = "203.0.113.2:10500"

# B moves; A's association is dropped, and a new exchange through R finds B.
lab_exec b ip addr del 203.0.113.2/25 dev "$(lab_if b r)"
lab_exec b ip route replace default via 203.0.113.129
following() {
  for _ in $(seq 30); do
    [ "$(node_field r '[x["locator"] for x in s["associations"]][0]')" = "203.0.113.130:10500" ] && return 0
    sleep 0.2
  done
  return 1
}
check "R follows B to its new address" following
node_down a
node_up a
check "a fresh A finds B at its new address through R" lab_exec a ping -6 -c 3 -W 3 "$HIT_B"
locator=$(node_field a '[x["locator"] for x in s["associations"]][0]')
check "and talks to it directly ($locator)" test "$locator" = "203.0.113.130:10500"

# The double jump: both move at the same moment, mid-transfer. Each one's announcement
# goes to the other's old address; A's, retried through R, reaches B where it is now.
head -c 60M /dev/urandom >"$dir/blob"
a_link3() { awk '$1 == "a" && $2 == "r" { n++; if (n == 2) print $3 }' "$dir/ifs"; }
both_move() {
  lab_exec b ip addr add 203.0.113.2/25 dev "$(lab_if b r)"
  lab_exec b ip route replace default via 203.0.113.1
  lab_exec b ip addr del 203.0.113.130/25 dev "$(awk '$1 == "b" && $2 == "r" { n++; if (n == 2) print $3 }' "$dir/ifs")"
  lab_exec a ip route replace default via 198.51.100.129
  lab_exec a ip addr del 198.51.100.2/25 dev "$(lab_if a r)"
}
check "both move at once mid-transfer: no reset, SHA-256 matches" transfer_while both_move
locator=$(node_field a '[x["locator"] for x in s["associations"]][0]')
check "A follows B ($locator)" test "$locator" = "203.0.113.2:10500"
locator=$(node_field b '[x["locator"] for x in s["associations"] if x["name"] == "a"][0]')
check "B follows A ($locator)" test "$locator" = "198.51.100.130:10500"
finish
