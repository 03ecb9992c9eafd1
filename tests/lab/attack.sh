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
#
# Each step is confirmed, not inferred from silence: B's counters (`status --json`:
# hip_dropped, updates_received, updates_old, updates_old_unanswered, address_checks,
# peer_moves, credit_bytes, credit_refused) say what B did with each packet, and captures
# at B and at V say what went over the wire.
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
# A has no address of its own but its IPv4 one: when it gives that up for the victim's,
# B has nowhere else to find it (an IPv6 address of A's, which A announces, is a place B
# may rightly move to).
lab_exec a ip -6 addr del 2001:db8:1::2/64 dev "$(lab_if a r)"
dir=$(lab_state)
node_key a >/dev/null
node_key b >/dev/null
node_config a b "203.0.113.2:10500"
node_config b a "198.51.100.2:10500"
node_up a && node_up b || { finish; exit 1; }
HIT_A=$(node_hit a)
HIT_B=$(node_hit b)
# Every ESP byte A ever sends B is captured at B, from before the first: the credit A can
# earn there is bounded by their sum.
lab_exec b tcpdump -i "$(lab_if b r)" -U -s 96 -w "$dir/b.pcap" udp port 10500 2>/dev/null &
dump_b=$!
sleep 1
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
at_b() { node_field b "s['counters']['$1']"; }
dropped_at_b() { at_b hip_dropped; }

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
accepted=$(at_b updates_received)
check "sent the forged UPDATE from the victim's address" send_from "$VICTIM" "$forged"
sleep 2
check "B refuses the forged UPDATE ($before -> $(dropped_at_b) dropped)" test "$(dropped_at_b)" -gt "$before"
check "and takes no UPDATE from it ($accepted -> $(at_b updates_received) authenticated)" \
  test "$(at_b updates_received)" = "$accepted"
check "nothing reaches the victim after a forged UPDATE ($(victim_bytes) bytes)" test "$(victim_bytes)" = 0
# The genuine UPDATE replayed from the victim's address: authentic, an old SEQ, ACKed only
# where A is known to be — so not at all here.
old=$(at_b updates_old)
unanswered=$(at_b updates_old_unanswered)
check "sent the replayed UPDATE from the victim's address" send_from "$VICTIM" "$update"
sleep 2
check "B takes the replay as an old UPDATE ($old -> $(at_b updates_old))" \
  test "$(at_b updates_old)" = $((old + 1))
check "and leaves it unanswered ($unanswered -> $(at_b updates_old_unanswered))" \
  test "$(at_b updates_old_unanswered)" = $((unanswered + 1))
check "nothing reaches the victim after a replayed UPDATE ($(victim_bytes) bytes)" test "$(victim_bytes)" = 0

# A valid peer claims the victim's address: A gives up its own, takes V's, keeps a route.
# Captures: at B, the UDP of HIP and ESP both ways (headers only, since the start); at V,
# everything.
lab_exec v tcpdump -i "$(lab_if v r)" -U -w "$dir/v.pcap" 2>/dev/null &
dump_v=$!
sleep 1
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
# A earns some credit at B just before the claim: 30 datagrams of 1,000 bytes.
check "A sends B 30 kB before its claim" lab_exec a python3 -c '
import socket, sys
s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
for _ in range(30):
    s.sendto(b"\0" * 1000, (sys.argv[1], 9))' "$HIT_B"
declare -A before
for c in updates_received address_checks peer_moves credit_bytes credit_refused; do
  before[$c]=$(at_b $c)
done
claim=$EPOCHREALTIME
lab_exec a ip addr add "$VICTIM/32" dev "$a_if"
lab_exec a ip addr del 198.51.100.2/25 dev "$a_if"
lab_exec a ip route replace default via 198.51.100.1 dev "$a_if" onlink
wait "$blast"
sleep 10
kill "$dump_b" "$dump_v"
wait "$dump_b" "$dump_v" 2>/dev/null
delta() { echo $(($(at_b "$1") - ${before[$1]})); }
# What the wire saw: HIP packets and ESP bytes (UDP payload) by direction, in the whole
# capture at B (A's ESP there, since the association began, is all the credit A can have
# earned: aging only lowers it) and after the claim; and what reached V.
read -r esp_to_b hip_from_v esp_from_b_after hip_b_to_v esp_b_to_v other_at_v < <(
  python3 - "$dir/b.pcap" "$dir/v.pcap" 203.0.113.2 "$VICTIM" "$claim" <<'PY'
import struct, sys
def frames(path):
    data = open(path, "rb").read()
    at = 24
    while at + 16 <= len(data):
        sec, usec, incl, orig = struct.unpack_from("<IIII", data, at)
        yield sec + usec / 1e6, data[at + 16:at + 16 + incl], orig
        at += 16 + incl
def udp(frame):  # (src, dst, is_hip, payload length) of an IPv4 UDP frame to/from 10500
    if frame[12:14] != b"\x08\x00" or frame[23] != 17:
        return None
    ip = frame[14:]
    u = ip[(ip[0] & 15) * 4:]
    if struct.unpack("!H", u[2:4])[0] != 10500 and struct.unpack("!H", u[0:2])[0] != 10500:
        return None
    addr = lambda b: ".".join(map(str, b))
    return addr(ip[12:16]), addr(ip[16:20]), u[8:12] == b"\0\0\0\0", struct.unpack("!H", u[4:6])[0] - 8
b_pcap, v_pcap, b, victim, claim = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], float(sys.argv[5])
esp_to_b = hip_from_v = esp_from_b_after = 0
for t, f, _ in frames(b_pcap):
    p = udp(f)
    if p is None:
        continue
    src, dst, hip, n = p
    esp_to_b += n if dst == b and not hip else 0
    hip_from_v += 1 if src == victim and hip else 0
    esp_from_b_after += n if src == b and not hip and t >= claim else 0
hip_b_to_v = esp_b_to_v = other = 0
to_victim = bytes(map(int, victim.split(".")))
for t, f, _ in frames(v_pcap):
    if f[12:14] != b"\x08\x00" or f[30:34] != to_victim:
        continue  # what V sends (its ICMP errors), ARP
    p = udp(f)
    if p is not None and p[0] == b:
        hip_b_to_v += 1 if p[2] else 0
        esp_b_to_v += 0 if p[2] else p[3]
    else:
        other += 1
print(esp_to_b, hip_from_v, esp_from_b_after, hip_b_to_v, esp_b_to_v, other)
PY
)
tx=$(tail -1 "$dir/blast.log")
tries=8 # hip::Config::update_tries
check "A's claim reached B: UPDATEs from the victim's address at B ($hip_from_v), authenticated (+$(delta updates_received))" \
  test "$hip_from_v" -ge 1 -a "$(delta updates_received)" -ge 1
# B's UPDATEs at V: the check's tries, and an ACK for each UPDATE A sent from V's address
# (A keeps announcing it, unanswered): nothing more than A asked for, no amplification.
check "B checked the victim's address: checks started +$(delta address_checks), UPDATEs at V $hip_b_to_v (at most $tries + $hip_from_v)" \
  test "$(delta address_checks)" -ge 1 -a "$hip_b_to_v" -ge 1 -a "$hip_b_to_v" -le $((tries + hip_from_v))
# The stream after the claim must exceed all the credit A can have earned, or the bound on
# what reaches V below would hold for want of data.
check "B kept streaming: $esp_from_b_after bytes of ESP from B after the claim ($tx sent by the blaster, $esp_to_b of credit at most), $(delta credit_refused) packets past the credit" \
  test "$(delta credit_refused)" -gt 0 -a "$esp_from_b_after" -gt "$esp_to_b"
check "the victim got ESP only on credit: $esp_b_to_v bytes at V, $(delta credit_bytes) sent on credit by B" \
  test "$esp_b_to_v" = "$(delta credit_bytes)"
check "no more than A sent B ($esp_b_to_v bytes at V, $esp_to_b from A at B)" \
  test "$esp_b_to_v" -le "$esp_to_b"
check "and nothing else reached V ($other_at_v packets)" test "$other_at_v" = 0
check "B moved no association (peer_moves +$(delta peer_moves))" test "$(delta peer_moves)" = 0
# A is out of reach now (its own address is gone): B's probes fail and B gives the
# association up, or still holds A's real address — never the victim's.
check "B did not move A to the victim's address" \
  test "$(node_field b "[x['locator'] for x in s['associations'] if x['locator'].startswith('$VICTIM')]")" = "[]"
finish
