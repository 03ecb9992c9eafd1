#!/usr/bin/env bash
# The NAT lab (tests/lab/nat_topology.sh) behaves as its NAT types promise, shown with plain
# UDP (tests/lab/nat_udp.py) and no hipbone, so that NAT tests of the nodes can rely on it:
#   1. mapping: from one socket of A to R:4001, R:4002 and S:4001, the public source R and S
#      see is one and port-preserving for the cone types, a new port per destination for
#      symmetric, A's own address for none;
#   2. filtering: once A sent to R:4001, R:4002 and S reach A only through full_cone (and none);
#      R:4001 always does;
#   3. hole punching A<->B to the mappings learned from R: port_restricted/port_restricted
#      works; symmetric/symmetric and port_restricted/symmetric fail; full_cone/symmetric works
#      only if A answers the source it saw;
#   4. nat_flush moves symmetric's mapping but not the cone types' (masquerade reuses the free
#      port); nat_rebind moves every type's, and the cone types stay endpoint-independent;
#   5. with UDP conntrack timeouts of 5 s, a mapping idle for 8 s no longer lets R in, one kept
#      alive every 2 s does (full_cone's static forward lets R in regardless).
#
#   A ─ NA ─┐              ┌─ R 203.0.113.2 (reflector on 4001, 4002)
#           ├─ inet ───────┼─ S 203.0.113.18 (reflector on 4001)
#   B ─ NB ─┘
set -uo pipefail
cd "$(dirname "$0")/../.."
source tests/lab/common.sh
source tests/lab/nat_topology.sh

nat_topology_up || {
  finish
  exit 1
}
dir=$(lab_state)
UDP=$PWD/tests/lab/nat_udp.py
R=$(nat_addr r)
S=$(nat_addr s)
lab_spawn r python3 -u "$UDP" serve 4001 4002 >>"$dir/r.log" 2>&1
lab_spawn s python3 -u "$UDP" serve 4001 >>"$dir/s.log" 2>&1

# An agent per inside host keeps UDP sockets open across the steps (commands in nat_udp.py).
declare -A AGENT_IN AGENT_OUT
agent_start() {
  local h=$1 in out
  mkfifo "$dir/agent-$h.in" "$dir/agent-$h.out"
  # Read-write opens do not wait for the other end.
  exec {in}<>"$dir/agent-$h.in" {out}<>"$dir/agent-$h.out"
  # Not lab_spawn: a background command's stdin is /dev/null unless redirected on its own line.
  ip netns exec "$(lab_ns "$h")" python3 -u "$UDP" agent <&"$in" >&"$out" 2>>"$dir/agent-$h.err" &
  echo "$!" >>"$dir/pids" # killed at teardown, like lab_spawn's
  AGENT_IN[$h]=$in
  AGENT_OUT[$h]=$out
}
# agent HOST CMD...: one command, its one-line answer on stdout.
agent() {
  local h=$1 line
  shift
  echo "$*" >&"${AGENT_IN[$h]}"
  read -r -t 10 -u "${AGENT_OUT[$h]}" line || line="no answer from the agent in $h"
  echo "$line"
}
# who HOST SOCK DEST: the public IP:PORT that DEST saw for socket SOCK of HOST.
who() {
  local seen
  seen=$(agent "$1" ask "$2" "$3" 1 who)
  echo "${seen#seen }"
}
# R sends TOKEN to IP:PORT from its port 4001, asked through its own loopback.
r_sends() { lab_exec r python3 "$UDP" send 127.0.0.1:4001 fwd "$1" "$2"; }
port() { echo "${1##*:}"; }
arrives() { [ "$(agent "$1" expect "$2" "$3" "${4:-1}")" != timeout ]; }
dropped() { [ "$(agent "$1" expect "$2" "$3" "${4:-0.5}")" = timeout ]; }
both_arrive() { arrives "$1" "$2" "$3" && arrives "$1" "$2" "$4"; }

agent_start a
agent_start b
for h in a b; do agent "$h" open probe >/dev/null; done
ready() {
  for _ in $(seq 50); do
    [ "$(agent a ask probe "$R:4001" 0.1 who)" != timeout ] &&
      [ "$(agent a ask probe "$S:4001" 0.1 who)" != timeout ] && return 0
  done
  return 1
}
check "the reflectors on R and S answer" ready
[ "$FAILED" = 0 ] || {
  finish
  exit 1
}

# 1 and 2: mapping and filtering, per NAT type on NA.
for type in none full_cone port_restricted symmetric; do
  nat_set "$type" na
  pub=$(nat_addr a)
  local_port=$(agent a open "m-$type")
  m1=$(who a "m-$type" "$R:4001")
  m2=$(who a "m-$type" "$R:4002")
  m3=$(who a "m-$type" "$S:4001")
  case $type in
  none)
    check "none: R and S see A's own address and port ($m1)" \
      test "$m1 $m2 $m3" = "$pub:$local_port $pub:$local_port $pub:$local_port"
    ;;
  full_cone | port_restricted)
    check "$type: one mapping for R:4001, R:4002 and S:4001, port kept ($m1 $m2 $m3)" \
      test "$m1 $m2 $m3" = "$pub:$local_port $pub:$local_port $pub:$local_port"
    ;;
  symmetric)
    ports=$(printf '%s\n' "$(port "$m1")" "$(port "$m2")" "$(port "$m3")" | sort -u | wc -l)
    check "symmetric: a new public port per destination ($m1 $m2 $m3)" \
      test "$ports" = 3 -a "${m1%:*} ${m2%:*} ${m3%:*}" = "$pub $pub $pub"
    ;;
  esac

  agent a open "f-$type" >/dev/null
  who a "f-$type" "$R:4001" >/dev/null
  agent a send "f-$type" "$R:4001" via 4002 "r2-$type" >/dev/null
  agent a send "f-$type" "$R:4001" tell "$S:4001" "s-$type" >/dev/null
  agent a send "f-$type" "$R:4001" via 4001 "r1-$type" >/dev/null
  check "$type: after A sent to R:4001, R:4001 reaches A" arrives a "f-$type" "r1-$type"
  case $type in
  none | full_cone)
    check "$type: so do R:4002 and S" both_arrive a "f-$type" "r2-$type" "s-$type"
    ;;
  *)
    check "$type: R:4002 does not" dropped a "f-$type" "r2-$type"
    check "$type: S does not" dropped a "f-$type" "s-$type"
    ;;
  esac
done
# The recipe's full cone forwards the whole high port range to A, used or not.
nat_set full_cone na
fresh=$(agent a open unused)
r_sends "$(nat_addr na):$fresh" "unsolicited"
check "full_cone: R reaches a port A never sent from (static forward, not a per-mapping cone)" \
  arrives a unused unsolicited

# 3: hole punching to the mappings R saw; each side sends twice, alternating.
punch() {
  local ta=$1 tb=$2 tag=$1-$2
  nat_set "$ta" na
  nat_set "$tb" nb
  agent a open "h-$tag" >/dev/null
  agent b open "h-$tag" >/dev/null
  MA=$(who a "h-$tag" "$R:4001")
  MB=$(who b "h-$tag" "$R:4001")
  for i in 1 2; do
    agent a send "h-$tag" "$MB" "punch-a$i" >/dev/null
    sleep 0.05
    agent b send "h-$tag" "$MA" "punch-b$i" >/dev/null
    sleep 0.05
  done
  GOT_A=$(agent a expect "h-$tag" punch-b 0.5)
  GOT_B=$(agent b expect "h-$tag" punch-a 0.5)
}
punched() { [ "$GOT_A" != timeout ] && [ "$GOT_B" != timeout ]; }
punch port_restricted port_restricted
check "hole punching port_restricted/port_restricted works ($MA <-> $MB)" punched
punch symmetric symmetric
check "hole punching symmetric/symmetric fails (A got: $GOT_A; B got: $GOT_B)" test "$GOT_A $GOT_B" = "timeout timeout"
punch port_restricted symmetric
check "hole punching port_restricted/symmetric fails (A got: $GOT_A; B got: $GOT_B)" test "$GOT_A $GOT_B" = "timeout timeout"
punch full_cone symmetric
check "full_cone/symmetric: B's punch reaches A, A's to B's mapping at R does not" \
  test "$GOT_A" != timeout -a "$GOT_B" = timeout
seen=${GOT_A%% *}
agent a send h-full_cone-symmetric "$seen" punch-a-reflexive >/dev/null
check "full_cone/symmetric: A answering the source it saw ($seen, not $MB) reaches B" \
  arrives b h-full_cone-symmetric punch-a-reflexive

# 4: flush and rebind.
for type in full_cone port_restricted symmetric; do
  nat_set "$type" na
  agent a open "r-$type" >/dev/null
  m0=$(who a "r-$type" "$R:4001")
  nat_flush na
  m1=$(who a "r-$type" "$R:4001")
  if [ "$type" = symmetric ]; then
    check "symmetric: after nat_flush R sees a new port ($m0 -> $m1)" test -n "$(port "$m0")" -a -n "$(port "$m1")" -a "$(port "$m0")" != "$(port "$m1")"
  else
    check "$type: after nat_flush masquerade keeps the port ($m0 -> $m1)" test "$m0" = "$m1"
  fi
  nat_rebind na
  m2=$(who a "r-$type" "$R:4001")
  check "$type: after nat_rebind R sees a new port ($m1 -> $m2)" \
    test "$(port "$m1")" != "$(port "$m2")" -a "${m2%:*}" = "$(nat_addr na)"
  if [ "$type" != symmetric ]; then
    m2b=$(who a "r-$type" "$R:4002")
    m2c=$(who a "r-$type" "$S:4001")
    check "$type: still one mapping for every destination after the rebind ($m2 $m2b $m2c)" \
      test "$m2 $m2b" = "$m2c $m2c"
    r_sends "$m1" "old-$type"
    check "$type: the old mapping no longer reaches A" dropped a "r-$type" "old-$type"
    nat_rebind na
    m3=$(who a "r-$type" "$R:4001")
    check "$type: a second nat_rebind moves it again ($m2 -> $m3)" \
      test "$(port "$m3")" != "$(port "$m2")" -a "$(port "$m3")" != "$(port "$m1")"
  fi
done

# 5: mapping lifetime with short UDP timeouts, A behind a port-restricted NA and B behind a
# symmetric NB at the same time; in each, one socket idles and one sends a keepalive every 2 s.
nat_set port_restricted na
nat_set symmetric nb
default_timeout=$(lab_exec nb cat /proc/sys/net/netfilter/nf_conntrack_udp_timeout)
nat_udp_timeout na 5
per_ns() {
  [ "$(lab_exec na cat /proc/sys/net/netfilter/nf_conntrack_udp_timeout)" = 5 ] &&
    [ "$(lab_exec na cat /proc/sys/net/netfilter/nf_conntrack_udp_timeout_stream)" = 5 ] &&
    [ "$(lab_exec nb cat /proc/sys/net/netfilter/nf_conntrack_udp_timeout)" = "$default_timeout" ] &&
    [ "$(lab_exec inet cat /proc/sys/net/netfilter/nf_conntrack_udp_timeout)" = "$default_timeout" ]
}
check "nat_udp_timeout is per namespace (NA 5 s, NB and inet keep $default_timeout s)" per_ns
nat_udp_timeout nb 5
declare -A MAP
for h in a b; do
  for s in idle kept; do
    agent "$h" open "t-$s" >/dev/null
    MAP[$h-$s]=$(who "$h" "t-$s" "$R:4001")
  done
done
for _ in 1 2 3 4; do
  for h in a b; do agent "$h" send t-kept "$R:4001" keepalive >/dev/null; done
  sleep 2
done
for h in a b; do
  for s in idle kept; do r_sends "${MAP[$h-$s]}" "late-$h-$s"; done
done
for h in a b; do
  n=$(nat_behind "$h")
  check "$(nat_type "$n"), 5 s timeout: after 8 s idle R no longer reaches $h (${MAP[$h-idle]})" \
    dropped "$h" t-idle "late-$h-idle"
  check "$(nat_type "$n"), 5 s timeout: with a keepalive every 2 s R still reaches $h (${MAP[$h-kept]})" \
    arrives "$h" t-kept "late-$h-kept"
done
nat_set full_cone na
nat_udp_timeout na 2
agent a open t-cone >/dev/null
m=$(who a t-cone "$R:4001")
sleep 3
expired() { ! lab_exec na conntrack -L -p udp --orig-port-src "$(port "$m")" 2>/dev/null | grep -q .; }
check "full_cone, 2 s timeout: A's conntrack entry is gone after 3 s idle" expired
r_sends "$m" late-cone
check "full_cone: R still reaches A there (the static forward)" arrives a t-cone late-cone
finish
