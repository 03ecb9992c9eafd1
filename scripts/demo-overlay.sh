#!/usr/bin/env bash
# Part 2 of the demo (scripts/demo.sh runs it; it runs alone too, as root): an overlay of
# four nodes configured with nothing but its name and bootstrap, two of them behind real
# nftables NATs (tests/lab/nat_topology.sh); one reaches the other by its HIT alone, then
# by its name (granted by the overlay's signer), through its DNS stub, as any program would.
# S takes the name carol at run time; A sends to carol by name and, during the transfer,
# leaves its NAT for another network; S still reaches A by its name, alice.
# Everything it makes is removed at the end, also on failure or Ctrl-C.
# Not -e: the NAT library's helpers return the status of cleanups that may find nothing.
set -uo pipefail
cd "$(dirname "$0")/.."

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
run() { printf '\033[2m%s $\033[0m %s\n' "$1" "${*:2}"; }

[ "$(id -u)" = 0 ] || { echo "demo-overlay.sh: run as root: it creates network namespaces and TUN devices" >&2; exit 1; }
scripts/deps.sh demo || exit 1
cargo build --release --quiet --bin hipbone || exit 1
HB=$PWD/target/release/hipbone
source tests/lab/common.sh
source tests/lab/nat_topology.sh
lab_init || exit 1

say "Part 2: an overlay, and nothing configured but its bootstrap"
cat <<'TXT'
    R (bootstrap, relay)  203.0.113.2      S (member)  203.0.113.18
    A behind a port-restricted NAT         B behind a symmetric NAT
    Each config has only [overlay]: a name and R's HIT and address. A and B find their
    way through their NATs: R relays for them and their records say so.
TXT
nat_topology_up || { echo "demo-overlay.sh: the NAT lab could not be built" >&2; exit 1; }
nat_set symmetric nb
dir=$(lab_state)
for n in r s a b; do node_key "$n" >/dev/null; done
declare -A HIT
for n in r s a b; do HIT[$n]=$(node_hit "$n"); done
"$HB" genkey -o "$dir/signer.key" 2>/dev/null
SIGNER=$("$HB" pubkey <"$dir/signer.key")
member() { # NAME [NAT_KEYS] [OVERLAY_KEYS] [MORE_TOML]
  printf '[interface]\nidentity = "%s"\ncontrol = "%s"\n\n[nat]\n%s\n\n[overlay]\nname = "demo.hipbone.example"\nsigners = ["%s"]\n%s\n\n[[overlay.bootstrap]]\nhit = "%s"\nlocators = ["203.0.113.2:10500"]\n%s' \
    "$(node_key "$1")" "$dir/$1.sock" "${2:-}" "$SIGNER" "${3:-}" "${HIT[r]}" "${4:-}" >"$dir/$1.toml"
}
member r "relay = true"
# The lab's private side uses documentation addresses, which look public; on a real LAN
# (10.x, 192.168.x) a node finds out it is behind a NAT by itself.
DNS=$'\n[dns]\nlisten = ["127.0.0.1:53"]\n'
ALICE=$("$HB" name grant alice "${HIT[a]}" --key "$dir/signer.key" --overlay demo.hipbone.example)
member a "behind = true" "label = \"alice\"
grant = \"$ALICE\"" "$DNS"
GRANT=$("$HB" name grant bob "${HIT[b]}" --key "$dir/signer.key" --overlay demo.hipbone.example)
member b "behind = true" "label = \"bob\"
grant = \"$GRANT\""
member s "" "" "$DNS"
# A's and S's programs ask their node for names (inside their namespace only).
lab_resolv a "nameserver 127.0.0.1"
lab_resolv s "nameserver 127.0.0.1"
run A "cat hipbone.toml"
sed 's/^/    /' "$dir/a.toml"
for n in r s a b; do node_up "$n" || exit 1; done
joined() { [ "$("$HB" overlay -c "$dir/$1.toml" status 2>/dev/null | python3 -c 'import json,sys; print(json.load(sys.stdin)["joined"])' 2>/dev/null)" = True ]; }
for _ in $(seq 60); do
  joined r && joined s && joined a && joined b && break
  sleep 1
done
for n in r s a b; do echo "    ${n^^} ${HIT[$n]}: $(joined "$n" && echo joined || echo 'not joined')"; done

say "B's record in the overlay, as S fetches it: where B is reached"
run S "hipbone overlay fetch ${HIT[b]}"
for _ in $(seq 20); do
  rec=$("$HB" overlay -c "$dir/s.toml" fetch "${HIT[b]}" 2>&1)
  grep -q relayed <<<"$rec" && break
  sleep 1
done
python3 -c 'import json,sys; print("    " + "\n    ".join(json.loads(sys.argv[1])["locators"]["locators"]))' "$rec" 2>/dev/null || echo "    $rec"

say "A pings B by its HIT alone: both behind NATs, neither configured with the other"
run A "ping -6 -c 3 ${HIT[b]}"
lab_exec a ping -6 -c 3 "${HIT[b]}" | sed 's/^/    /'
run A "hipbone status (the association with B)"
node_field a "'\n'.join('    path: ' + str(x.get('path')) for x in s['associations'] if x['peer'] == '${HIT[b]}')"

say "B's name: granted once by the overlay's signer, found through the overlay"
run signer "hipbone name grant bob ${HIT[b]} --key signer.key --overlay demo.hipbone.example"
echo "    ${GRANT:0:60}...   (goes into B's [overlay] grant)"
run S "hipbone resolve bob.demo.hipbone.example"
# Usually found at once; a claim stored while the ring still formed can sit at a peer that
# no longer owns the name until B stores it again, a minute after joining.
for _ in $(seq 75); do
  out=$("$HB" resolve -c "$dir/s.toml" bob.demo.hipbone.example 2>&1) && break
  sleep 1
done
echo "    $out"
run A "getent ahosts bob.demo.hipbone.example   (A's resolver is its node's DNS stub)"
lab_exec a getent ahosts bob.demo.hipbone.example | awk '!seen[$1]++ { print "    " $1 }'
run A "ping -c 2 bob.demo.hipbone.example"
lab_exec a ping -c 2 bob.demo.hipbone.example | sed 's/^/    /'

say "S takes a name at run time: carol"
CAROL=$("$HB" name grant carol "${HIT[s]}" --key "$dir/signer.key" --overlay demo.hipbone.example)
run S "hipbone name claim carol --grant ${CAROL:0:24}..."
"$HB" name claim carol --grant "$CAROL" -c "$dir/s.toml" 2>&1 | sed 's/^/    /'

say "A sends to carol by name for 8 seconds; 3 seconds in, A leaves its NAT for another network"
lab_spawn s iperf3 -s -1 >/dev/null 2>&1
sleep 0.5
run A "iperf3 -6 -c carol.demo.hipbone.example -t 8"
lab_exec a iperf3 -6 -c carol.demo.hipbone.example -t 8 -i 1 >"$dir/iperf.log" 2>&1 &
client=$!
sleep 3
echo "    (moving A: new address 203.0.113.66 on a public network, its address behind the NAT removed)"
lab_link inet a 203.0.113.64/28 >/dev/null
lab_exec a ip route replace default via 203.0.113.65
lab_exec a ip addr del 198.51.100.2/28 dev "$(lab_if a na)"
wait "$client"
grep -E "sec|sender|receiver" "$dir/iperf.log" | sed 's/^/    /'

say "A is still alice: S reaches it by name at its new address"
for _ in $(seq 20); do
  rec=$("$HB" overlay -c "$dir/s.toml" fetch "${HIT[a]}" 2>&1)
  grep -q 203.0.113.66 <<<"$rec" && break
  sleep 1
done
run S "hipbone overlay fetch ${HIT[a]}   (A's record)"
python3 -c 'import json,sys; print("    " + "\n    ".join(json.loads(sys.argv[1])["locators"]["locators"]))' "$rec" 2>/dev/null || echo "    $rec"
run S "ping -c 2 alice.demo.hipbone.example"
lab_exec s ping -c 2 alice.demo.hipbone.example | sed 's/^/    /'

say "Done: the namespaces, nodes and TUN devices are removed now"
