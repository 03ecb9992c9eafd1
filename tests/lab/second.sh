#!/usr/bin/env bash
# A second `hipbone up` on a host where one runs is refused with a message that names the
# running daemon, and the first one keeps running: with the same configuration (its control
# socket answers), with another control socket on the same port, and with another port on
# the same TUN device name (never a suggestion to delete the device in use).
set -uo pipefail
cd "$(dirname "$0")/../.."
HB=${HB:-$PWD/target/release/hipbone}
source tests/lab/common.sh

lab_init
lab_one
dir=$(lab_state)
cat >"$dir/a.toml" <<TOML
[interface]
identity = "$(node_key a)"
control = "$dir/a.sock"
TOML
node_up a || { finish; exit 1; }

# refused CONFIG PATTERN: `hipbone up -c CONFIG` fails at once with PATTERN in its message,
# and never suggests deleting the device.
refused() {
  local out
  out=$(lab_exec a timeout 10 "$HB" up -c "$1" 2>&1)
  local rc=$?
  echo "    $out"
  [ "$rc" = 1 ] && grep -q -- "$2" <<<"$out" && ! grep -q "ip link del" <<<"$out"
}
check "the same configuration again names the running daemon" \
  refused "$dir/a.toml" "another hipbone daemon is running on control socket $dir/a.sock"
sed "s|a.sock|b.sock|" "$dir/a.toml" >"$dir/b.toml"
check "another control socket on the same port: the port is held" \
  refused "$dir/b.toml" "binding UDP 0.0.0.0:10500: another program holds the port"
printf 'port = 10600\n' >>"$dir/b.toml"
check "another port on the same TUN device: the device is held (no 'ip link del')" \
  refused "$dir/b.toml" "a running program holds a TUN device of that name"
check "the first daemon still answers" node_field a 's["hit"]'
finish
