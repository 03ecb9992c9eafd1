#!/usr/bin/env bash
# The data plane between two real nodes in network namespaces:
#
#   ┌ hb-a ──────────────────┐            ┌ hb-b ──────────────────┐
#   │ hipbone up             │   veth     │ hipbone up             │
#   │ hip0: HIT-A/28, LSI    ├────────────┤ hip0: HIT-B/28, LSI    │
#   │ 198.51.100.1           │ UDP 10500  │ 198.51.100.2           │
#   └────────────────────────┘            └────────────────────────┘
#
# ping6 to the peer's HIT, ping to its LSI, a 100 MB TCP transfer over HITs with a SHA-256
# check while ESP rekeys every few thousand packets, UDP both ways, replayed and tampered
# ESP dropped and counted, and a node restart after which traffic flows again.
set -uo pipefail
cd "$(dirname "$0")/../.."
HB=${HB:-$PWD/target/release/hipbone}
source tests/lab/common.sh

lab_init
lab_two
dir=$(lab_state)
node_key a >/dev/null
node_key b >/dev/null
rekey='[esp]
rekey_after_packets = 5000'
node_config a b 198.51.100.2:10500 "$rekey"
node_config b a 198.51.100.1:10500 "$rekey"
node_up a && node_up b || { finish; exit 1; }
HIT_A=$(node_hit a)
HIT_B=$(node_hit b)

check "ping6 to the peer's HIT" lab_exec a ping -6 -c 3 -W 2 "$HIT_B"
LSI_B=$(node_field a '[x["lsi"] for x in s["associations"]][0]')
check "ping to the peer's LSI ($LSI_B)" lab_exec a ping -c 3 -W 2 "$LSI_B"

# Packets larger than the tunnel can carry are refused by A's kernel (EMSGSIZE at the
# TUN's MTU of 1400), never handed to the node: ping must fail for that reason, not for
# any other, and A's node must send nothing.
tx_at_a() { node_field a 's["associations"][0]["tx_packets"]'; }
too_big() {
  local before out
  before=$(tx_at_a)
  out=$(lab_exec a ping -6 -c 1 -W 1 -M do -s 1400 "$HIT_B" 2>&1) && return 1
  echo "    $(echo "$out" | grep -i -m1 'too long')" >&2
  echo "$out" | grep -qi 'message too long' && echo "$out" | grep -q 'mtu[=: ]*1400' &&
    [ "$(tx_at_a)" = "$before" ]
}
check "a packet over the TUN MTU is refused locally (EMSGSIZE, MTU 1400; nothing sent)" too_big
check "a packet at the TUN MTU goes through" lab_exec a ping -6 -c 1 -W 2 -M do -s 1352 "$HIT_B"

# TCP to the LSI: checksums are rewritten to the HIT form and back for this flow.
head -c 1M /dev/urandom >"$dir/small"
lab_exec b sh -c "socat -u TCP4-LISTEN:5004,reuseaddr - | sha256sum | cut -d' ' -f1 >'$dir/got-lsi'" &
receiver=$!
sleep 0.3
check "TCP to the peer's LSI" lab_exec a socat -u "FILE:$dir/small" "TCP4:$LSI_B:5004"
wait "$receiver"
check "SHA-256 over the LSI matches" test "$(sha256sum <"$dir/small" | cut -d' ' -f1)" = "$(cat "$dir/got-lsi")"

# 100 MB over TCP between HITs; the receiver hashes what arrives.
head -c 100M /dev/urandom >"$dir/blob"
want=$(sha256sum <"$dir/blob" | cut -d' ' -f1)
lab_exec b sh -c "socat -u TCP6-LISTEN:5001,reuseaddr - | sha256sum | cut -d' ' -f1 >'$dir/got'" &
receiver=$!
sleep 0.3
transfer() { lab_exec a socat -u "FILE:$dir/blob" "TCP6:[$HIT_B]:5001"; }
check "100 MB TCP transfer over HITs" transfer
wait "$receiver"
check "SHA-256 at the far end matches" test "$want" = "$(cat "$dir/got")"
rekeys=$(node_field a 's["associations"][0]["rekeys"]')
check "ESP rekeyed during the transfer ($rekeys times)" test "$rekeys" -ge 5

# UDP both ways: ten datagrams each, all must arrive.
udp() { # FROM TO TO_ADDR PORT
  lab_exec "$2" python3 - "$4" >"$dir/udp-$2" <<'PY' &
import socket, sys
s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
s.bind(("::", int(sys.argv[1])))
s.settimeout(5)
got = set()
try:
    while len(got) < 10:
        got.add(s.recv(100))
except socket.timeout:
    pass
print(len(got))
PY
  local rx=$!
  sleep 0.3
  lab_exec "$1" python3 - "$3" "$4" <<'PY'
import socket, sys
s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
for n in range(10):
    s.sendto(b"datagram %d" % n, (sys.argv[1], int(sys.argv[2])))
PY
  wait "$rx"
  test "$(cat "$dir/udp-$2")" = 10
}
check "UDP from A to B over HITs" udp a b "$HIT_B" 5002
check "UDP from B to A over HITs" udp b a "$HIT_A" 5003

# Replayed and tampered ESP: capture ESP toward B, send it again and altered from A.
rx_before=$(node_field b 's["associations"][0]["rx_packets"]')
lab_exec b tcpdump -U -i "$(lab_if b a)" -w "$dir/esp.pcap" -c 5 'udp and dst host 198.51.100.2 and dst port 10500' >/dev/null 2>&1 &
dump=$!
sleep 0.5
lab_exec a ping -6 -c 5 -i 0.2 -W 1 "$HIT_B" >/dev/null
wait "$dump"
rx_mid=$(node_field b 's["associations"][0]["rx_packets"]')
sent=$(lab_exec a python3 - "$dir/esp.pcap" <<'PY'
import socket, struct, sys
data = open(sys.argv[1], "rb").read()
pos, packets = 24, []
while pos + 16 <= len(data):
    incl = struct.unpack("<I", data[pos + 8:pos + 12])[0]
    frame = data[pos + 16:pos + 16 + incl]
    pos += 16 + incl
    ip = frame[14:] if frame[12:14] == b"\x08\x00" else None
    if ip is None or ip[9] != 17:
        continue
    udp = ip[(ip[0] & 15) * 4:]
    payload = udp[8:]
    if payload[:4] != b"\0\0\0\0":
        packets.append(payload)
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
for p in packets:
    s.sendto(p, ("198.51.100.2", 10500))  # replay
    t = bytearray(p); t[-1] ^= 1  # a forged ICV
    t[4:8] = (int.from_bytes(p[4:8], "big") + 100000).to_bytes(4, "big")  # unseen, in range
    s.sendto(bytes(t), ("198.51.100.2", 10500))  # tampered, with an unseen sequence number
print(len(packets))
PY
)
sleep 0.5
replayed=$(node_field b 's["counters"]["esp_replayed"]')
failed=$(node_field b 's["counters"]["esp_auth_failed"]')
rx_after=$(node_field b 's["associations"][0]["rx_packets"]')
check "captured ESP packets to replay ($sent)" test "$sent" -ge 3
check "replayed ESP dropped and counted ($replayed of $sent)" test "$replayed" -eq "$sent"
check "tampered ESP dropped and counted ($failed of $sent)" test "$failed" -eq "$sent"
check "nothing replayed or tampered was delivered" test "$rx_after" = "$rx_mid"
check "the captured pings were delivered once" test "$rx_mid" -ge $((rx_before + 5))

# B restarts: it has forgotten the association; A's traffic brings it back by itself.
node_down b
node_up b
recovered() {
  for _ in $(seq 20); do
    lab_exec a ping -6 -c 1 -W 1 "$HIT_B" >/dev/null 2>&1 && return 0
  done
  return 1
}
check "after B restarts, A reaches B again without manual steps" recovered
check "and B reaches A" lab_exec b ping -6 -c 2 -W 2 "$HIT_A"

finish
