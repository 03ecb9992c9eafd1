#!/usr/bin/env bash
# A host moves to another network in the middle of a TCP transfer:
#
#   ┌ hb-a ─────────────────┐         ┌ hb-r ───────────┐         ┌ hb-b ──────────┐
#   │ 198.51.100.2/25  ─────┼── 1 ────┤ 198.51.100.1    │         │                │
#   │   (removed mid-way)   │         │      router     ├── 2 ────┤ 203.0.113.2/25 │
#   │ 198.51.100.130/25 ────┼── 3 ────┤ 198.51.100.129  │         │ hipbone up     │
#   │ hipbone up            │         └─────────────────┘         └────────────────┘
#   └───────────────────────┘
#
# A sends 60 MB to B over HITs at about 15 MB/s. Two seconds in, A's address on link 1 is
# removed and its default route moved to link 3. A's node learns it from netlink and tells
# B by UPDATE; B checks the new address and moves. The transfer must finish intact, over
# the same TCP connection.
set -uo pipefail
cd "$(dirname "$0")/../.."
HB=${HB:-$PWD/target/release/hipbone}
source tests/lab/common.sh

mobile_lab || { finish; exit 1; }
dir=$(lab_state)
HIT_B=$(node_hit b)
check "A reaches B by HIT" lab_exec a ping -6 -c 2 -W 2 "$HIT_B"

head -c 60M /dev/urandom >"$dir/blob"
want=$(sha256sum <"$dir/blob" | cut -d' ' -f1)
lab_exec b sh -c "socat -u TCP6-LISTEN:5001,reuseaddr - | sha256sum | cut -d' ' -f1 >'$dir/got'" &
receiver=$!
sleep 0.3
# A paced sender, so that the move happens mid-transfer; it fails on any reset.
lab_exec a python3 - "$dir/blob" "$HIT_B" >"$dir/sender.log" 2>&1 <<'PY' &
import socket, sys, time
data = open(sys.argv[1], "rb").read()
s = socket.create_connection((sys.argv[2], 5001))
chunk, rate, start = 256 * 1024, 15e6, time.time()
for off in range(0, len(data), chunk):
    s.sendall(data[off:off + chunk])
    ahead = (off + chunk) / rate - (time.time() - start)
    if ahead > 0:
        time.sleep(ahead)
s.shutdown(socket.SHUT_WR)
s.recv(1)
print("sent", len(data))
PY
sender=$!
sleep 2
if_old=$(lab_if a r)
moved_at=$(date +%s.%N)
lab_exec a ip addr del 198.51.100.2/25 dev "$if_old"
lab_exec a ip route replace default via 198.51.100.129
wait "$sender"
sent=$?
wait "$receiver"
check "the transfer finished without a reset" test "$sent" = 0
check "SHA-256 at B matches after the move" test "$want" = "$(cat "$dir/got")"
locator=$(node_field b '[x["locator"] for x in s["associations"]][0]')
check "B now sends to A's new address ($locator)" test "$locator" = "198.51.100.130:10500"
cat "$dir/sender.log"
finish
