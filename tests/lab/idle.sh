#!/usr/bin/env bash
# An idle node sleeps. Three nodes are watched for 10 s each while nothing happens: A alone
# (no peers), A again with 10 established but quiet associations, and two overlay members
# with their ring and links up. Each must use under 1 % of a core (process CPU time from
# /proc) and wake up only for its timers: `status --json` counts the event loop's
# wake-ups by cause, and a wake-up with nothing arrived and no timer due must never happen.
#
#   p0 198.51.100.130 ─┐
#   ...                ├── A 198.51.100.2 ── R ── B 203.0.113.2 (overlay member)
#   p9 198.51.100.166 ─┘   (default via R)
set -uo pipefail
cd "$(dirname "$0")/../.."
HB=${HB:-$PWD/target/release/hipbone}
source tests/lab/common.sh

WATCH=${WATCH:-10}
HZ=$(getconf CLK_TCK)
lab_init
lab_routed
dir=$(lab_state)

cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
wakeups() { node_field "$1" 's["wakeups"]["total"], s["wakeups"]["timer"], s["wakeups"]["idle"]'; }

# quiet NAME LABEL ASSOCIATIONS [LINKS]: watches node NAME for $WATCH seconds; checks its
# CPU time and wake-ups.
quiet() {
  local name=$1 label=$2 assocs=$3 links=${4:-0} pid_var="NODE_PID_$1" t0 t1 w0 w1
  local pid=${!pid_var}
  read -r -a w0 <<<"$(wakeups "$name")"
  t0=$(cpu_ticks "$pid")
  sleep "$WATCH"
  t1=$(cpu_ticks "$pid")
  read -r -a w1 <<<"$(wakeups "$name")"
  # The status request after is a wake-up of its own (the one before was counted in w0).
  local ticks=$((t1 - t0)) total=$((w1[0] - w0[0] - 1)) timer=$((w1[1] - w0[1])) idle=$((w1[2] - w0[2]))
  echo "  $label: $ticks CPU ticks of $((WATCH * HZ)) in ${WATCH} s; $total wake-ups ($timer for timers, $idle for nothing)"
  check "$label uses under 1 % of a core" test $((ticks * 100)) -lt $((WATCH * HZ))
  check "$label never wakes up for nothing" test "$idle" = 0
  # What the timers of a quiet node say: an association whose last packet was ours (a
  # ping's reply) probes its path once after 1.5 s of silence (a timer, and the answer);
  # the rest are minutes away (rekey, idle timeout). An overlay link is busier: in 10 s it
  # can carry a TCP keepalive from each end (every 30 s) and one overlay exchange (a finger
  # lookup every minute, an Update every 2 min, or one of the rounds 15, 30, 45 and 60 s
  # after a join: link release, replication, record refresh, fingers). Counted on an idle
  # bootstrap, one exchange wakes a node up to 8 times: its timer, the answer, TCP's ACKs,
  # and HIP's probe 1.5 s later with its answer. So a few per association and link, not
  # the one per second of a polling loop.
  local limit=$((2 * assocs + 3 * 8 * links + 5))
  check "$label wakes up only as its timers say ($total of at most $limit)" test "$total" -le "$limit"
}

# 1. A alone: identity and control socket, no peers.
cat >"$dir/a.toml" <<TOML
[interface]
identity = "$(node_key a)"
control = "$dir/a.sock"
TOML
node_up a || { finish; exit 1; }
sleep 1
quiet a "an idle node without peers" 0

# 2. Ten peers, each in its own namespace with a veth to A, reach A once and go quiet.
HIT_A=$(node_hit a)
for k in $(seq 0 9); do
  lab_host "p$k"
  lab_link a "p$k" "198.51.100.$((128 + 4 * k))/30"
  node_key "p$k" >/dev/null
  node_config "p$k" a "198.51.100.$((128 + 4 * k + 1)):10500"
  node_up "p$k" >/dev/null || { finish; exit 1; }
done
reached=0
for k in $(seq 0 9); do
  lab_exec "p$k" ping -6 -c 1 -W 3 "$HIT_A" >/dev/null && reached=$((reached + 1))
done
established=$(node_field a 'sum(1 for x in s["associations"] if x["state"] == "ESTABLISHED")')
check "10 peers reach A (precondition: $reached pinged, $established established)" test "$reached" = 10 -a "$established" = 10
sleep 1
quiet a "a node with 10 quiet associations" 10

# 3. Two overlay members: B joins through A; both idle with the ring and the link up.
node_down a
for n in a b; do
  cat >"$dir/$n.toml" <<TOML
[interface]
identity = "$(node_key "$n")"
control = "$dir/$n.sock"

[overlay]
name = "idle.hipbone.test"

[[overlay.bootstrap]]
hit = "$HIT_A"
locators = ["198.51.100.2:10500"]
TOML
done
node_up a && node_up b || { finish; exit 1; }
joined() { "$HB" overlay -c "$dir/$1.toml" status 2>/dev/null | python3 -c 'import json,sys; s=json.load(sys.stdin); sys.exit(0 if s["joined"] and any(l["state"] == "up" for l in s["links"]) else 1)'; }
for _ in $(seq 30); do
  joined a && joined b && break
  sleep 1
done
check "B joins the ring through A (precondition)" joined b
# A member stores its records again 15 s after joining (and a minute after, outside the
# watch): part of joining, not of idling, so the watch starts after it.
sleep 17
quiet b "an idle overlay member" 1 1
quiet a "an idle overlay bootstrap" 1 1

finish
