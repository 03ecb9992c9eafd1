#!/usr/bin/env bash
# Mobility demo (as root): a TCP transfer over HITs keeps going while host A moves to
# another network.
#   sudo scripts/demo-mobility.sh
#
#   A ── network 1 (198.51.100.0/25) ──┐
#                                       R ── 203.0.113.0/25 ── B
#   A ── network 3 (198.51.100.128/25) ┘
set -euo pipefail
cd "$(dirname "$0")/.."
say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
[ "$(id -u)" = 0 ] || { echo "demo-mobility.sh: run as root (sudo scripts/demo-mobility.sh)" >&2; exit 1; }

say "Building hipbone (release)"
cargo build --release --quiet --bin hipbone
HB=$PWD/target/release/hipbone
source tests/lab/common.sh

say "A and B, with a router between them; A has a second network it can move to"
mobile_lab
dir=$(lab_state)
HIT_B=$(node_hit b)
lab_exec a ip addr del 198.51.100.130/25 dev "$(awk '$1 == "a" && $2 == "r" { n++; if (n == 2) print $3 }' "$dir/ifs")"
lab_exec a ping -6 -c 1 -W 2 "$HIT_B" >/dev/null
"$HB" status -c "$dir/b.toml" | sed 's/^/    /'

say "iperf3 from A to B's HIT for 8 seconds; 3 seconds in, A moves to network 3"
lab_spawn b iperf3 -s -1 >/dev/null 2>&1
sleep 0.5
lab_exec a iperf3 -c "$HIT_B" -t 8 -i 1 >"$dir/iperf.log" 2>&1 &
client=$!
sleep 3
echo "    (moving A: new address 198.51.100.130 on network 3, old one removed)"
lab_exec a ip addr add 198.51.100.130/25 dev "$(awk '$1 == "a" && $2 == "r" { n++; if (n == 2) print $3 }' "$dir/ifs")"
lab_exec a ip route replace default via 198.51.100.129
lab_exec a ip addr del 198.51.100.2/25 dev "$(lab_if a r)"
wait "$client"
sed 's/^/    /' "$dir/iperf.log" | grep -E "sec|sender|receiver"

say "B's view: A's new locator, and how long its check took"
"$HB" status -c "$dir/b.toml" | sed 's/^/    /'
say "Done: the namespaces and nodes are removed now"
