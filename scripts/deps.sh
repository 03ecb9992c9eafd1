#!/usr/bin/env bash
# What the scripts need besides the Rust toolchain, and installing it: the one place that
# knows (scripts/demo.sh, scripts/test.sh, scripts/fuzz-smoke.sh, scripts/check-pcap.sh and
# .ci/run call it).
#   scripts/deps.sh demo     ip, ping, iperf3, nft, conntrack,   (sudo scripts/demo.sh)
#                            python3, dig
#   scripts/deps.sh test     everything scripts/test.sh runs: the fuzz and pcap groups, and
#                            as root the labs group too (as a user the labs are skipped)
#   scripts/deps.sh fuzz     a C++ compiler, to build libFuzzer   (scripts/fuzz-smoke.sh)
#   scripts/deps.sh pcap     tshark                               (scripts/check-pcap.sh)
#   scripts/deps.sh labs     ip, ping, iperf3, nft, conntrack, tcpdump, socat, python3, dig,
#                            tshark (tests/lab/*.sh and the benchmark scripts)
# Several groups may be named. Run as root where apt-get exists (Debian, Ubuntu), it
# installs the missing packages: apt-get update, then apt-get install -y
# --no-install-recommends (without that flag some of them pull in a kernel image and
# systemd), with tshark preseeded not to install dumpcap setuid. Otherwise it names each
# missing command with its Debian package and exits 1. It also checks, and never installs,
# the Rust toolchain: cargo and rustc 1.85 or newer (rustup; Debian's own rustc is older).
set -euo pipefail

# command -> Debian package
declare -A package=(
  [ip]=iproute2 [ping]=iputils-ping [iperf3]=iperf3 [nft]=nftables [conntrack]=conntrack
  [tcpdump]=tcpdump [socat]=socat [python3]=python3 [tshark]=tshark [c++]=g++
  [dig]=bind9-dnsutils
)
demo=(ip ping iperf3 nft conntrack python3 dig)
labs=(ip ping iperf3 nft conntrack tcpdump socat python3 tshark dig)
fuzz=(c++)
pcap=(tshark)

[ $# -gt 0 ] || { sed -n '2,17p' "$0" >&2; exit 2; }
want=()
for group in "$@"; do
  case $group in
  demo) want+=("${demo[@]}") ;;
  labs) want+=("${labs[@]}") ;;
  fuzz) want+=("${fuzz[@]}") ;;
  pcap) want+=("${pcap[@]}") ;;
  test)
    want+=("${fuzz[@]}" "${pcap[@]}")
    [ "$(id -u)" != 0 ] || want+=("${labs[@]}")
    ;;
  *) echo "deps.sh: unknown group '$group' (demo, test, fuzz, pcap, labs)" >&2; exit 2 ;;
  esac
done

# The Rust toolchain: checked, not installed.
rust_ok=yes
if ! command -v cargo >/dev/null || ! command -v rustc >/dev/null; then
  rust_ok="cargo and rustc are not on PATH"
else
  version=$(rustc --version | awk '{ print $2 }')
  IFS=. read -r major minor _ <<<"$version"
  if [ "$major" -lt 1 ] || { [ "$major" -eq 1 ] && [ "$minor" -lt 85 ]; }; then
    rust_ok="rustc $version is older than 1.85"
  fi
fi
if [ "$rust_ok" != yes ]; then
  echo "deps.sh: $rust_ok: install Rust 1.85 or newer with rustup (https://rustup.rs)" >&2
  if [ -n "${SUDO_USER:-}" ]; then
    echo "deps.sh: under sudo, PATH is reset; keep yours: sudo env PATH=\"\$PATH\" $0 ..." >&2
  fi
  exit 1
fi

missing=()
for cmd in "${want[@]}"; do
  command -v "$cmd" >/dev/null && continue
  case " ${missing[*]} " in *" ${package[$cmd]} "*) continue ;; esac
  missing+=("${package[$cmd]}")
done
[ ${#missing[@]} -gt 0 ] || exit 0

if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  echo "deps.sh: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  if [[ " ${missing[*]} " == *" tshark "* ]]; then
    echo "wireshark-common wireshark-common/install-setuid boolean false" | debconf-set-selections
  fi
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  for cmd in "${want[@]}"; do
    command -v "$cmd" >/dev/null || { echo "deps.sh: $cmd still missing after the install" >&2; exit 1; }
  done
  exit 0
fi

echo "deps.sh: missing: ${missing[*]} (Debian package names)." >&2
if command -v apt-get >/dev/null; then
  echo "deps.sh: run as root to install them, or: sudo apt-get install --no-install-recommends ${missing[*]}" >&2
else
  echo "deps.sh: no apt-get here: install the programs of those packages with your system's tools" >&2
fi
exit 1
