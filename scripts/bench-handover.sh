#!/usr/bin/env bash
# Handover measurement (not a test): a paced TCP transfer from A to B over HITs while A
# moves between two networks ten times (lab topology of tests/lab/mobility.sh). For each
# move it reports the gap from the new address being configured until ESP flows over it
# both ways, seen at B: the first ESP from A's new address, and the first ESP from B to
# it (B sends there on credit while the address is checked). Then the median and worst gap,
# and whether the TCP connection survived (resets: 0 expected).
#   sudo scripts/bench-handover.sh [MOVES]
set -uo pipefail
cd "$(dirname "$0")/.."
MOVES=${1:-10}
cargo build --release --quiet --bin hipbone
HB=$PWD/target/release/hipbone
source tests/lab/common.sh

mobile_lab || exit 1
dir=$(lab_state)
HIT_B=$(node_hit b)
lab_exec a ping -6 -c 2 -W 2 "$HIT_B" >/dev/null || { echo "no base exchange" >&2; exit 1; }

if1=$(lab_if a r)
if3=$(tail -1 "$dir/ifs" | awk '$1 == "a" { print $3 }')
[ -n "$if3" ] || if3=$(awk '$1 == "a" && $2 == "r" { n++; if (n == 2) print $3 }' "$dir/ifs")
# A starts on network 1 only.
lab_exec a ip addr del 198.51.100.130/25 dev "$if3"
lab_exec b tcpdump -U -n -i "$(lab_if b r)" -w "$dir/b.pcap" 'udp port 10500' >/dev/null 2>&1 &
dump=$!
lab_exec b sh -c "socat -u TCP6-LISTEN:5001,reuseaddr - >/dev/null" &
receiver=$!
sleep 0.5
seconds=$((MOVES * 2 + 4))
lab_exec a python3 - "$HIT_B" "$seconds" >"$dir/sender.log" 2>&1 <<'PY' &
import socket, sys, time
s = socket.create_connection((sys.argv[1], 5001))
end, chunk = time.time() + float(sys.argv[2]), b"x" * 16384
while time.time() < end:
    s.sendall(chunk)
    time.sleep(0.001)
s.shutdown(socket.SHUT_WR)
s.recv(1)
print("ok")
PY
sender=$!
sleep 2
: >"$dir/moves"
at=1
for _ in $(seq "$MOVES"); do
  if [ "$at" = 1 ]; then
    new=198.51.100.130; lab_exec a ip addr add "$new/25" dev "$if3"
    echo "$(date +%s.%N) $new" >>"$dir/moves"
    lab_exec a ip route replace default via 198.51.100.129
    lab_exec a ip addr del 198.51.100.2/25 dev "$if1"
    at=3
  else
    new=198.51.100.2; lab_exec a ip addr add "$new/25" dev "$if1"
    echo "$(date +%s.%N) $new" >>"$dir/moves"
    lab_exec a ip route replace default via 198.51.100.1
    lab_exec a ip addr del 198.51.100.130/25 dev "$if3"
    at=1
  fi
  sleep 2
done
wait "$sender"; resets=$?
kill "$dump" 2>/dev/null; wait "$dump" 2>/dev/null
python3 - "$dir/b.pcap" "$dir/moves" "$resets" <<'PY'
import statistics, struct, sys
data = open(sys.argv[1], "rb").read()
pos, esp = 24, []
while pos + 16 <= len(data):
    sec, usec, incl = struct.unpack("<III", data[pos:pos + 12])
    frame = data[pos + 16:pos + 16 + incl]
    pos += 16 + incl
    if frame[12:14] != b"\x08\x00":
        continue
    ip = frame[14:]
    udp = ip[(ip[0] & 15) * 4:]
    if udp[8:12] != b"\0\0\0\0":
        addr = lambda b: ".".join(map(str, b))
        esp.append((sec + usec / 1e6, addr(ip[12:16]), addr(ip[16:20])))
gaps = []
for line in open(sys.argv[2]):
    t, new = float(line.split()[0]), line.split()[1]
    up = next((at for at, src, _ in esp if src == new and at >= t), None)
    down = next((at for at, _, dst in esp if dst == new and at >= t), None)
    gaps.append(None if up is None or down is None else (max(up, down) - t) * 1000)
for n, g in enumerate(gaps, 1):
    print(f"move {n:2}: " + ("ESP did not flow both ways" if g is None else f"{g:7.1f} ms"))
done = [g for g in gaps if g is not None]
print(f"moves {len(gaps)} ({len(done)} completed), median gap {statistics.median(done):.1f} ms, "
      f"worst {max(done):.1f} ms, TCP resets {0 if sys.argv[3] == '0' else 1}")
PY
