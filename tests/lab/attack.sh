#!/usr/bin/env bash
# Attacks on mobility between real nodes (RFC 8046 §5): a forged UPDATE, a replayed one, and
# a valid peer that announces a victim's address. A fourth namespace, the victim V, runs no
# node; nftables counts every byte that reaches it.
#
#   A (198.51.100.2) ── R ── B (203.0.113.2)
#                       └─── V (203.0.113.194, the victim)
#
# B blasts UDP at A's HIT (about 50 Mbit/s, a stream A never answers) while A, a peer with
# valid keys, claims V's address. B may check V's address and may send it data on credit,
# but never more data bytes than A sent B (RFC 8046 §3.3.2) — not the stream.
set -uo pipefail
cd "$(dirname "$0")/../.."
HB=${HB:-$PWD/target/release/hipbone}
source tests/lab/common.sh

VICTIM=203.0.113.194
lab_init
lab_routed
lab_host v
lab_link r v 203.0.113.192/28
lab_exec v ip route add default via 203.0.113.193
dir=$(lab_state)
node_key a >/dev/null
node_key b >/dev/null
node_config a b "203.0.113.2:10500"
node_config b a "198.51.100.2:10500"
node_up a && node_up b || { finish; exit 1; }
HIT_A=$(node_hit a)
HIT_B=$(node_hit b)
check "A reaches B by HIT" lab_exec a ping -6 -c 2 -W 2 "$HIT_B"

lab_exec v nft -f - <<EOF
table inet victim {
  chain input {
    type filter hook input priority 0;
    counter
  }
}
EOF
victim_bytes() {
  lab_exec v nft -j list table inet victim | python3 -c '
import json, sys
rules = [x["rule"] for x in json.load(sys.stdin)["nftables"] if "rule" in x]
print(sum(e["counter"]["bytes"] for r in rules for e in r["expr"] if "counter" in e))'
}
dropped_at_b() { node_field b 's["counters"]["hip_dropped"]'; }
traffic_at_b() { node_field b "[x['$1'] for x in s['associations']][0]"; }

# An UPDATE of A's as B receives it: A announces an extra address.
a_if=$(lab_if a r)
b_if=$(lab_if b r)
lab_exec b tcpdump -i "$b_if" -U -w "$dir/updates.pcap" udp port 10500 and src 198.51.100.2 \
  2>/dev/null &
dump=$!
sleep 1
lab_exec a ip addr add 198.51.100.3/25 dev "$a_if"
sleep 1
kill "$dump"
wait "$dump" 2>/dev/null
lab_exec a ip addr del 198.51.100.3/25 dev "$a_if"
# The UDP payload of the first HIP UPDATE (after the 4-byte non-ESP marker, type 16).
update=$(python3 - "$dir/updates.pcap" <<'PY'
import struct, sys
data = open(sys.argv[1], "rb").read()
at = 24
while at + 16 <= len(data):
    n = struct.unpack_from("<I", data, at + 8)[0]
    frame = data[at + 16:at + 16 + n]
    at += 16 + n
    ip = frame[14:]
    udp = ip[(ip[0] & 0x0f) * 4:]
    payload = udp[8:]
    if len(payload) > 8 and payload[:4] == b"\0\0\0\0" and payload[6] & 0x7f == 16:
        print(payload.hex())
        break
PY
)
check "captured an UPDATE of A's" test -n "$update"

# send_from SOURCE HEX: sends the UDP payload HEX to B's HIP port with a forged IPv4 source.
send_from() {
  lab_exec a python3 - "$1" 203.0.113.2 "$2" <<'PY'
import socket, struct, sys
src, dst, payload = sys.argv[1], sys.argv[2], bytes.fromhex(sys.argv[3])
udp = struct.pack("!HHHH", 10500, 10500, 8 + len(payload), 0) + payload
ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 0, 0, 64, 17, 0,
                 socket.inet_aton(src), socket.inet_aton(dst))
s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
s.sendto(ip + udp, (dst, 0))
PY
}

# A forged UPDATE (one bit of its signature flipped) from the victim's address: refused,
# counted, and nothing goes to the victim.
forged=$(python3 -c 'import sys; b = bytearray.fromhex(sys.argv[1]); b[-10] ^= 1; print(b.hex())' "$update")
before=$(dropped_at_b)
send_from "$VICTIM" "$forged"
sleep 2
check "B refuses the forged UPDATE ($before -> $(dropped_at_b) dropped)" test "$(dropped_at_b)" -gt "$before"
check "nothing reaches the victim after a forged UPDATE ($(victim_bytes) bytes)" test "$(victim_bytes)" = 0
# The genuine UPDATE replayed from the victim's address: an old SEQ, ACKed only where A is.
send_from "$VICTIM" "$update"
sleep 2
check "nothing reaches the victim after a replayed UPDATE ($(victim_bytes) bytes)" test "$(victim_bytes)" = 0

# A valid peer claims the victim's address: A gives up its own, takes V's, keeps a route.
lab_exec b python3 - "$HIT_A" >"$dir/blast.log" 2>&1 <<'PY' &
import socket, sys, time
s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
chunk, rate, start, sent = b"\0" * 1200, 50e6 / 8, time.time(), 0
while time.time() - start < 8:
    s.sendto(chunk, (sys.argv[1], 9))
    sent += len(chunk)
    ahead = sent / rate - (time.time() - start)
    if ahead > 0:
        time.sleep(ahead)
print(sent)
PY
blast=$!
sleep 1
rx_before=$(traffic_at_b rx_bytes)
lab_exec a ip addr add "$VICTIM/32" dev "$a_if"
lab_exec a ip addr del 198.51.100.2/25 dev "$a_if"
lab_exec a ip route replace default via 198.51.100.1 dev "$a_if" onlink
wait "$blast"
sleep 10
tx=$(tail -1 "$dir/blast.log")
got=$(victim_bytes)
# A sends nothing once it has claimed V's address (its own is gone): what B had received
# from A before, plus the checks and ACKs (at most 2 × 8 UPDATEs of well under 1 KB each),
# bounds what may reach V. (B gives the association up when no path answers; a new
# association starts without credit.)
bound=$((rx_before + 16000))
check "B kept streaming during the claim ($tx bytes)" test "$tx" -gt 20000000
check "the victim got no more than A's credit ($got bytes, bound $bound)" \
  test "$got" -le "$bound"
# A is out of reach now (its own address is gone): B's probes fail and B gives the
# association up, or still holds A's real address — never the victim's.
check "B did not move A to the victim's address" \
  test "$(node_field b "[x['locator'] for x in s['associations'] if x['locator'].startswith('$VICTIM')]")" = "[]"
finish
