#!/usr/bin/env bash
# Runs `hipbone sim bex` with 30 % loss, writes the virtual wire to a pcap, and checks with
# tshark that I1, R1, I2 and R2 are all on it and that no frame is malformed.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh pcap # tshark
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
cargo build --release --quiet --bin hipbone
target/release/hipbone sim bex --loss 0.3 --seed 7 --pcap "$dir/bex.pcap" >"$dir/timeline.txt"
types=$(tshark -r "$dir/bex.pcap" -d udp.port==10500,hip -T fields -e hip.packet_type 2>/dev/null | sort -u | tr '\n' ' ')
malformed=$(tshark -r "$dir/bex.pcap" -d udp.port==10500,hip -Y '_ws.malformed || _ws.expert.severity >= 8388608' 2>/dev/null | wc -l)
echo "packet types on the wire: $types"
echo "malformed or error frames: $malformed"
for t in 1 2 3 4; do
  case " $types " in *" $t "*) ;; *) echo "check-pcap: HIP packet type $t missing" >&2; exit 1;; esac
done
[ "$malformed" -eq 0 ] || { tshark -r "$dir/bex.pcap" -d udp.port==10500,hip -V -Y '_ws.malformed || _ws.expert.severity >= 8388608' | head -80 >&2; exit 1; }
echo "check-pcap: ok"
