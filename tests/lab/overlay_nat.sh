#!/usr/bin/env bash
# Overlay members behind real nftables NATs (tests/lab/nat_topology.sh), configured with
# nothing but `[overlay]` (its name and the bootstraps R and S) — no `[[peer]]`:
#
#   R  203.0.113.2   bootstrap, serves as relay ([nat] relay = true)
#   S  203.0.113.18  bootstrap, serves as relay
#   A  behind NA (port-restricted cone), B behind NB (symmetric)
#
# A and B say `[nat] behind = true`: the lab's private side uses documentation addresses
# (LAB.md), which the node cannot tell from public ones; on a real LAN (RFC 1918) the node
# finds out alone (tests/sim_nodes_nat.rs runs that case).
#
# 1. All four join one ring (both bootstraps list each other); A and B register with R
#    and S as their relays.
# 2. A's record, fetched from S, names R and S as its relays.
# 3. A and B reach each other, and S reaches both, by HIT alone (ping, one reply within 30
#    s: a directory lookup that misses is answered "address unreachable" and cached for
#    5 s, so the first pings can fail; see docs/OVERLAY.md for the misses).
# 4. TCP between the two NATed members by HIT carries data intact.
# 5. R crashes: A's record then names S alone, and S and B still reach A by its HIT.
set -uo pipefail
cd "$(dirname "$0")/../.."
HB=${HB:-$PWD/target/release/hipbone}
source tests/lab/common.sh
source tests/lab/nat_topology.sh
source tests/lab/nat_nodes.sh

nat_topology_up || {
  echo "FAIL the NAT lab could not be built"
  exit 1
}
nat_set symmetric nb
dir=$(lab_state)
for n in r s a b; do node_key "$n" >/dev/null; done
declare -A HIT
for n in r s a b; do HIT[$n]=$(node_hit "$n"); done
R_ADDR=$(nat_addr r)

S_ADDR=$(nat_addr s)

# member_config NAME [NAT_KEYS]: an overlay member knowing only the bootstraps R and S.
member_config() {
  cat >"$dir/$1.toml" <<TOML
[interface]
identity = "$(node_key "$1")"
control = "$dir/$1.sock"

[nat]
${2:-}

[overlay]
name = "nat.lab.example"

[[overlay.bootstrap]]
hit = "${HIT[r]}"
locators = ["$R_ADDR:10500"]

[[overlay.bootstrap]]
hit = "${HIT[s]}"
locators = ["$S_ADDR:10500"]
TOML
}
member_config r "relay = true"
member_config s "relay = true"
member_config a "behind = true"
member_config b "behind = true"
ostatus() { "$HB" overlay -c "$dir/$1.toml" status 2>/dev/null; }
fetch() { "$HB" overlay -c "$dir/$1.toml" fetch "$2"; }
joined() { [ "$(ostatus "$1" | python3 -c 'import json,sys; print(json.load(sys.stdin)["joined"])' 2>/dev/null)" = True ]; }

node_up r && node_up s && node_up a && node_up b || {
  finish
  exit 1
}
all_joined=1
for _ in $(seq 60); do
  joined r && joined s && joined a && joined b && { all_joined=0; break; }
  sleep 1
done
for n in r s a b; do echo "  $n ${HIT[$n]}: $(joined "$n" && echo joined || echo 'not joined')"; done
check "R, S and the members behind NATs (port-restricted, symmetric) join the ring" test "$all_joined" = 0
check "A registered with a relay" registered a
check "B registered with a relay" registered b

# Right after the ring forms, a fetch or lookup can miss (docs/OVERLAY.md, the transient
# Fetch timeouts): the records are looked at once it had half a minute to settle.
sleep 30
record=""
for _ in $(seq 60); do
  record=$(fetch s "${HIT[a]}" 2>&1)
  grep -q "relayed $R_ADDR:10500 via ${HIT[r]}" <<<"$record" &&
    grep -q "relayed $S_ADDR:10500 via ${HIT[s]}" <<<"$record" && break
  sleep 1
done
echo "  A's record, fetched from S: $record"
check "A's record names R as its relay" grep -q "relayed $R_ADDR:10500 via ${HIT[r]}" <<<"$record"
check "A's record names S as its relay" grep -q "relayed $S_ADDR:10500 via ${HIT[s]}" <<<"$record"

check "A pings B (symmetric NAT) by its HIT" lab_exec a ping -6 -c 1 -w 30 "${HIT[b]}"
check "B pings A (port-restricted NAT) by its HIT" lab_exec b ping -6 -c 1 -w 30 "${HIT[a]}"
check "S pings A by its HIT" lab_exec s ping -6 -c 1 -w 30 "${HIT[a]}"
check "S pings B by its HIT" lab_exec s ping -6 -c 1 -w 30 "${HIT[b]}"
echo "  A's path to B: $(node_field a "[x.get('path') for x in s['associations'] if x['peer'] == '${HIT[b]}']" 2>/dev/null)"

head -c 1000000 /dev/urandom >"$dir/blob"
want=$(sha256sum <"$dir/blob" | cut -d' ' -f1)
lab_exec b timeout 30 sh -c "socat -u TCP6-LISTEN:5001,reuseaddr - | sha256sum | cut -d' ' -f1 >'$dir/got'" &
receiver=$!
sleep 0.3
lab_exec a timeout 30 socat -u "OPEN:$dir/blob" "TCP6:[${HIT[b]}]:5001" 2>/dev/null
wait "$receiver"
check "1 MB from A to B by HIT over TCP arrives intact" test "$want" = "$(cat "$dir/got" 2>/dev/null)"

# R crashes (SIGKILL): A notices that its relay is gone and its record names S alone.
node_crash r
fetched=1
for _ in $(seq 60); do
  record=$(fetch s "${HIT[a]}" 2>&1)
  fetched=$?
  [ "$fetched" = 0 ] && ! grep -q "via ${HIT[r]}" <<<"$record" && grep -q "via ${HIT[s]}" <<<"$record" && break
  sleep 1
done
echo "  A's record after R died: $record"
# A record that could not be fetched names nobody: that is no pass.
check "after R died, A's record is fetched" test "$fetched" = 0
check "and no longer names R" test "$fetched" = 0 -a "$(grep -c "via ${HIT[r]}" <<<"$record")" = 0
check "and still names S" grep -q "relayed $S_ADDR:10500 via ${HIT[s]}" <<<"$record"
check "S pings A by its HIT after R died" lab_exec s ping -6 -c 1 -w 30 "${HIT[a]}"
check "B pings A by its HIT after R died" lab_exec b ping -6 -c 1 -w 30 "${HIT[a]}"
finish
