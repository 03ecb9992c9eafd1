#!/usr/bin/env bash
# The hipbone demo, what a newcomer runs first (as root: it builds network namespaces):
#   sudo scripts/demo.sh
#
#   ┌ host A (netns) ────────┐            ┌ host B (netns) ────────┐
#   │ hipbone up             │   veth     │ hipbone up             │
#   │ hip0: HIT-A, LSI-A     ├────────────┤ hip0: HIT-B, LSI-B     │
#   │ 198.51.100.1           │ UDP 10500  │ 198.51.100.2           │
#   └────────────────────────┘            └────────────────────────┘
#
# It builds hipbone, gives each host an identity, starts a node in each, and lets ordinary
# programs (ping, iperf3) talk to the other host by its HIT and its LSI. Then, in part 2, an
# overlay of four nodes configured with nothing but its bootstrap, two of them behind real
# NATs (tests/lab/nat_topology.sh): one reaches the other by its HIT alone, then by the
# name the overlay's signer granted it, through its node's DNS stub; a third takes a name at
# run time, and a transfer to it by name keeps going while the sender leaves its NAT for
# another network, after which it is reached by its own name. Everything it makes is
# removed at the end, also on failure or Ctrl-C.
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
run() { printf '\033[2m%s $\033[0m %s\n' "$1" "${*:2}"; }

[ "$(id -u)" = 0 ] || { echo "demo.sh: run as root (sudo scripts/demo.sh): it creates network namespaces and TUN devices" >&2; exit 1; }
# ip, ping and iperf3, installed on Debian if missing (scripts/deps.sh).
scripts/deps.sh demo

say "Building hipbone (release)"
cargo build --release --quiet --bin hipbone
HB=$PWD/target/release/hipbone
source tests/lab/common.sh

say "Two hosts, A and B, in network namespaces on one link (198.51.100.0/24)"
lab_init
lab_two
dir=$(lab_state)

say "Each host's identity is an Ed25519 key; its HIT is an IPv6 address derived from the key"
run A "hipbone genkey -o a.key"
node_key a >/dev/null
node_key b >/dev/null
HIT_A=$(node_hit a)
HIT_B=$(node_hit b)
echo "HIT of A: $HIT_A"
echo "HIT of B: $HIT_B"

say "A's configuration names B by its HIT and where to find it (and B's names A)"
node_config a b 198.51.100.2:10500
node_config b a 198.51.100.1:10500
sed 's/^/    /' "$dir/a.toml"

say "Starting a node on each host: hipbone up"
node_up a
node_up b
run A "ip -6 addr show dev hip0"
lab_exec a ip -6 addr show dev hip0 | sed 's/^/    /'
run A "hipbone status"
"$HB" status -c "$dir/a.toml" | sed 's/^/    /'

say "ping B by its HIT: the first packet starts the HIP base exchange, then ESP carries the rest"
run A "ping -6 -c 3 $HIT_B"
lab_exec a ping -6 -c 3 "$HIT_B" | sed 's/^/    /'

LSI_B=$(node_field a '[x["lsi"] for x in s["associations"]][0]')
say "IPv4-only programs use B's LSI, a local IPv4 handle for its HIT"
run A "ping -c 3 $LSI_B"
lab_exec a ping -c 3 "$LSI_B" | sed 's/^/    /'

say "iperf3 over the HITs (3 seconds)"
lab_spawn b iperf3 -s -1 >/dev/null 2>&1
sleep 0.5
run A "iperf3 -c $HIT_B -t 3"
lab_exec a iperf3 -c "$HIT_B" -t 3 | grep -E "sender|receiver" | sed 's/^/    /'

say "The association, as A sees it"
run A "hipbone status"
"$HB" status -c "$dir/a.toml" | sed 's/^/    /'

say "Part 1 done: its namespaces, nodes and TUN devices are removed now"
lab_down >/dev/null 2>&1 || true
scripts/demo-overlay.sh
