#!/usr/bin/env bash
# The fuzz targets in fuzz/, built with libFuzzer's coverage instrumentation and run
# briefly from the seeds in fuzz/seeds/<target>/. scripts/test.sh calls this; for long
# runs use `cargo fuzz run <target> fuzz/seeds/<target>` or FUZZ_SECONDS below.
#   scripts/fuzz-smoke.sh                    every target in fuzz/Cargo.toml, FUZZ_SECONDS
#                                            (default 20) each
#   FUZZ_SECONDS=600 scripts/fuzz-smoke.sh host_datagram
#
# Stable toolchain, no cargo-fuzz. The flags cargo-fuzz passes for coverage guidance
# (-Cpasses=sancov-module, -Cllvm-args=-sanitizer-coverage-*, --cfg fuzzing) are stable
# codegen options, so the targets are coverage-guided exactly as under `cargo fuzz run
# -s none`. What stable lacks is cargo-fuzz's default AddressSanitizer (-Zsanitizer=address,
# nightly only): we go without it, since the targets reach no unsafe code of ours (hip
# forbids it) and what they look for is a panic or a broken assertion.
# Overflow checks and debug assertions for our crates come from fuzz/Cargo.toml's profile.
# libfuzzer-sys compiles libFuzzer itself, which needs a C++ compiler.
#
# Each run starts from the seeds alone (a fresh corpus), so CI does the same bounded work
# every time; the build in fuzz/target is incremental. A crash fails the script and leaves
# the input in fuzz/artifacts/<target>/.
set -euo pipefail
cd "$(dirname "$0")/../fuzz"

seconds=${FUZZ_SECONDS:-20}
# libFuzzer reads -max_total_time=0 as "no limit".
case $seconds in
  '' | *[!0-9]* | 0) echo "fuzz-smoke: FUZZ_SECONDS must be a whole number above 0" >&2; exit 1 ;;
esac
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  # Every [[bin]] of fuzz/Cargo.toml, so that a new target is never left out.
  mapfile -t targets < <(awk '/^\[\[bin\]\]/ { bin = 1 }
    bin && /^name *=/ { split($0, q, "\""); print q[2]; bin = 0 }' Cargo.toml)
fi
[ ${#targets[@]} -gt 0 ] || { echo "fuzz-smoke: no [[bin]] in fuzz/Cargo.toml" >&2; exit 1; }

# A C++ compiler builds libFuzzer: installed on Debian as root if missing.
../scripts/deps.sh fuzz

# --target keeps these flags off build scripts and proc macros, which run on the host and
# would not link without libFuzzer's runtime.
host=$(rustc -vV | sed -n 's/^host: //p')
flags=(
  -Cpasses=sancov-module
  -Cllvm-args=-sanitizer-coverage-level=4
  -Cllvm-args=-sanitizer-coverage-inline-8bit-counters
  -Cllvm-args=-sanitizer-coverage-pc-table
  -Cllvm-args=-sanitizer-coverage-trace-compares
  -Cllvm-args=-simplifycfg-branch-fold-threshold=0
  --cfg fuzzing
)
unset CARGO_ENCODED_RUSTFLAGS # it would take precedence
export RUSTFLAGS="${flags[*]}"
bins=()
for t in "${targets[@]}"; do bins+=(--bin "$t"); done
echo "+ cargo build --release --target $host ${bins[*]}  (RUSTFLAGS: $RUSTFLAGS)"
cargo build --quiet --release --target "$host" "${bins[@]}"

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
for t in "${targets[@]}"; do
  bin="target/$host/release/$t"
  mkdir -p "$work/$t" "artifacts/$t"
  args=(-max_total_time="$seconds" -max_len=4096 -timeout=10 -rss_limit_mb=2048
        -print_final_stats=1 -artifact_prefix="artifacts/$t/" "$work/$t")
  if [ -d "seeds/$t" ]; then args+=("seeds/$t"); fi
  echo "+ fuzz/$bin ${args[*]}"
  if ! "$bin" "${args[@]}" >"$work/$t.log" 2>&1; then
    tail -n 60 "$work/$t.log" >&2
    echo "fuzz-smoke: $t failed; the input is in fuzz/artifacts/$t/, rerun it with" >&2
    echo "  fuzz/$bin fuzz/artifacts/$t/<file>" >&2
    exit 1
  fi
  grep -E '^#[0-9]+[[:space:]]+DONE|^Done [0-9]+ runs' "$work/$t.log" | sed "s/^/$t: /"
done
echo "fuzz-smoke: ok"
