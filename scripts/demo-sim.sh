#!/usr/bin/env bash
# The simulator demo: a host identity, and a base exchange over a lossy simulated link.
#   scripts/demo-sim.sh
# It builds hipbone, makes a host identity and shows its HIT, then runs a HIP base exchange
# between two simulated hosts over a link that loses 30 % of packets, writes the virtual
# wire to a pcap and lets tshark (if installed) show the packets.
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

say "Building hipbone (release)"
cargo build --release --quiet --bin hipbone
hb=target/release/hipbone

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

say "A host identity is an Ed25519 key; its HIT is an IPv6 address derived from the key"
echo "\$ hipbone genkey | tee key | hipbone hit"
$hb genkey >"$work/key"
chmod 600 "$work/key"
$hb hit <"$work/key"
echo "\$ hipbone pubkey < key | hipbone hit --public   # same HIT from the public key"
$hb pubkey <"$work/key" | $hb hit --public

say "A base exchange between two simulated hosts, 30 % packet loss, 10 ms links"
echo "\$ hipbone sim bex --loss 0.3 --seed 7 --pcap bex.pcap"
$hb sim bex --loss 0.3 --seed 7 --pcap "$work/bex.pcap"

if command -v tshark >/dev/null; then
  say "The same packets as tshark dissects them"
  tshark -r "$work/bex.pcap" -d udp.port==10500,hip 2>/dev/null
else
  echo "(install tshark to see the capture dissected)"
fi
say "Done"
