#!/usr/bin/env bash
# The one test entry point: what a newcomer runs and what CI runs (.ci/run calls it).
#   scripts/test.sh          everything
# Steps: formatting, unit and simulator tests (release build, so the 1,000-seed runs are
# quick), the benchmarks in test mode (they run once, unmeasured), the fuzz targets for a
# bounded number of inputs, an end-to-end check that tshark dissects a simulated base
# exchange without a malformed packet, and (as root) the network-namespace labs.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n== %s\n' "$*"; }

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
  cargo build --release --quiet --bin hipbone
  for t in tests/lab/*.sh; do
    case $t in tests/lab/common.sh | tests/lab/nat_topology.sh | tests/lab/nat_nodes.sh) continue ;; esac # libraries
    echo "-- $t"
    "$t"
  done
else
  echo "skipped: the labs need root (network namespaces, TUN); CI runs them as root"
fi

echo
echo "scripts/test.sh: all steps passed"
