#!/usr/bin/env bash
# run.sh - build weft's libFuzzer targets with clang and fuzz each of them.
#
# Usage: tests/fuzz/run.sh [SECONDS] [TARGET...]
#   SECONDS  time per target (default 30); TARGETs default to all of them.
# Builds build-fuzz/ (or $WEFT_FUZZ_BUILD_DIR) with CC=clang -DWEFT_FUZZ=ON,
# asserts enabled (no NDEBUG), then runs each fuzz_<target> one after the
# other with -max_len=65536 -rss_limit_mb=2048 -timeout=10, starting from
# corpus/<target> and crashes/<target> (read only: new inputs go to a
# scratch corpus in the build directory, which persists between runs).
# Any crash, leak, timeout or out-of-memory: the input is copied to
# tests/fuzz/crashes/<target>/ (commit it: the ctest replay then re-runs it
# forever) and the script exits 1 after the remaining targets have run.
# Extra libFuzzer flags: $WEFT_FUZZ_FLAGS (e.g. "-jobs=2 -workers=2").
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
secs=${1:-30}
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(op fstate value vv wire card json)
build=${WEFT_FUZZ_BUILD_DIR:-$root/build-fuzz}

command -v clang >/dev/null || { echo "run.sh: clang is required (apt-get install clang libclang-rt-14-dev)" >&2; exit 2; }
cmake -S "$root" -B "$build" -DCMAKE_C_COMPILER=clang -DWEFT_FUZZ=ON -DWEFT_BUILD_TESTS=ON \
  -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_C_FLAGS_RELWITHDEBINFO="-O1 -g" >/dev/null
bins=()
for t in "${targets[@]}"; do bins+=("fuzz_$t"); done
cmake --build "$build" -j "$(nproc)" --target "${bins[@]}"

export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:allocator_may_return_null=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
status=0
for t in "${targets[@]}"; do
  bin=$(find "$build" -name "fuzz_$t" -type f -perm -u+x | head -n 1)
  work=$build/fuzz-corpus/$t
  art=$build/fuzz-artifacts/$t
  mkdir -p "$work" "$art" "$here/crashes/$t"
  echo "== fuzz_$t for ${secs}s"
  rc=0
  TIMEFORMAT="cpu: %U s user, %S s sys, %R s wall"
  # shellcheck disable=SC2086  # WEFT_FUZZ_FLAGS is a list of flags
  { time "$bin" -max_total_time="$secs" -max_len=65536 -rss_limit_mb=2048 -timeout=10 \
    -print_final_stats=1 -artifact_prefix="$art/" ${WEFT_FUZZ_FLAGS:-} \
    "$work" "$here/corpus/$t" "$here/crashes/$t" >"$build/fuzz-$t.log" 2>&1 || rc=$?; } \
    2>>"$build/fuzz-$t.log"
  grep -E '^stat::(number_of_executed_units|peak_rss_mb|new_units_added)|^#[0-9]+.*DONE|^cpu: ' \
    "$build/fuzz-$t.log" || true
  found=0
  for f in "$art"/crash-* "$art"/leak-* "$art"/timeout-* "$art"/oom-* "$art"/slow-unit-*; do
    [ -e "$f" ] || continue
    case $(basename "$f") in slow-unit-*) continue ;; esac
    cp "$f" "$here/crashes/$t/"
    echo "run.sh: fuzz_$t: $(basename "$f") -> tests/fuzz/crashes/$t/" >&2
    rm -f "$f"
    found=1
  done
  if [ "$rc" -ne 0 ] || [ "$found" -ne 0 ]; then
    echo "run.sh: fuzz_$t FAILED (exit $rc); log: $build/fuzz-$t.log" >&2
    grep -E 'ERROR: |SUMMARY: |fuzz: check failed|runtime error' "$build/fuzz-$t.log" | head -n 5 >&2 || true
    status=1
  fi
done
exit $status
