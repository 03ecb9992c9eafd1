#!/usr/bin/env bash
# Handover measurement (not a test): a paced TCP transfer from A to B over HITs while A
# moves between two networks, MOVES times (lab topology of tests/lab/mobility.sh): to
# network 3 (198.51.100.130) on odd moves, back to network 1 (198.51.100.2) on even ones.
#
# For each move, the gap from the new address appearing until ESP flows over it both ways,
# seen at B: the first ESP from A's new address, and the first ESP from B to it (B sends
# there on credit while the address is checked). The start is the kernel's netlink
# notification of the new address, as `ip -ts monitor address` in A's namespace receives
# it — on the same clock as B's capture, and when A's node learns it too; the gap from
# just before `ip addr add` ran (its fork and exec included) is shown beside it. The two
# directions are reported apart (median and worst of each), and TCP resets are counted:
# the sender reconnects after any broken connection and counts them, and the RST segments
# on A's and B's TUN devices are counted from captures.
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
if3=$(awk '$1 == "a" && $2 == "r" { n++; if (n == 2) print $3 }' "$dir/ifs")
# A starts on network 1 only.
lab_exec a ip addr del 198.51.100.130/25 dev "$if3"
lab_exec b tcpdump -U -n -i "$(lab_if b r)" -s 96 -w "$dir/b.pcap" 'udp port 10500' >/dev/null 2>&1 &
dump=$!
# RST segments of the inner TCP (IPv6 between HITs; TCP flags at byte 40 + 13).
rst='ip6 and ip6[6] == 6 and ip6[53] & 4 != 0'
lab_exec a tcpdump -U -n -i hip0 -w "$dir/rst-a.pcap" "$rst" >/dev/null 2>&1 &
rst_a=$!
lab_exec b tcpdump -U -n -i hip0 -w "$dir/rst-b.pcap" "$rst" >/dev/null 2>&1 &
rst_b=$!
lab_exec a ip -ts monitor address >"$dir/netlink" 2>&1 &
monitor=$!
lab_spawn b socat -u TCP6-LISTEN:5001,reuseaddr,fork SYSTEM:'cat >/dev/null' >/dev/null 2>&1
sleep 0.5
seconds=$((MOVES * 2 + 4))
lab_exec a python3 - "$HIT_B" "$seconds" >"$dir/sender.log" 2>"$dir/sender.err" <<'PY' &
import socket, sys, time
end, chunk, broken = time.time() + float(sys.argv[2]), b"x" * 16384, 0
while time.time() < end:
    try:
        s = socket.create_connection((sys.argv[1], 5001), timeout=10)
        while time.time() < end:
            s.sendall(chunk)
            time.sleep(0.001)
        s.shutdown(socket.SHUT_WR)
        s.recv(1)
    except OSError as e:
        broken += 1
        print("connection broken:", e, file=sys.stderr)
        time.sleep(0.5)
print(broken)
PY
sender=$!
sleep 2
: >"$dir/moves"
at=1
for _ in $(seq "$MOVES"); do
  if [ "$at" = 1 ]; then
    new=198.51.100.130 dev=$if3 old=198.51.100.2/25 old_dev=$if1 via=198.51.100.129 at=3
  else
    new=198.51.100.2 dev=$if1 old=198.51.100.130/25 old_dev=$if3 via=198.51.100.1 at=1
  fi
  echo "$EPOCHREALTIME $new" >>"$dir/moves"
  lab_exec a ip addr add "$new/25" dev "$dev"
  lab_exec a ip route replace default via "$via"
  lab_exec a ip addr del "$old" dev "$old_dev"
  sleep 2
done
wait "$sender"
broken=$(tail -1 "$dir/sender.log")
sleep 0.5
kill "$dump" "$rst_a" "$rst_b" "$monitor" 2>/dev/null
wait "$dump" "$rst_a" "$rst_b" "$monitor" 2>/dev/null
python3 - "$dir/b.pcap" "$dir/moves" "$dir/netlink" "$dir/rst-a.pcap" "$dir/rst-b.pcap" "${broken:-unknown}" <<'PY'
import datetime, re, statistics, struct, sys

def frames(path):
    data = open(path, "rb").read()
    pos = 24
    while pos + 16 <= len(data):
        sec, usec, incl = struct.unpack("<III", data[pos:pos + 12])
        yield sec + usec / 1e6, data[pos + 16:pos + 16 + incl]
        pos += 16 + incl

esp = []
for t, frame in frames(sys.argv[1]):
    if frame[12:14] != b"\x08\x00":
        continue
    ip = frame[14:]
    udp = ip[(ip[0] & 15) * 4:]
    if udp[8:12] != b"\0\0\0\0":
        addr = lambda b: ".".join(map(str, b))
        esp.append((t, addr(ip[12:16]), addr(ip[16:20])))
# Netlink: "[2026-11-25T12:34:56.123456] 3: ifname    inet 198.51.100.130/25 ..." (local time).
added = []
for line in open(sys.argv[3]):
    m = re.match(r"\[(\S+)\]\s+\d+:\s+\S+\s+inet (\S+)/", line)
    if m:
        added.append((datetime.datetime.fromisoformat(m.group(1)).timestamp(), m.group(2)))
moves = [(float(l.split()[0]), l.split()[1]) for l in open(sys.argv[2])]
rows = []
for n, (before, new) in enumerate(moves, 1):
    event = next((t for t, a in added if a == new and t >= before), None)
    up = next((t for t, src, _ in esp if src == new and t >= before), None)
    down = next((t for t, _, dst in esp if dst == new and t >= before), None)
    flow = None if up is None or down is None else max(up, down)
    rows.append((n, new, before, event, flow))
    if flow is None or event is None:
        what = "ESP did not flow both ways" if flow is None else "no netlink event seen"
        print(f"move {n:2} to {new:15}: {what}")
    else:
        print(f"move {n:2} to {new:15}: {(flow - event) * 1000:7.1f} ms from the netlink event "
              f"({(flow - before) * 1000:.1f} ms from before `ip addr add`)")
print()
for new, name in (("198.51.100.130", "to network 3"), ("198.51.100.2", "to network 1")):
    mine = [r for r in rows if r[1] == new]
    done = [r for r in mine if r[3] is not None and r[4] is not None]
    line = f"{name} ({new}): {len(mine)} moves, {len(mine) - len(done)} failed"
    if done:
        gaps = [(r[4] - r[3]) * 1000 for r in done]
        cmd = [(r[4] - r[2]) * 1000 for r in done]
        line += (f"; gap from netlink median {statistics.median(gaps):.1f} ms, worst {max(gaps):.1f} ms"
                 f" (from before the command: median {statistics.median(cmd):.1f}, worst {max(cmd):.1f} ms)")
    print(line)
rst = [sum(1 for _ in frames(p)) for p in sys.argv[4:6]]
print(f"TCP: {sys.argv[6]} connections broken (the sender reconnects); RST segments on A's TUN {rst[0]}, on B's TUN {rst[1]}")
PY
