#!/usr/bin/env bash
# Runs every cargo-fuzz target of fuzz/ (the inventory loader, the diagnostics printer) for SECONDS each,
# starting from the seeds in fuzz/corpus/<target>/; fails on the first crash, panic, timeout or leak, whose
# input libFuzzer keeps in fuzz/artifacts/<target>/. Usage: scripts/fuzz.sh SECONDS
#
# `scripts/fuzz.sh --build` only installs cargo-fuzz and builds the targets (what `fuzz run` builds: release,
# address sanitizer), so that the cold build can run beside other work and the timed runs start at once.
set -euo pipefail
cd "$(dirname "$0")/.."

seconds=${1:-}
if [[ $seconds != --build ]] && ! [[ $seconds =~ ^[1-9][0-9]*$ ]]; then
  echo "usage: $0 SECONDS (a whole number of seconds per target, e.g. 60) | $0 --build" >&2
  exit 64
fi

if ! cargo fuzz --help >/dev/null 2>&1; then
  echo "== installing cargo-fuzz"
  cargo install cargo-fuzz --locked
fi

# cargo-fuzz passes -Z flags (sanitizer, coverage), which only a nightly compiler accepts. Without a nightly
# toolchain, the stable one is told to accept them with RUSTC_BOOTSTRAP=1 (same flags, same instrumentation).
toolchain=()
if rustup toolchain list 2>/dev/null | grep -q '^nightly'; then
  toolchain=(+nightly)
  echo "== toolchain: nightly"
else
  export RUSTC_BOOTSTRAP=1
  echo "== toolchain: stable with RUSTC_BOOTSTRAP=1 (no nightly installed)"
fi

if [[ $seconds == --build ]]; then
  echo "== fuzz build (every target)"
  cargo "${toolchain[@]}" fuzz build
  exit 0
fi

for target in $(cargo "${toolchain[@]}" fuzz list); do
  # New inputs libFuzzer finds go to a scratch folder (the first corpus folder), never into the seeds.
  work=$(mktemp -d)
  echo "== fuzz $target for ${seconds} s"
  status=0
  cargo "${toolchain[@]}" fuzz run "$target" "$work" "fuzz/corpus/$target" -- \
    -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -max_len=65536 || status=$?
  rm -rf -- "$work"
  if [ "$status" -ne 0 ]; then
    echo "fuzz target $target failed (exit $status); the input is in fuzz/artifacts/$target/" >&2
    exit "$status"
  fi
done
echo "== every fuzz target ran ${seconds} s without a crash"
