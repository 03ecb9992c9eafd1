#!/usr/bin/env bash
# Five real nodes form an overlay ring through one bootstrap (n1), over HIP: each overlay
# link is a TCP connection between HITs on port 6084 in the nodes' own stacks, inside ESP.
# Only n1's address is configured; links to the others are opened by I1s relayed through
# a neighbour (HIP BONE). Each publishes its HIT-LOCATOR record. A value stored from one
# node is fetched from another. A client (n6, attached to one peer, associated with it and
# the bootstrap only) pings a peer by its HIT alone: it finds the peer's address in the
# peer's record. A ping to a HIT nobody has is answered "address unreachable"; from a ring
# member, after its I1 went into the overlay and came back refused (tshark reads the routed
# packets on the wire). The node
# that holds the value crashes; the value is still fetched, from a replica. A node that
# leaves withdraws its HIT-LOCATOR record. n4 holds the name alice.lab.hipbone.test, granted
# by the overlay's signer: the client resolves it and pings n4 by the HIT and the LSI it
# got; a name nobody holds is refused. n6 runs the DNS stub: through its system resolver
# (getent, ping) alice.lab.hipbone.test is n4's HIT (AAAA) and LSI (A), an unknown label
# is NXDOMAIN, and debian.lab.test is still answered by the resolver n6 had before (a
# stand-in on R). n5 claims carol at run time and releases it; a forger (n7, a signer of
# its own) is refused alice by the storing peers. n4 moves to another network and is
# reached by name, and by HIT from a node started after the move.
#
#   n1 198.51.100.2 ─┐
#   n2 198.51.100.18 ┤
#   n3 198.51.100.34 ┤
#   n4 198.51.100.50 ┼── R
#   n5 198.51.100.66 ┤
#   n6 198.51.100.82 ┤ client
#   n7 198.51.100.114┘ client (forger); n4 moves to 198.51.100.98
set -uo pipefail
cd "$(dirname "$0")/../.."
HB=${HB:-$PWD/target/release/hipbone}
source tests/lab/common.sh

NODES="n1 n2 n3 n4 n5"
lab_init
ring_hosts "$NODES" || exit 1
dir=$(lab_state)
for n in $NODES; do node_key "$n" >/dev/null; done
declare -A HIT
for n in $NODES; do HIT[$n]=$(node_hit "$n"); done
"$HB" genkey -o "$dir/signer.key" 2>/dev/null
SIGNER=$("$HB" pubkey <"$dir/signer.key")
GRANT=$("$HB" name grant alice "${HIT[n4]}" --key "$dir/signer.key" --overlay lab.hipbone.test)
for n in $NODES; do
  pcap=""
  [ "$n" = n3 ] && pcap="pcap = \"$dir/n3-inner.pcap\""
  claim=""
  [ "$n" = n4 ] && claim="label = \"alice\"
grant = \"$GRANT\""
  cat >"$dir/$n.toml" <<TOML
[interface]
identity = "$(node_key "$n")"
control = "$dir/$n.sock"

[overlay]
name = "lab.hipbone.test"
signers = ["$SIGNER"]
$pcap
$claim

[[overlay.bootstrap]]
hit = "${HIT[n1]}"
locators = ["198.51.100.2:10500"]
TOML
done
for n in $NODES; do
  node_up "$n" || { finish; exit 1; }
  sleep 0.5
done

ostatus() { "$HB" overlay -c "$dir/$1.toml" status 2>/dev/null; }
# The ring is right when each node's first successor is the next HIT in sorted order.
ring_converged() {
  local sorted n want got k
  sorted=$(for n in $NODES; do echo "${HIT[$n]} $n"; done | python3 -c '
import ipaddress, sys
rows = [l.split() for l in sys.stdin if l.strip()]
rows.sort(key=lambda r: int(ipaddress.IPv6Address(r[0])))
for i, (h, n) in enumerate(rows):
    print(n, rows[(i + 1) % len(rows)][0])')
  while read -r n want; do
    got=$(ostatus "$n" | python3 -c 'import json,sys; s=json.load(sys.stdin); print(s["successors"][0] if s["joined"] and s["successors"] else "")' 2>/dev/null)
    [ "$got" = "$want" ] || return 1
  done <<<"$sorted"
}
converged=1
for _ in $(seq 90); do
  ring_converged && { converged=0; break; }
  sleep 1
done
check "five nodes form the ring through one bootstrap" test "$converged" = 0
for n in $NODES; do echo "  $n ${HIT[$n]}: $(ostatus "$n" | python3 -c 'import json,sys; s=json.load(sys.stdin); print("joined" if s["joined"] else "not joined", "succ", s["successors"][:1], "links", len(s["links"]))' 2>/dev/null)"; done

store() { "$HB" overlay -c "$dir/$1.toml" store "$2"; }
fetch() { "$HB" overlay -c "$dir/$1.toml" fetch "$2"; }
check "n2 stores a value" store n2 "hello from n2"
answer=$(fetch n4 "${HIT[n2]}")
echo "  fetch from n4: $answer"
check "n4 fetches it" grep -q "hello from n2" <<<"$answer"
# n2 published where it is (its HIT-LOCATOR record, R11) when it joined, and again a
# minute later (records stored while the ring formed may sit at a peer that no longer owns
# them): n4 finds n2's address in it, within that minute and a quarter.
locators() { python3 -c 'import json,sys; r=json.loads(sys.argv[1]).get("locators") or {}; print(" ".join(r.get("locators", [])))' "$1" 2>/dev/null; }
found_locator=1
for _ in $(seq 1 15); do
  if grep -q "host 198.51.100.18:10500" <<<"$(locators "$(fetch n4 "${HIT[n2]}")")"; then
    found_locator=0
    break
  fi
  sleep 5
done
check "n4 finds n2's address in n2's HIT-LOCATOR record" test "$found_locator" = 0

# n6 joins as a client, then pings a peer it has no association with by its HIT alone.
lab_host n6
lab_link r n6 "198.51.100.80/28"
lab_exec n6 ip route add default via 198.51.100.81
node_key n6 >/dev/null
HIT[n6]=$(node_hit n6)
sed 's/^\[overlay\]$/[overlay]\nclient = true/; s/n5\.sock/n6.sock/' "$dir/n5.toml" >"$dir/n6.toml"
sed -i "s|^identity = .*|identity = \"$(node_key n6)\"|" "$dir/n6.toml"
lab_spawn r python3 tests/lab/dns_upstream.py 198.51.100.81 53 2>>"$dir/upstream.log"
printf '\n[dns]\nlisten = ["127.0.0.1:53"]\nupstream = ["198.51.100.81:53"]\n' >>"$dir/n6.toml"
lab_resolv n6 "nameserver 127.0.0.1"
node_up n6 || { finish; exit 1; }
client_joined=1
for _ in $(seq 30); do
  [ "$(ostatus n6 | python3 -c 'import json,sys; print(json.load(sys.stdin)["joined"])' 2>/dev/null)" = True ] && { client_joined=0; break; }
  sleep 1
done
check "n6 attaches to the ring as a client" test "$client_joined" = 0
[ "$client_joined" = 0 ] || { cat "$dir/n6.toml"; grep -v "TRACE\|DEBUG" "$dir/n6.log" | tail -30; }
linked() { node_field "$1" "'${HIT[$2]}' in [a['peer'] for a in s['associations']]" 2>/dev/null; }
target=""
for y in $NODES; do [ "$(linked n6 "$y")" = False ] && { target=$y; break; }; done
check "n6 has no association with $target yet" test -n "$target"
if [ -n "$target" ]; then
  check "n6 pings $target by its HIT alone" lab_exec n6 ping -6 -c 3 -W 10 "${HIT[$target]}"
  check "n6 found $target through its record (associated now)" test "$(linked n6 "$target")" = True
  found=$(node_field n6 "[a.get('found') for a in s['associations'] if a['peer'] == '${HIT[$target]}'][0]")
  check "n6's status says how: '$found'" test "$found" = "its locator record in the overlay"
fi
# n4's name, granted by the signer every member knows: the client resolves it through the
# overlay and reaches n4 by the HIT and the LSI it got. n4 stores its claim once joined and
# again a minute later (a claim stored while the ring formed may sit at a peer that no
# longer owns the name), so this waits up to 90 s.
resolved=""
waited=0
for waited in $(seq 0 89); do
  resolved=$("$HB" resolve -c "$dir/n6.toml" alice.lab.hipbone.test 2>&1) && break
  sleep 1
done
echo "  resolve alice.lab.hipbone.test from n6 (after ${waited} s): $resolved"
read -r _ _ alice_hit _ alice_lsi <<<"$resolved"
check "n6 resolves alice.lab.hipbone.test to n4's HIT" test "$alice_hit" = "${HIT[n4]}"
# Reaching n4 by its HIT needs n4's HIT-LOCATOR record, which can sit at a peer that no
# longer owns it until n4 stores it again a minute after joining (docs/OVERLAY.md); the
# checks below are about names, so they wait for the record first.
for _ in $(seq 15); do
  grep -q "host 198.51.100.50:10500" <<<"$(locators "$(fetch n6 "${HIT[n4]}")")" && break
  sleep 5
done
check "n6 pings alice by the HIT it resolved" lab_exec n6 ping -6 -c 2 -W 10 "$alice_hit"
check "n6 pings alice by the LSI it resolved ($alice_lsi)" lab_exec n6 ping -c 2 -W 10 "$alice_lsi"
nobody=$("$HB" resolve -c "$dir/n6.toml" bob.lab.hipbone.test 2>&1)
check "a name nobody holds is refused ('$nobody')" grep -q "nobody holds this name" <<<"$nobody"
# The same through DNS, from unmodified programs on n6.
aaaa=$(lab_exec n6 dig +short @127.0.0.1 alice.lab.hipbone.test AAAA 2>&1)
check "dig @stub alice.lab.hipbone.test AAAA is n4's HIT ($aaaa)" test "$aaaa" = "${HIT[n4]}"
ahosts=$(lab_exec n6 getent ahosts alice.lab.hipbone.test 2>&1)
echo "  getent ahosts alice.lab.hipbone.test on n6: $(tr '\n' ' ' <<<"$ahosts")"
check "the system resolver gives n4's HIT for alice" grep -q "^${HIT[n4]} " <<<"$ahosts"
check "the system resolver gives alice's LSI" grep -q "^$alice_lsi " <<<"$ahosts"
check "ping -6 alice.lab.hipbone.test" lab_exec n6 ping -6 -c 2 -W 10 alice.lab.hipbone.test
check "ping -4 alice.lab.hipbone.test (its LSI)" lab_exec n6 ping -4 -c 2 -W 10 alice.lab.hipbone.test
status=$(lab_exec n6 dig @127.0.0.1 bob.lab.hipbone.test A 2>&1 | grep -o "status: [A-Z]*")
check "an unknown label is $status" test "$status" = "status: NXDOMAIN"
other=$(lab_exec n6 getent ahosts debian.lab.test 2>&1)
check "a name outside the overlay is answered upstream ($(head -1 <<<"$other"))" grep -q "^203.0.113.80 " <<<"$other"
# A name claimed at run time: n5 holds carol once its claim is stored, n6 finds it; after
# n5 releases it, n1 (which never asked for it) finds that nobody holds it.
CAROL=$("$HB" name grant carol "${HIT[n5]}" --key "$dir/signer.key" --overlay lab.hipbone.test)
claimed=$("$HB" name claim carol --grant "$CAROL" -c "$dir/n5.toml" 2>&1)
check "n5 claims carol at run time ('$claimed')" grep -q "^carol.lab.hipbone.test is held" <<<"$claimed"
listed=$("$HB" name list -c "$dir/n5.toml" 2>&1)
check "n5's name list shows it stored ('$listed')" grep -q "^holds carol.lab.hipbone.test (stored" <<<"$listed"
read -r _ _ carol_hit _ <<<"$("$HB" resolve -c "$dir/n6.toml" carol.lab.hipbone.test 2>&1)"
check "n6 resolves carol to n5's HIT" test "$carol_hit" = "${HIT[n5]}"
released=$("$HB" name release -c "$dir/n5.toml" 2>&1)
check "n5 releases it ('$released')" test "$released" = "released carol.lab.hipbone.test"
gone=$("$HB" resolve -c "$dir/n1.toml" carol.lab.hipbone.test 2>&1)
check "then n1 finds that nobody holds carol ('$gone')" grep -q "nobody holds this name" <<<"$gone"
# n4 moves to another network. Its HIT-LOCATOR record follows and n6 reaches alice by
# name again; n7, started after the move, reaches n4 by its HIT.
lab_link r n4 "198.51.100.96/28"
lab_exec n4 ip route replace default via 198.51.100.97
lab_exec n4 ip addr del 198.51.100.50/28 dev "$(lab_if n4 r)"
moved=1
for _ in $(seq 30); do
  grep -q "host 198.51.100.98:10500" <<<"$(locators "$(fetch n6 "${HIT[n4]}")")" && { moved=0; break; }
  sleep 1
done
check "n4's record names its new address" test "$moved" = 0
check "n6 pings alice.lab.hipbone.test after alice moved" lab_exec n6 ping -6 -c 2 -W 10 alice.lab.hipbone.test
# A forger: n7 runs with a signer of its own in its configuration and grants itself alice.
# Its node takes the grant; the overlay's storing peers do not, and alice stays n4's for a
# resolver with nothing cached (n2).
lab_host n7
lab_link r n7 "198.51.100.112/28"
lab_exec n7 ip route add default via 198.51.100.113
node_key n7 >/dev/null
HIT[n7]=$(node_hit n7)
"$HB" genkey -o "$dir/rogue.key" 2>/dev/null
ROGUE=$("$HB" pubkey <"$dir/rogue.key")
sed 's/^\[overlay\]$/[overlay]\nclient = true/; s/n5\.sock/n7.sock/' "$dir/n5.toml" >"$dir/n7.toml"
sed -i "s|^identity = .*|identity = \"$(node_key n7)\"|; s|^signers = .*|signers = [\"$ROGUE\"]|" "$dir/n7.toml"
node_up n7 || { finish; exit 1; }
for _ in $(seq 30); do
  [ "$(ostatus n7 | python3 -c 'import json,sys; print(json.load(sys.stdin)["joined"])' 2>/dev/null)" = True ] && break
  sleep 1
done
FORGED=$("$HB" name grant alice "${HIT[n7]}" --key "$dir/rogue.key" --overlay lab.hipbone.test)
forged=$("$HB" name claim alice --grant "$FORGED" -c "$dir/n7.toml" 2>&1)
echo "  n7: hipbone name claim alice --grant (its own signer's): $forged"
check "the overlay refuses n7's forged claim of alice" grep -q "carries no valid grant" <<<"$forged"
read -r _ _ still _ <<<"$("$HB" resolve -c "$dir/n2.toml" alice.lab.hipbone.test 2>&1)"
check "alice is still n4 for n2" test "$still" = "${HIT[n4]}"
check "n7, started after n4 moved, pings n4 by its HIT" lab_exec n7 ping -6 -c 2 -W 10 "${HIT[n4]}"
# A HIT no member has: once the lookup finds no record, the node answers the ping with
# ICMPv6 "address unreachable" instead of leaving it to time out.
"$HB" genkey -o "$dir/stranger.key" 2>/dev/null
STRANGER=$("$HB" hit -k "$dir/stranger.key")
started=$(date +%s%N)
unreachable=$(lab_exec n6 ping -6 -c 1 -W 20 "$STRANGER" 2>&1)
waited_ms=$((($(date +%s%N) - started) / 1000000))
check "a ping to a HIT nobody has hears 'Address unreachable' (after $waited_ms ms)" grep -q "Address unreachable" <<<"$unreachable"
check "n6 counted it" test "$(node_field n6 's["counters"]["icmp_unreachable"]')" -ge 1
why=$(node_field n6 "[u['why'] for u in s['unreached'] if u['peer'] == '$STRANGER'][0]" 2>&1)
check "n6's status lists it as not reached ('$why')" grep -q "no locator record" <<<"$why"
refused=$(lab_exec n6 python3 -c '
import socket, sys
s = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
s.settimeout(30)
try:
    s.connect((sys.argv[1], 22))
except OSError as e:
    print(e.strerror or e)
' "$STRANGER" 2>&1)
check "a TCP connect to it fails with '$refused'" test "$refused" = "No route to host"
# A ring member sends to a HIT nobody has: with no record, its I1 goes into the overlay
# (HIP BONE: OVERLAY_ID, OVERLAY_TTL, ROUTE_VIA), hop by hop toward the HIT, and the member
# whose range the HIT falls in refuses it with a NOTIFY back along the route (ROUTE_DST).
# The sender is a member whose own range does not hold the HIT, so that it must route.
sender=n2
STRANGER2=""
for _ in $(seq 50); do
  # (genkey never overwrites a key: each try writes a fresh file.)
  rm -f "$dir/stranger2.key"
  "$HB" genkey -o "$dir/stranger2.key" 2>/dev/null
  candidate=$("$HB" hit -k "$dir/stranger2.key")
  if python3 - "$candidate" "${HIT[$sender]}" $(for n in $NODES; do echo "${HIT[$n]}"; done) <<'PY'; then
import ipaddress, sys
k, me = (int(ipaddress.IPv6Address(h)) for h in sys.argv[1:3])
ring = sorted(int(ipaddress.IPv6Address(h)) for h in sys.argv[3:])
pred = ring[ring.index(me) - 1]
ours = (pred < k <= me) if pred < me else (k > pred or k <= me)
sys.exit(1 if ours else 0)
PY
    STRANGER2=$candidate
    break
  fi
done
check "a HIT outside $sender's range is found to send to" test -n "$STRANGER2"
lab_exec "$sender" tcpdump -i "$(lab_if "$sender" r)" -U -w "$dir/routed.pcap" udp port 10500 >/dev/null 2>&1 &
dump=$!
sleep 1
started=$(date +%s%N)
routed=$(lab_exec "$sender" ping -6 -c 1 -W 20 "$STRANGER2" 2>&1)
waited_ms=$((($(date +%s%N) - started) / 1000000))
sleep 1
kill "$dump"
wait "$dump" 2>/dev/null
check "$sender's ping to another HIT nobody has hears 'Address unreachable' (after $waited_ms ms)" grep -q "Address unreachable" <<<"$routed"
why=$(node_field "$sender" "[u['why'] for u in s['unreached'] if u['peer'] == '$STRANGER2'][0]" 2>&1)
check "$sender's status says the overlay refused the routed I1 ('$why')" grep -q "refused an I1 routed to it" <<<"$why"
# tshark writes HITs as plain hex.
hexhit() { python3 -c 'import ipaddress, sys; print(ipaddress.IPv6Address(sys.argv[1]).packed.hex())' "$1"; }
fields=$(tshark -r "$dir/routed.pcap" -d udp.port==10500,hip -T fields -e hip.packet_type -e hip.hit_rcvr -e hip.type 2>/dev/null)
check "tshark sees the routed I1 leave $sender with OVERLAY_ID, OVERLAY_TTL, ROUTE_VIA" \
  grep -qE "^1	$(hexhit "$STRANGER2")	.*4592,64011,64017" <<<"$fields"
# (ROUTE_DST only when the refusal has hops to go back through: none when the first hop
# refused.)
check "and the NOTIFY come back to it with OVERLAY_ID and a signature" \
  grep -qE "^17	$(hexhit "${HIT[$sender]}")	.*4592.*61697" <<<"$fields"
# (ESP shares the port: tshark takes it for something else; only HIP frames count.)
hip_frames=$(tshark -r "$dir/routed.pcap" -d udp.port==10500,hip -Y hip 2>/dev/null | wc -l)
malformed=$(tshark -r "$dir/routed.pcap" -d udp.port==10500,hip -Y 'hip && (_ws.malformed || _ws.expert.severity >= 8388608)' 2>/dev/null | wc -l)
check "no HIP frame of it is malformed for tshark ($malformed of $hip_frames)" test "$hip_frames" -gt 0 -a "$malformed" = 0
# A forged route: R (no member, no association with anyone) sends n2 an I1 routed through
# the overlay whose ROUTE_VIA claims n3 passed it on, with an RVS_HMAC it cannot key. n2
# refuses it and passes nothing on.
refused_before=$(node_field n2 's["counters"]["route_refused"]')
routed_before=$(node_field n2 's["counters"]["routed"]')
lab_exec r python3 - "${HIT[n3]}" "$STRANGER2" <<'PY'
import hashlib, ipaddress, os, socket, struct, sys
via, receiver = (ipaddress.IPv6Address(h).packed for h in sys.argv[1:3])
def tlv(t, v):
    pad = (8 - (4 + len(v)) % 8) % 8
    return struct.pack("!HH", t, len(v)) + v + bytes(pad)
overlay = hashlib.sha1(b"lab.hipbone.test").digest()[-4:]
params = (tlv(511, bytes([9])) + tlv(4592, overlay) + tlv(64011, struct.pack("!HH", 50, 0))
          + tlv(64017, struct.pack("!HH", 0xC000, 0) + via) + tlv(65500, bytes(32)))
sender = ipaddress.IPv6Address("2001:25::").packed[:4] + os.urandom(12)
body = sender + receiver + params
hip = struct.pack("!BBBBHH", 59, len(body) // 8, 1, 0x21, 0, 0) + body
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.sendto(bytes(4) + hip, ("198.51.100.18", 10500))
PY
sleep 1
refused_after=$(node_field n2 's["counters"]["route_refused"]')
check "n2 refuses an I1 with a forged ROUTE_VIA ($refused_before then $refused_after refused)" test "$refused_after" -gt "$refused_before"
check "and passes nothing on" test "$(node_field n2 's["counters"]["routed"]')" = "$routed_before"
holder=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["responder"])' "$answer" 2>/dev/null)
victim=""
for n in $NODES; do [ "${HIT[$n]}" = "$holder" ] && victim=$n; done
check "the holder is one of the nodes ($victim)" test -n "$victim"
# A node that leaves (SIGTERM, as `hipbone down` or a service manager stops it) withdraws
# its HIT-LOCATOR record first: a fetch of its HIT then finds no locators.
# It is neither the holder (crashed next) nor the node that fetches after the crash.
leaver=n3
[ "$victim" = n3 ] && leaver=n5
has_locators() { python3 -c 'import json,sys; a=json.loads(sys.argv[1]); sys.exit(0 if (a.get("locators") or {}).get("locators") else 1)' "$1" 2>/dev/null; }
before=$(fetch n1 "${HIT[$leaver]}" 2>&1)
check "$leaver's record names its address before it leaves" has_locators "$before"
node_down "$leaver"
check "$leaver withdrew its record as it left" grep -q "withdrew our locators" "$dir/$leaver.log"
after=$(fetch n1 "${HIT[$leaver]}" 2>&1)
after_status=$?
echo "  fetch of $leaver's HIT from n1 after it left: $after"
# A fetch that failed finds nothing either: only an answer counts.
check "a fetch of $leaver's HIT finds no locators" test "$after_status" = 0 -a "$(has_locators "$after"; echo $?)" = 1
# Crash the holder (SIGKILL by the PID this script started) and fetch from a node that is
# not it.
node_crash "$victim"
asker=n4
[ "$victim" = n4 ] && asker=n5
refetched=1
for _ in $(seq 30); do
  answer=$(fetch "$asker" "${HIT[n2]}" 2>&1) && grep -q "hello from n2" <<<"$answer" && { refetched=0; break; }
  sleep 1
done
echo "  fetch from $asker after $victim died: $answer"
check "after the holder ($victim) died, $asker still fetches the value" test "$refetched" = 0
responder=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["responder"])' "$answer" 2>/dev/null)
check "the answer came from another node ($responder)" test "$refetched" = 0 -a -n "$responder" -a "$responder" != "$holder"
frames=$(tshark -r "$dir/n3-inner.pcap" -d tcp.port==6084,reload-framing -Y reload 2>/dev/null | wc -l)
check "tshark decodes RELOAD messages in n3's inner capture ($frames)" test "$frames" -gt 0
finish
