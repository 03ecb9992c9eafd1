#!/usr/bin/env bash
# Data-plane measurements (not a test): single-stream TCP throughput over raw veth, over
# hipbone between HITs and over boringtun (userspace WireGuard), all in one run so that the
# ratios compare like with like; the RTT the tunnel adds; the idle daemon's RSS; and RSS per
# association. Run as root:
#
#   scripts/bench-throughput.sh                 # 3 × 10 s per path, 256 extra nodes
#   PATHS=hipbone REPS=0 scripts/bench-throughput.sh               # memory only
#   DURATION=5 REPS=1 ASSOC_NODES=0 scripts/bench-throughput.sh   # quick look
#   PATHS="veth hipbone" scripts/bench-throughput.sh              # skip boringtun
#
# Throughput topology (lab_two): iperf3 client in A, server in B.
#
#   ┌ hb-a ─────────────────────────────┐          ┌ hb-b ─────────────────────────────┐
#   │ hip0 HIT-A/28 (hipbone)           │          │ hip0 HIT-B/28 (hipbone)           │
#   │ bta-SUFFIX 203.0.113.129/25 (wg)  │   veth   │ btb-SUFFIX 203.0.113.130/25 (wg)  │
#   │ hb1a-SUFFIX 198.51.100.1/24 ──────┼──────────┼── hb1b-SUFFIX 198.51.100.2/24     │
#   └───────────────────────────────────┘          └───────────────────────────────────┘
#
# Per-association memory topology: node A restarted fresh with one address on a bridge
# (2001:db8:100::1/64), then ASSOC_NODES more hosts p0..pN-1, each with a veth port on that
# bridge (2001:db8:100::k+2) and its own hipbone node that pings A's HIT once. One address
# on A keeps what each association holds of A's locators constant. A's VmRSS growth divided by N is measured real memory
# (heap, ESP SAs with their replay windows, table growth), not Host::association_bytes.
#
# The repetitions interleave the paths (veth, hipbone, boringtun, veth, …) so that drift of
# the machine hits all of them alike; medians are printed. Everything runs inside lab
# namespaces and is torn down by the lab's trap.
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
DURATION=${DURATION:-10}
REPS=${REPS:-3}
PINGS=${PINGS:-50}
ASSOC_NODES=${ASSOC_NODES:-256}
PATHS=${PATHS:-veth hipbone boringtun}
BT_ROOT=$ROOT/target/boringtun
BT=$BT_ROOT/bin/boringtun-cli

[ "$(id -u)" = 0 ] || {
  echo "bench-throughput.sh: needs root (namespaces, TUN)" >&2
  exit 1
}
for tool in iperf3 python3 ping; do
  command -v "$tool" >/dev/null || {
    echo "bench-throughput.sh: $tool missing (see LAB.md for the package list)" >&2
    exit 1
  }
done
cargo build --release --quiet --bin hipbone || exit 1
HB=$ROOT/target/release/hipbone
has_path() { [[ " $PATHS " == *" $1 "* ]]; }
if has_path boringtun; then
  if [ ! -x "$BT" ]; then
    echo "installing boringtun-cli into $BT_ROOT (about a minute)" >&2
    cargo install boringtun-cli --locked --quiet --root "$BT_ROOT" || exit 1
  fi
  if ! command -v wg >/dev/null; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends wireguard-tools >/dev/null || exit 1
  fi
fi

source tests/lab/common.sh
lab_init
lab_two
dir=$(lab_state)

median() { sort -g | awk '{ v[NR] = $1 } END { if (NR == 0) print "nan"; else if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
rss_kib() { awk '/^VmRSS:/ { print $2 }' "/proc/$1/status"; }

# iperf ADDR: one single-stream run from A; prints the receiver's Gbit/s.
iperf() { iperf_gbits a "$1" "$DURATION"; }

# rtt NAME ADDR: median RTT in ms of $PINGS pings from A.
rtt() {
  lab_exec a ping -c "$PINGS" -i 0.05 -W 1 "$1" 2>/dev/null |
    sed -n 's/.*time=\([0-9.]*\) ms.*/\1/p' | median
}

lab_spawn b iperf3 -s >"$dir/iperf3.log" 2>&1
sleep 0.3

# --- hipbone ---------------------------------------------------------------------------
if has_path hipbone; then
  node_key a >/dev/null
  node_key b >/dev/null
  node_config a b 198.51.100.2:10500
  node_config b a 198.51.100.1:10500
  node_up a && node_up b || exit 1
  HIT_B=$(node_hit b)
  RSS_START_A=$(rss_kib "$NODE_PID_a")
  lab_exec a ping -6 -c 2 -W 2 "$HIT_B" >/dev/null || {
    echo "no traffic over HITs" >&2
    exit 1
  }
fi

# --- boringtun -------------------------------------------------------------------------
if has_path boringtun; then
  BTA=bta-$LAB_SUFFIX
  BTB=btb-$LAB_SUFFIX
  for h in a b; do
    (umask 077 && wg genkey >"$dir/wg-$h.key")
    wg pubkey <"$dir/wg-$h.key" >"$dir/wg-$h.pub"
  done
  bt_up() { # HOST IFNAME ADDR PEER_HOST PEER_UNDERLAY PEER_INNER
    lab_spawn "$1" env WG_SUDO=1 "$BT" -f -t 1 --disable-drop-privileges -l "$dir/bt-$1.log" "$2" >>"$dir/bt-$1.out" 2>&1
    for _ in $(seq 50); do
      [ -S "/var/run/wireguard/$2.sock" ] && lab_exec "$1" ip link show "$2" >/dev/null 2>&1 && break
      sleep 0.1
    done
    lab_exec "$1" wg set "$2" listen-port 51820 private-key "$dir/wg-$1.key" \
      peer "$(cat "$dir/wg-$4.pub")" endpoint "$5:51820" allowed-ips "$6/32" || return 1
    lab_exec "$1" ip addr add "$3/25" dev "$2" || return 1
    lab_exec "$1" ip link set "$2" mtu 1420 txqueuelen 10000 up
  }
  # The UAPI socket lives in the shared /var/run/wireguard: remove ours at teardown.
  lab_on_exit "rm -f /var/run/wireguard/$BTA.sock /var/run/wireguard/$BTB.sock"
  bt_up a "$BTA" 203.0.113.129 b 198.51.100.2 203.0.113.130 || exit 1
  bt_up b "$BTB" 203.0.113.130 a 198.51.100.1 203.0.113.129 || exit 1
  lab_exec a ping -c 2 -W 2 203.0.113.130 >/dev/null || {
    echo "no traffic over boringtun" >&2
    exit 1
  }
fi

# --- throughput, interleaved ------------------------------------------------------------
declare -A target=([veth]=198.51.100.2 [hipbone]=${HIT_B:-} [boringtun]=203.0.113.130)
declare -A runs
for rep in $(seq "$REPS"); do
  for p in veth hipbone boringtun; do
    has_path "$p" || continue
    g=$(iperf "${target[$p]}")
    echo "rep $rep: $p $g Gbit/s"
    runs[$p]="${runs[$p]:-} $g"
  done
done
declare -A med
for p in veth hipbone boringtun; do
  has_path "$p" || continue
  med[$p]=$(echo "${runs[$p]:-}" | tr ' ' '\n' | grep . | median)
done

# --- latency and memory -----------------------------------------------------------------
RTT_VETH=$(rtt 198.51.100.2)
if has_path hipbone; then
  RTT_HIP=$(rtt "$HIT_B")
  RSS_AFTER_A=$(rss_kib "$NODE_PID_a")
  node_status_json a >"$dir/status-a.json"
fi
has_path boringtun && RTT_BT=$(rtt 203.0.113.130)

# Memory per association: a fresh node A on a bridge, then ASSOC_NODES peers reach it.
# RSS is read after a warm-up of WARM peers too, so that growth which happens once (the
# allocator's arenas, buffers of the batch paths, tables' first doublings) can be told from
# what each further association costs.
if has_path hipbone && [ "$ASSOC_NODES" -gt 0 ]; then
  node_down b
  node_down a
  NSA=$(lab_ns a)
  BR=hbbr-$LAB_SUFFIX
  ip -n "$NSA" link add "$BR" type bridge || exit 1
  ip -n "$NSA" addr add 2001:db8:100::1/64 dev "$BR" nodad || exit 1
  ip -n "$NSA" link set "$BR" up
  node_config a b "[2001:db8:100::1]:10500"
  node_up a || exit 1
  HIT_A=$(node_hit a)
  for k in $(seq 0 $((ASSOC_NODES - 1))); do
    lab_host "p$k"
    ip -n "$NSA" link add "hbm$k-$LAB_SUFFIX" type veth peer name up0 netns "$(lab_ns "p$k")" || exit 1
    ip -n "$NSA" link set "hbm$k-$LAB_SUFFIX" master "$BR" up
    lab_exec "p$k" ip addr add "2001:db8:100::$(printf '%x' $((k + 2)))/64" dev up0 nodad
    lab_exec "p$k" ip link set up0 up
    node_key "p$k" >/dev/null
    node_config "p$k" a "[2001:db8:100::1]:10500"
    node_up "p$k" >/dev/null || exit 1
  done
  sleep 0.5
  reach() { # FIRST LAST: peers FIRST..LAST ping A's HIT once; prints how many failed
    local failed=0 k
    for k in $(seq "$1" "$2"); do
      lab_exec "p$k" ping -6 -c 1 -W 3 "$HIT_A" >/dev/null || failed=$((failed + 1))
    done
    echo "$failed"
  }
  WARM=$((ASSOC_NODES / 8))
  RSS_A0=$(rss_kib "$NODE_PID_a")
  FAILED_WARM=$(reach 0 $((WARM - 1)))
  sleep 0.5
  RSS_AW=$(rss_kib "$NODE_PID_a")
  ASSOCS_W=$(node_field a 'len([x for x in s["associations"] if x["spi_in"]])')
  FAILED_REST=$(reach "$WARM" $((ASSOC_NODES - 1)))
  sleep 0.5
  RSS_A1=$(rss_kib "$NODE_PID_a")
  ASSOCS=$(node_field a 'len([x for x in s["associations"] if x["spi_in"]])')
fi

# --- summary -----------------------------------------------------------------------------
echo
echo "== data plane, single TCP stream, iperf3 -t $DURATION, median of $REPS (Gbit/s)"
for p in veth hipbone boringtun; do
  has_path "$p" && printf '%-10s %8s   runs:%s\n' "$p" "${med[$p]}" "${runs[$p]:-}"
done
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "nan" }'; }
if has_path hipbone && has_path boringtun; then
  echo "hipbone / boringtun: $(ratio "${med[hipbone]}" "${med[boringtun]}")×"
fi
if has_path hipbone && has_path veth; then
  echo "hipbone / veth:      $(awk -v a="${med[hipbone]}" -v b="${med[veth]}" 'BEGIN { printf "%.1f %%", 100 * a / b }')"
fi
if has_path boringtun && has_path veth; then
  echo "boringtun / veth:    $(awk -v a="${med[boringtun]}" -v b="${med[veth]}" 'BEGIN { printf "%.1f %%", 100 * a / b }')"
fi
echo
echo "== RTT, median of $PINGS pings (ms)"
echo "veth:      $RTT_VETH"
if has_path hipbone; then
  echo "hipbone:   $RTT_HIP  (adds $(awk -v a="$RTT_HIP" -v b="$RTT_VETH" 'BEGIN { printf "%.3f", a - b }') ms)"
fi
if has_path boringtun; then
  echo "boringtun: $RTT_BT  (adds $(awk -v a="$RTT_BT" -v b="$RTT_VETH" 'BEGIN { printf "%.3f", a - b }') ms)"
fi
if has_path hipbone; then
  echo
  echo "== hipbone memory (VmRSS)"
  echo "node A after start:           $RSS_START_A KiB"
  echo "node A after the tests:       $RSS_AFTER_A KiB"
  if [ "$ASSOC_NODES" -gt 0 ]; then
    per() { awk -v a="$1" -v b="$2" -v n="$3" 'BEGIN { if (n > 0) printf "%.2f KiB", (a - b) / n; else print "nan" }'; }
    echo "fresh node A, idle:           $RSS_A0 KiB"
    echo "peers attempted / failed:     $ASSOC_NODES / $((FAILED_WARM + FAILED_REST))"
    echo "after $ASSOCS_W associations (warm-up): $RSS_AW KiB"
    echo "after $ASSOCS associations:   $RSS_A1 KiB"
    echo "per association, all:         $(per "$RSS_A1" "$RSS_A0" "$ASSOCS") (RSS growth / associations)"
    echo "per association, after warm-up: $(per "$RSS_A1" "$RSS_AW" $((ASSOCS - ASSOCS_W))) (growth from $ASSOCS_W to $ASSOCS associations)"
  fi
  python3 - "$dir/status-a.json" <<'PY'
import json, sys
s = json.load(open(sys.argv[1]))
a = s["associations"][0]
print(f"node A counters after the tests: tx {a['tx_packets']} packets / {a['tx_bytes']} bytes, "
      f"rx {a['rx_packets']} / {a['rx_bytes']}, rekeys {a['rekeys']}")
print("node A drops:", {k: v for k, v in s["counters"].items() if v})
PY
fi
