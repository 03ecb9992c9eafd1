#!/usr/bin/env bash
# Time to first byte of a TCP connection to a HIT never seen before (not a test): found
# through the overlay, against the same to a peer written in the configuration, in one run.
# Eight real nodes form a ring through one bootstrap (tests/lab/overlay.sh's layout); each
# serves one byte to every TCP connection on port 7000 (scripts/ttfb.py). Two clients:
#   directory   (host viadir) [overlay] only, a client of the ring: for a HIT it has no
#               association with, the node looks the HIT-LOCATOR record up (owner and
#               replica), then runs the base exchange to the address it names;
#   configured  (host viaconf) no overlay, every member a [[peer]] with its address: the
#               base exchange starts at once (the baseline).
# Each round both clients start afresh with a new identity (so every member is new to
# them) and connect to every member they have no association with, one after another;
# the time runs from connect() to the first byte. The two take turns going first. Each
# row: connections attempted, failed, median and p99 in ms, and the median's ratio to the
# configured baseline's.
#   sudo scripts/bench-directory.sh [ROUNDS]
set -uo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${1:-8}
scripts/deps.sh labs || exit 1
cargo build --release --quiet --bin hipbone || exit 1
HB=${HB:-$PWD/target/release/hipbone}
source tests/lab/common.sh

NODES="n1 n2 n3 n4 n5 n6 n7 n8"
OVERLAY=ttfb.hipbone.test
lab_init
ring_hosts "$NODES viadir viaconf" || exit 1
dir=$(lab_state)
declare -A HIT ADDR
i=0
for n in $NODES; do
  node_key "$n" >/dev/null
  HIT[$n]=$(node_hit "$n")
  ADDR[$n]="198.51.100.$((i * 16 + 2))"
  i=$((i + 1))
done
member() { # NAME IDENTITY [MORE_TOML]
  printf '[interface]\nidentity = "%s"\ncontrol = "%s"\n\n[overlay]\nname = "%s"\n%s\n\n[[overlay.bootstrap]]\nhit = "%s"\nlocators = ["%s:10500"]\n' \
    "$2" "$dir/$1.sock" "$OVERLAY" "${3:-}" "${HIT[n1]}" "${ADDR[n1]}" >"$dir/$1.toml"
}
for n in $NODES; do
  member "$n" "$(node_key "$n")"
  lab_spawn "$n" python3 scripts/ttfb.py serve 7000
  node_up "$n" || exit 1
  sleep 0.3
done
joined() { [ "$("$HB" overlay -c "$dir/$1.toml" status 2>/dev/null | python3 -c 'import json,sys; print(json.load(sys.stdin)["joined"])' 2>/dev/null)" = True ]; }
echo "waiting for the ring, and for every member's record"
for _ in $(seq 90); do
  all=1
  for n in $NODES; do joined "$n" || all=0; done
  [ "$all" = 1 ] && break
  sleep 1
done
[ "$all" = 1 ] || { echo "the ring did not form; not measured"; exit 1; }
# Records stored while the ring formed are stored again a minute after each join
# (docs/OVERLAY.md); measure once every member's record is where a lookup looks.
for _ in $(seq 90); do
  found=0
  for n in $NODES; do
    "$HB" overlay -c "$dir/n1.toml" fetch "${HIT[$n]}" 2>/dev/null | grep -q '"host ' && found=$((found + 1))
  done
  [ "$found" = 8 ] && break
  sleep 2
done
echo "records found: $found of 8"

# The configured client: every member as a [[peer]], no overlay.
configured_toml() {
  printf '[interface]\nidentity = "%s"\ncontrol = "%s"\n' "$1" "$dir/viaconf.sock"
  for n in $NODES; do
    printf '\n[[peer]]\nhit = "%s"\nlocators = ["%s:10500"]\n' "${HIT[$n]}" "${ADDR[$n]}"
  done
}
associated() { node_field "$1" "'\n'.join(a['peer'] for a in s['associations'])" 2>/dev/null; }
: >"$dir/viadir.rows"
: >"$dir/viaconf.rows"
for r in $(seq "$ROUNDS"); do
  for c in viadir viaconf; do
    "$HB" genkey -o "$dir/$c-$r.key" 2>/dev/null
    if [ "$c" = viadir ]; then
      member viadir "$dir/viadir-$r.key" "client = true"
    else
      configured_toml "$dir/viaconf-$r.key" >"$dir/viaconf.toml"
    fi
    node_up "$c" || exit 1
  done
  for _ in $(seq 30); do joined viadir && break; sleep 0.5; done
  targets=()
  for n in $NODES; do
    associated viadir | grep -qx "${HIT[$n]}" || targets+=("${HIT[$n]}")
  done
  # Each client goes first in every other round: a member's first contact with any
  # new peer may cost more than the second's.
  order="viadir viaconf"
  [ $((r % 2)) = 0 ] && order="viaconf viadir"
  for c in $order; do
    lab_exec "$c" python3 scripts/ttfb.py probe 7000 "${targets[@]}" >>"$dir/$c.rows"
  done
  node_down viadir
  node_down viaconf
  echo "round $r: ${#targets[@]} members new to both clients"
done

# stats FILE: "attempted failed median p99" of its "HIT ok|fail MS" rows.
stats() {
  python3 -c '
import sys
rows = [l.split() for l in open(sys.argv[1]) if l.strip()]
ok = sorted(float(r[2]) for r in rows if r[1] == "ok")
def pct(p):
    return ok[min(len(ok) - 1, int(p * len(ok)))] if ok else float("nan")
print(len(rows), len(rows) - len(ok), f"{pct(0.5):.2f}", f"{pct(0.99):.2f}")' "$1"
}
dirs=$(stats "$dir/viadir.rows")
conf=$(stats "$dir/viaconf.rows")
base=$(awk '{ print $3 }' <<<"$conf")
printf '\n%-11s %9s %6s %11s %9s %17s\n' client attempted failed "median ms" "p99 ms" "median/configured"
for row in "directory $dirs" "configured $conf"; do
  read -r name tried failed med p99 <<<"$row"
  ratio=$(awk -v m="$med" -v b="$base" 'BEGIN { printf (b > 0 ? "%.2f" : "nan"), m / b }')
  printf '%-11s %9s %6s %11s %9s %17s\n' "$name" "$tried" "$failed" "$med" "$p99" "$ratio"
done
grep -h fail "$dir/viadir.rows" "$dir/viaconf.rows" | sort | uniq -c | sed 's/^/  failed: /' || true
