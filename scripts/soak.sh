#!/usr/bin/env bash
# soak.sh - run the sync simulator's seeded schedules (test_session's
# session/random_schedules_converge) back to back for a given time, and
# report the seed range covered and the first failing seed.
#
#   scripts/soak.sh [SECONDS [FIRST_SEED]]
#
# SECONDS defaults to 600. FIRST_SEED defaults to one derived from the time,
# so successive soaks cover new seeds; CI's session_seeds covers
# 100000..109999. Seeds run in chunks of WEFT_SOAK_CHUNK (default 2000) cases
# per test process; a chunk stops at its first failure, so the seed reported
# is the first failing one. Uses $WEFT_BUILD_DIR (default build/), which must
# hold a built test_session (a non-sanitizer build is ~5x faster).
# Exit status: 0 no failure, 1 a seed failed, 2 usage or setup error.
set -uo pipefail
cd "$(dirname "$0")/.."
secs=${1:-600}
first=${2:-$(( ($(date +%s) % 100000) * 100000 + 1000000 ))}
chunk=${WEFT_SOAK_CHUNK:-2000}
bin=${WEFT_BUILD_DIR:-build}/tests/transport/test_session
case "$secs$first$chunk" in *[!0-9]*) echo "usage: $0 [SECONDS [FIRST_SEED]]" >&2; exit 2 ;; esac
if [ ! -x "$bin" ]; then
    echo "soak: $bin not found; build it: cmake -S . -B build && make -C build test_session" >&2
    exit 2
fi
log=$(mktemp) seedlog=$(mktemp)
trap 'rm -f "$log" "$seedlog"' EXIT
start=$(date +%s)
seed=$first
echo "soak: $secs s from seed $first, $chunk seeds per run ($bin)"
while [ $(( $(date +%s) - start )) -lt "$secs" ]; do
    : >"$seedlog"
    if WEFT_SEED=$seed WEFT_CASES=$chunk WEFT_SEED_LOG=$seedlog \
        "$bin" --filter 'session/random_schedules_converge' >"$log" 2>&1; then
        seed=$((seed + chunk))
        continue
    fi
    # An assertion names its seed; a crash or timeout leaves the seed log.
    bad=$(grep -o '\[seed [0-9]*\]' "$log" | head -n 1 | tr -dc '0-9')
    [ -n "$bad" ] || bad=$(tr -dc '0-9' <"$seedlog")
    if [ -z "$bad" ]; then
        echo "soak: the run of seeds $seed..$((seed + chunk - 1)) failed before naming a seed:"
        tail -n 20 "$log"
        exit 1
    fi
    echo "soak: passed seeds $first..$((bad - 1)) ($((bad - first)) seeds) in $(( $(date +%s) - start )) s"
    echo "soak: FIRST FAILING SEED $bad"
    grep -E '^\[----\]|^\[FAIL\]|^\[====\]' "$log" | head -n 20
    echo "soak: replay: WEFT_SEED=$bad WEFT_CASES=1 $bin --filter 'session/random_schedules_converge'"
    exit 1
done
echo "soak: passed seeds $first..$((seed - 1)) ($((seed - first)) seeds) in $(( $(date +%s) - start )) s: no failure"
