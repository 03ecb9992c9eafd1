#!/usr/bin/env bash
# Name resolution through the node's DNS stub (not a test): five real nodes in one overlay
# (tests/lab/overlay.sh's layout); n1..n4 hold a granted name each, n5 runs the stub. From
# n5, one query after another (scripts/dns_probe.py), in one run:
#   cold      the first query of each held name: a lookup in the overlay (owner and
#             replica), the grant checked;
#   cold-nx   names nobody holds, each new: the same lookup, answered NXDOMAIN;
#   warm      a held name again and again: the stub's cache;
#   forwarded a name outside the overlay, passed to a resolver on the router (a stand-in
#             that answers at once) and back: the baseline.
# Each row: queries attempted, failed (timeout, SERVFAIL or a wrong code), median and p99
# in ms, and the median's ratio to the forwarded baseline's.
#   sudo scripts/bench-dns.sh [QUERIES]
set -uo pipefail
cd "$(dirname "$0")/.."
N=${1:-200}
scripts/deps.sh labs || exit 1
cargo build --release --quiet --bin hipbone || exit 1
HB=$PWD/target/release/hipbone
source tests/lab/common.sh

NODES="n1 n2 n3 n4 n5"
LABELS=(alice bob carol dave)
OVERLAY=bench.hipbone.test
lab_init
ring_hosts "$NODES" || exit 1
dir=$(lab_state)
"$HB" genkey -o "$dir/signer.key" 2>/dev/null
SIGNER=$("$HB" pubkey <"$dir/signer.key")
for n in $NODES; do node_key "$n" >/dev/null; done
BOOT=$(node_hit n1)
i=0
for n in $NODES; do
  claim=""
  if [ "$i" -lt 4 ]; then
    grant=$("$HB" name grant "${LABELS[$i]}" "$(node_hit "$n")" --key "$dir/signer.key" --overlay "$OVERLAY")
    claim="label = \"${LABELS[$i]}\"
grant = \"$grant\""
  fi
  dns=""
  [ "$n" = n5 ] && dns='[dns]
listen = ["127.0.0.1:53"]
upstream = ["198.51.100.65:53"]'
  cat >"$dir/$n.toml" <<TOML
[interface]
identity = "$(node_key "$n")"
control = "$dir/$n.sock"

[overlay]
name = "$OVERLAY"
signers = ["$SIGNER"]
$claim

[[overlay.bootstrap]]
hit = "$BOOT"
locators = ["198.51.100.2:10500"]

$dns
TOML
  i=$((i + 1))
done
lab_spawn r python3 tests/lab/dns_upstream.py 198.51.100.65 53 2>>"$dir/upstream.log"
for n in $NODES; do
  node_up "$n" || exit 1
  sleep 0.5
done
echo "waiting for the ring and the four names"
for _ in $(seq 120); do
  held=0
  for l in "${LABELS[@]}"; do
    "$HB" overlay -c "$dir/n1.toml" status >/dev/null 2>&1 || break
    # A held name is visible to the fetch of its claims from n1 (not n5: its cache stays cold).
    "$HB" resolve -c "$dir/n1.toml" "$l.$OVERLAY" >/dev/null 2>&1 && held=$((held + 1))
  done
  [ "$held" = 4 ] && break
  sleep 1
done
[ "$held" = 4 ] || { echo "only $held of 4 names resolve from n1; not measured"; exit 1; }

probe() { lab_exec n5 python3 scripts/dns_probe.py 127.0.0.1 53 "$@"; }
# stats WANT: reads "name code ms" lines; prints "attempted failed median p99".
stats() {
  python3 -c '
import sys
want = sys.argv[1]
rows = [l.split() for l in sys.stdin if l.strip()]
ok = sorted(float(r[2]) for r in rows if r[1] == want)
def pct(p):
    return ok[min(len(ok) - 1, int(p * len(ok)))] if ok else float("nan")
print(len(rows), len(rows) - len(ok), f"{pct(0.5):.3f}", f"{pct(0.99):.3f}")' "$1"
}
cold=$(probe AAAA "${LABELS[@]/%/.$OVERLAY}" | stats NOERROR)
names=()
for k in $(seq "$N"); do names+=("nobody$k.$OVERLAY"); done
coldnx=$(probe AAAA "${names[@]}" | stats NXDOMAIN)
names=()
for _ in $(seq "$N"); do names+=("alice.$OVERLAY"); done
warm=$(probe AAAA "${names[@]}" | stats NOERROR)
names=()
for _ in $(seq "$N"); do names+=("debian.lab.test"); done
fwd=$(probe A "${names[@]}" | stats NOERROR)

base=$(awk '{ print $3 }' <<<"$fwd")
printf '\n%-10s %9s %6s %11s %9s %16s\n' case attempted failed "median ms" "p99 ms" "median/forwarded"
for row in "cold $cold" "cold-nx $coldnx" "warm $warm" "forwarded $fwd"; do
  read -r name tried failed med p99 <<<"$row"
  ratio=$(awk -v m="$med" -v b="$base" 'BEGIN { printf (b > 0 ? "%.2f" : "nan"), m / b }')
  printf '%-10s %9s %6s %11s %9s %16s\n' "$name" "$tried" "$failed" "$med" "$p99" "$ratio"
done
