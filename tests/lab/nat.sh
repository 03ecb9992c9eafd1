#!/usr/bin/env bash
# NAT traversal between real nodes, through real nftables NATs (tests/lab/nat_topology.sh):
# A behind NAT NA, B behind NAT NB, a relay server R on the public side. A and B register
# with R; A knows B only by its HIT and R's address.
#
# 1. For each pair of NAT kinds (none, full cone, port-restricted, symmetric), a TCP
#    transfer from A to B's HIT completes with a matching SHA-256, and the association ends
#    on a direct path wherever hole punching can work, relayed through R for the rest.
# 2. NAT rebinding mid-transfer: a flush of a symmetric NAT's conntrack (new random port),
#    and a new public port behind two port-restricted NATs. The transfer survives.
# 3. An idle association outlives the NAT's UDP timeout (5 s here): keepalives every 2 s.
# 4. R relays nothing for a host that did not register, and enforces its byte quota.
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
nat_nodes_init

# send_blob BYTES [TIMEOUT]: A sends BYTES random bytes to B's HIT; true if B got them intact.
send_blob() {
  local want
  head -c "$1" /dev/urandom >"$dir/blob"
  want=$(sha256sum <"$dir/blob" | cut -d' ' -f1)
  rm -f "$dir/got"
  lab_exec b timeout "${2:-30}" sh -c \
    "socat -u TCP6-LISTEN:5001,reuseaddr - | sha256sum | cut -d' ' -f1 >'$dir/got'" &
  local receiver=$!
  sleep 0.3
  lab_exec a timeout "${2:-30}" socat -u "OPEN:$dir/blob" "TCP6:[$HIT_B]:5001" 2>/dev/null
  local sent=$?
  wait "$receiver"
  [ "$sent" = 0 ] && [ -f "$dir/got" ] && [ "$want" = "$(cat "$dir/got")" ]
}

# 1. The matrix.
for ta in none full_cone port_restricted symmetric; do
  for tb in none full_cone port_restricted symmetric; do
    nat_set "$ta" NA && nat_set "$tb" NB || { check "NATs $ta/$tb set" false; continue; }
    if ! nodes_up; then
      check "$ta/$tb: nodes up and registered" false
      nodes_down
      continue
    fi
    want=$(expected "$ta" "$tb")
    check "$ta/$tb: 4 MB from A to B's HIT, SHA-256 matches" send_blob 4M
    check "$ta/$tb: A's path is $want" path_settles a b "$want"
    check "$ta/$tb: B's path is $want" path_settles b a "$want"
    nodes_down
  done
done

# The later scenarios start from a pair of NATs with the nodes up (and for some, a direct
# path): each such precondition is a check of its own, and the checks that rely on it run
# only if it held — a failed precondition fails the test, it never skips a scenario quietly.
nats_and_nodes() { nat_set "$1" NA && nat_set "$2" NB && nodes_up; }
# The association starts with the first packet; its path can settle only after that.
a_reaches_b() { lab_exec a ping -6 -c 2 -W 2 "$HIT_B" >/dev/null; }

# 2. NAT rebinding mid-transfer (tests/lab/common.sh's transfer_while: 15 MB/s, no reset).
head -c 45M /dev/urandom >"$dir/blob"
if check "symmetric/full cone: nodes up and registered" nats_and_nodes symmetric full_cone &&
  check "symmetric/full cone: A reaches B" a_reaches_b &&
  check "symmetric/full cone: direct before the flush" path_settles a b direct; then
  check "symmetric/full cone: conntrack flush on NA mid-transfer, no reset, SHA-256 matches" \
    transfer_while nat_flush NA
  check "symmetric/full cone: direct again after the flush" path_settles a b direct
fi
nodes_down

if check "port-restricted pair: nodes up and registered" nats_and_nodes port_restricted port_restricted &&
  check "port-restricted pair: A reaches B" a_reaches_b &&
  check "port-restricted pair: direct before the rebinding" path_settles a b direct; then
  check "port-restricted pair: new public port on NA mid-transfer, no reset, SHA-256 matches" \
    transfer_while nat_rebind NA
  check "port-restricted pair: B's relay follows A's new port" \
    sh -c "'$HB' status -c '$dir/r.toml' | grep -q 'locator: $(nat_addr na):'"
fi
nodes_down

# 3. Idle longer than the NAT's UDP timeout; then B, not A, speaks first.
nat_udp_timeout NA 5
nat_udp_timeout NB 5
if check "idle test: nodes up and registered" nats_and_nodes port_restricted port_restricted &&
  check "idle test: A reaches B" a_reaches_b; then
  keepalive=$(node_field a "[x.get('keepalive_in') for x in s['associations'] if x['name'] == 'b'][0]")
  check "keepalives are on (next in ${keepalive%.*} s)" test -n "$keepalive" -a "$keepalive" != None
  sleep 12
  check "after 12 s idle (NAT timeout 5 s) B reaches A at once" lab_exec b ping -6 -c 1 -W 2 "$HIT_A"
fi
nodes_down
nat_udp_timeout NA 30
nat_udp_timeout NB 30

# 4. A host that did not register gets nothing relayed; quotas hold.
relay_config "max_bytes = 3000000"
if check "quota test: nodes up and registered" nats_and_nodes symmetric symmetric &&
  check "relayed, under R's quota: 1 MB arrives" send_blob 1M; then
  send_blob 8M 8 && over=no || over=yes
  check "over R's 3 MB quota: 8 MB does not" test "$over" = yes
  check "R counts what it refused over quota" \
    sh -c "'$HB' status -c '$dir/r.toml' | grep -q 'over quota [1-9]'"
fi
nodes_down

# A host that R does not serve: S (public, not registered) tries to reach A, which is down
# and so not registered either, through R.
relay_config
check "R up" node_up r
cat >"$dir/s.toml" <<TOML
[interface]
identity = "$(node_key s)"
control = "$dir/s.sock"

[[peer]]
hit = "$HIT_A"
locators = ["$R_ADDR:10500"]
name = "a"
TOML
check "S up" node_up s
before=$(node_field r 's["counters"]["hip_dropped"]')
lab_exec s ping -6 -c 2 -W 1 "$HIT_A" >/dev/null 2>&1 && reached=yes || reached=no
check "S reaches nobody through R for a HIT not registered there" test "$reached" = no
after=$(node_field r 's["counters"]["hip_dropped"]')
check "R dropped S's I1s ($before -> $after)" test "$after" -gt "$before"
relayed=$(node_field r 's["relay"]')
check "and relayed nothing ($relayed)" sh -c "echo '$relayed' | grep -q 'relayed 0 control, 0 ESP'"
node_down s
node_down r
finish
