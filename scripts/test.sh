#!/usr/bin/env bash
# The one test entry point: what a newcomer runs and what CI runs (.ci/run calls it).
#   scripts/test.sh          everything
# Steps: formatting, unit and simulator tests (release build, so the 1,000-seed runs are
# quick), the benchmarks in test mode (they run once, unmeasured), the fuzz targets for a
# bounded number of inputs, an end-to-end check that tshark dissects a simulated base
# exchange without a malformed packet, and (as root) the network-namespace labs and the
# root-only tests of tests/lab_tun.rs. As root on Debian it first installs what is missing
# (scripts/deps.sh test); as a user the labs are skipped and the last line says so.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n== %s\n' "$*"; }

step "what the steps need (scripts/deps.sh test)"
scripts/deps.sh test

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo test (workspace, release)"
cargo test --workspace --release --all-targets

step "fuzz targets: build and run briefly"
scripts/fuzz-smoke.sh

step "tshark reads a simulated base exchange"
scripts/check-pcap.sh

step "namespace labs (real TUN, real UDP, real tools)"
if [ "$(id -u)" = 0 ]; then
  # The tests of tests/lab_tun.rs that need root are #[ignore]d for everyone else.
  cargo test --release --test lab_tun -- --ignored
  cargo build --release --quiet --bin hipbone
  for t in tests/lab/*.sh; do
    case $t in tests/lab/common.sh | tests/lab/nat_topology.sh | tests/lab/nat_nodes.sh) continue ;; esac # libraries
    echo "-- $t"
    "$t"
  done
  echo
  echo "scripts/test.sh: all steps passed"
else
  labs=$(find tests/lab -name '*.sh' ! -name common.sh ! -name nat_topology.sh ! -name nat_nodes.sh | wc -l)
  ignored=$(grep -c '^#\[ignore = "needs root' tests/lab_tun.rs)
  echo "skipped: $labs labs and $ignored root-only tests of tests/lab_tun.rs need root (network namespaces, TUN)"
  echo
  echo "scripts/test.sh: all steps passed, but NOT the $labs namespace labs and $ignored root-only TUN tests: skipped, they need root (sudo scripts/test.sh)"
fi
