# Shared by the namespace lab tests: node set-up on top of scripts/lab.sh, and checks that
# count passes and failures. Source it after setting HB (the hipbone binary).
source "$(dirname "${BASH_SOURCE[0]}")/../../scripts/lab.sh"

PASSED=0
FAILED=0

# check NAME CMD...: runs CMD, records and prints the outcome, and returns it (so that a
# precondition can guard the checks that depend on it: `if check ...; then ...; fi`).
check() {
  local name=$1
  shift
  if "$@"; then
    PASSED=$((PASSED + 1))
    echo "ok   $name"
  else
    FAILED=$((FAILED + 1))
    echo "FAIL $name"
    return 1
  fi
}

# finish: the closing line the test runner reads, and the exit status.
finish() {
  echo "$PASSED passed, $FAILED failed"
  [ "$FAILED" -eq 0 ]
}

# node_config NAME PEER_NAME PEER_ADDRS [EXTRA_TOML]: a key and a config for node NAME in the
# lab's state directory, with PEER_NAME as its one static peer (its key must exist too).
node_key() {
  local key
  key="$(lab_state)/$1.key"
  [ -f "$key" ] || "$HB" genkey -o "$key" 2>/dev/null
  echo "$key"
}

node_hit() { "$HB" hit -k "$(node_key "$1")"; }

node_config() {
  local name=$1 peer=$2 peer_addrs=$3 extra=${4:-}
  local dir locators
  dir=$(lab_state)
  # PEER_ADDR may list several locators, separated by spaces.
  locators=$(printf '"%s", ' $peer_addrs)
  locators=${locators%, }
  cat >"$dir/$name.toml" <<TOML
[interface]
identity = "$(node_key "$name")"
control = "$dir/$name.sock"
$extra

[[peer]]
hit = "$(node_hit "$peer")"
locators = [$locators]
name = "$peer"
TOML
}

# node_up NAME: starts the node of host NAME and waits for its control socket.
node_up() {
  local dir
  dir=$(lab_state)
  lab_spawn "$1" "$HB" up -c "$dir/$1.toml" -vv >>"$dir/$1.log" 2>&1
  eval "NODE_PID_$1=$LAB_PID"
  for _ in $(seq 50); do
    "$HB" status -c "$dir/$1.toml" >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  echo "node $1 did not come up; its log:" >&2
  tail -20 "$dir/$1.log" >&2
  return 1
}

# node_down NAME: stops the node by the PID this script started.
node_down() {
  local pid_var="NODE_PID_$1"
  kill "${!pid_var}" 2>/dev/null
  wait "${!pid_var}" 2>/dev/null || true
}

# node_crash NAME: kills the node by its PID with SIGKILL: it leaves nothing in order.
node_crash() {
  local pid_var="NODE_PID_$1"
  kill -KILL "${!pid_var}" 2>/dev/null
  wait "${!pid_var}" 2>/dev/null || true
}

# ring_hosts "NODES": a router r and a host per node, the i-th (from 0) on its own /28 of
# 198.51.100.0/24 at 198.51.100.(16 i + 2), default route via 198.51.100.(16 i + 1) (the
# layout of the overlay lab and its benchmarks).
ring_hosts() {
  local i=0 n
  lab_host r && lab_router r || return
  for n in $1; do
    lab_host "$n" &&
      lab_link r "$n" "198.51.100.$((i * 16))/28" &&
      lab_exec "$n" ip route add default via "198.51.100.$((i * 16 + 1))" || return
    i=$((i + 1))
  done
}

node_status_json() { "$HB" status --json -c "$(lab_state)/$1.toml"; }

# node_field NAME PYTHON_EXPR: evaluates EXPR on the status JSON (as `s`) of node NAME.
node_field() {
  node_status_json "$1" | python3 -c "import json,sys; s=json.load(sys.stdin); print($2)"
}

# mobile_lab: A and B, each with two links to a router R; a node on A and on B, each
# configured with the other's address on its first link. Used by the mobility test and
# the handover benchmark.
#
#   A ── link 1 (198.51.100.0/25) ───┐   ┌── link 2 (203.0.113.0/25) ─── B
#                                     R
#   A ── link 3 (198.51.100.128/25) ─┘   └── link 4 (203.0.113.128/25) ─ B
mobile_lab() {
  lab_init
  lab_routed
  lab_link r a 198.51.100.128/25
  lab_link r b 203.0.113.128/25
  node_key a >/dev/null
  node_key b >/dev/null
  node_config a b "203.0.113.2:10500 [2001:db8:2::2]:10500"
  node_config b a "198.51.100.2:10500 [2001:db8:1::2]:10500"
  node_up a && node_up b
}

# transfer_while MOVE...: sends $dir/blob from A to B's HIT ($HIT_B) at about 15 MB/s with
# a paced sender that fails on any reset, runs MOVE two seconds in, and checks that what B
# received hashes like the blob. Sender and receiver are stopped after TRANSFER_LIMIT
# seconds (default: 30, plus a second per 1.5 MB of blob, ten times the paced transfer's
# time): a transfer that stalls fails the check instead of hanging the test.
transfer_while() {
  local dir want limit
  dir=$(lab_state)
  want=$(sha256sum <"$dir/blob" | cut -d' ' -f1)
  limit=${TRANSFER_LIMIT:-$(($(stat -c %s "$dir/blob") / 1500000 + 30))}
  rm -f "$dir/got"
  lab_exec b timeout "$limit" sh -c "socat -u TCP6-LISTEN:5001,reuseaddr - | sha256sum | cut -d' ' -f1 >'$dir/got'" &
  local receiver=$! sender sent
  sleep 0.3
  lab_exec a timeout "$limit" python3 - "$dir/blob" "$HIT_B" >"$dir/sender.log" 2>&1 <<'PY' &
import os, socket, sys, time
data = open(sys.argv[1], "rb").read()
s = socket.create_connection((sys.argv[2], 5001))
chunk, rate, start = int(os.environ.get("CHUNK", 256 * 1024)), 15e6, time.time()
for off in range(0, len(data), chunk):
    s.sendall(data[off:off + chunk])
    ahead = (off + chunk) / rate - (time.time() - start)
    if ahead > 0:
        time.sleep(ahead)
s.shutdown(socket.SHUT_WR)
s.recv(1)
PY
  sender=$!
  sleep 2
  "$@"
  wait "$sender"
  sent=$?
  wait "$receiver"
  [ "$sent" != 124 ] || echo "    the sender was stopped after $limit s" >&2
  [ "$sent" = 0 ] && [ -f "$dir/got" ] && [ "$want" = "$(cat "$dir/got")" ]
}

# iperf_gbits FROM ADDR SECONDS: one single-stream iperf3 run from host FROM to ADDR (an
# iperf3 server must be listening there); prints the receiver's Gbit/s, 0 on failure.
iperf_gbits() {
  lab_exec "$1" iperf3 -c "$2" -t "$3" -J 2>/dev/null |
    python3 -c 'import json,sys
try:
    print("%.3f" % (json.load(sys.stdin)["end"]["sum_received"]["bits_per_second"] / 1e9))
except Exception:
    print("0")'
}

# pmtu_lab: A and B two routers apart, for paths with a small MTU (tests/lab/pmtu.sh,
# scripts/bench-pmtu.sh). Keys for nodes a and b are made; pmtu_nodes starts them.
#
#   A ── 198.51.100.0/26 ── R1 ── 198.51.100.64/26 ── R2 ── 203.0.113.0/25 ── B
#        2001:db8:1::/64          2001:db8:3::/64            2001:db8:2::/64
pmtu_lab() {
  lab_host a
  lab_host r1
  lab_host r2
  lab_host b
  lab_router r1
  lab_router r2
  lab_link r1 a 198.51.100.0/26 2001:db8:1::/64
  lab_link r1 r2 198.51.100.64/26 2001:db8:3::/64
  lab_link r2 b 203.0.113.0/25 2001:db8:2::/64
  lab_exec a ip route add default via 198.51.100.1
  lab_exec a ip -6 route add default via 2001:db8:1::1
  lab_exec r1 ip route add 203.0.113.0/25 via 198.51.100.66
  lab_exec r1 ip -6 route add 2001:db8:2::/64 via 2001:db8:3::2
  lab_exec r2 ip route add 198.51.100.0/26 via 198.51.100.65
  lab_exec r2 ip -6 route add 2001:db8:1::/64 via 2001:db8:3::1
  lab_exec b ip route add default via 203.0.113.1
  lab_exec b ip -6 route add default via 2001:db8:2::1
  node_key a >/dev/null
  node_key b >/dev/null
}

# pmtu_set edge|middle MTU: the MTU of B's link (both ends) or of the link between the
# routers (both ends).
pmtu_set() {
  local x y
  case $1 in
    edge) x=r2 y=b ;;
    middle) x=r1 y=r2 ;;
  esac
  lab_exec "$x" ip link set "$(lab_if "$x" "$y")" mtu "$2"
  lab_exec "$y" ip link set "$(lab_if "$y" "$x")" mtu "$2"
}

# pmtu_nodes 4|6: nodes a and b, each configured with the other's locator of that family.
pmtu_nodes() {
  if [ "$1" = 4 ]; then
    node_config a b "203.0.113.2:10500"
    node_config b a "198.51.100.2:10500"
  else
    node_config a b "[2001:db8:2::2]:10500"
    node_config b a "[2001:db8:1::2]:10500"
  fi
  node_up a && node_up b
}
