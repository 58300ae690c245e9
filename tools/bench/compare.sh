#!/usr/bin/env bash
# tools/bench/compare.sh - weft beside Automerge, automerge-repo and Yjs, in
# one run on one machine, and the page that compares them.
#
#   tools/bench/compare.sh                  # everything (~15-25 min here)
#   tools/bench/compare.sh --quick          # smoke run: 10x smaller, ~2 min
#   tools/bench/compare.sh --peers-only     # skip weft-bench (its lines are n/m)
#   tools/bench/compare.sh --weft-only      # skip the Node.js peers
#   tools/bench/compare.sh --out FILE       # the page (default docs/performance-compare.md)
#   tools/bench/compare.sh --results FILE   # the JSON lines (default RUNDIR/results.jsonl)
#
# Steps: (1) build weft-bench (CMake Release, in $WEFT_BENCH_BUILD, default
# build-bench/); (2) run weft-bench --json write1 batch notes sync_initial
# sync_incremental (its in-sync sessions are the reconnect figures), and
# merge when this weft-bench has it; (3) in
# tools/bench/peers/, `npm ci` when node_modules is missing, then yjs.mjs,
# automerge.mjs and automerge_repo.mjs (automerge-repo loads the documents
# automerge.mjs built, through WEFT_PEERS_CACHE); (4) compare_table.py renders
# the page. Every step's JSON lines go to one results file; its stderr (the
# "# " summaries and progress) to the terminal and RUNDIR/log.txt. A failed
# step is recorded in the results ({"bench":"compare","what":"failed",...}),
# the others still run, and the page marks its figures n/m; the script then
# exits 1 (0 when every step passed).
#
# Environment: WEFT_BENCH_BUILD (build directory), WEFT_BENCH_DIR (where
# weft-bench makes its stores, default /var/tmp), WEFT_PEERS_CACHE (reuse the
# Automerge documents of an earlier run: they take minutes to build),
# NODE (default node), PYTHON (default /usr/bin/python3).
#
# Invariants: touches only RUNDIR (a fresh directory under /var/tmp), the
# build directory, tools/bench/peers/node_modules and the output page; the
# git tree and index are only read (the commit id for the page).
set -u -o pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
build=${WEFT_BENCH_BUILD:-$root/build-bench}
benchdir=${WEFT_BENCH_DIR:-/var/tmp}
node=${NODE:-node}
python=${PYTHON:-/usr/bin/python3}
out=$root/docs/performance-compare.md
results=
quick=()
run_weft=1
run_peers=1

usage() { sed -n '4,10p' "$0" | sed 's/^# \{0,1\}//'; }

while [ $# -gt 0 ]; do
    case $1 in
    --quick) quick=(--quick) ;;
    --peers-only) run_weft=0 ;;
    --weft-only) run_peers=0 ;;
    --out) out=$2; shift ;;
    --results) results=$2; shift ;;
    -h | --help) usage; exit 0 ;;
    *) echo "compare.sh: unknown argument '$1'" >&2; usage >&2; exit 2 ;;
    esac
    shift
done

rundir=$(mktemp -d /var/tmp/weft-compare.XXXXXX)
results=${results:-$rundir/results.jsonl}
log=$rundir/log.txt
: >"$results"
failed=0

say() { echo "compare.sh: $*" | tee -a "$log" >&2; }

# Appends one {"bench":"compare",...} line; args are key=value (strings).
meta() {
    "$python" -c 'import json,sys; d={"bench":"compare"}; d.update(a.split("=",1) for a in sys.argv[1:]); print(json.dumps(d))' "$@" >>"$results"
}

# step NAME CMD...: runs CMD, stdout's JSON lines to the results, stderr to
# the terminal and the log; records a failure and goes on.
step() {
    local name=$1
    shift
    say "step $name: $*"
    local t0=$SECONDS
    "$@" >"$rundir/$name.out" 2> >(tee -a "$log" >&2)
    local rc=$?
    grep '^{' "$rundir/$name.out" >>"$results"
    if [ $rc -ne 0 ]; then
        failed=1
        meta what=failed step="$name" rc="$rc"
        say "step $name FAILED (exit $rc) after $((SECONDS - t0)) s"
    else
        say "step $name done in $((SECONDS - t0)) s"
    fi
    return 0
}

commit=$(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo unknown)
if [ -n "$(git -C "$root" status --porcelain -- store crdt transport clock common include tools/bench 2>/dev/null)" ]; then
    commit="$commit + uncommitted changes"
fi
mem=$(awk '/MemTotal/ {printf "%.0f GB memory", $2 / 1048576}' /proc/meminfo)
meta what=run date="$(date -u +%Y-%m-%dT%H:%MZ)" weft_commit="$commit" mem="$mem" \
    loadavg="$(cut -d' ' -f1-3 /proc/loadavg)" dir="$benchdir" \
    mode="${quick[*]:-full}" rundir="$rundir"
say "results: $results (log: $log)"

# ---- weft ----
if [ $run_weft = 1 ]; then
    say "building weft-bench in $build"
    if cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=Release >>"$log" 2>&1 &&
        make -C "$build" -j2 weft-bench >>"$log" 2>&1; then
        bench=$build/tools/weft-bench
        workloads=(write1 batch notes sync_initial sync_incremental)
        if "$bench" --help 2>&1 | grep -qw merge; then
            workloads+=(merge)
        else
            say "weft-bench has no merge workload: weft's merge is n/m"
            meta what=missing step=weft-merge reason="weft-bench has no merge workload"
        fi
        step weft "$bench" --json --dir "$benchdir" "${quick[@]}" "${workloads[@]}"
    else
        failed=1
        meta what=failed step=weft-build rc=1
        say "building weft-bench FAILED (see $log)"
    fi
fi

# ---- the peers ----
if [ $run_peers = 1 ]; then
    peers=$here/peers
    ok=1
    if [ ! -d "$peers/node_modules" ]; then
        say "installing the peers' packages (npm ci)"
        if ! (cd "$peers" && npm ci --no-audit --no-fund >>"$log" 2>&1); then
            # npm ci refuses a lock that lacks the optional prebuilt
            # @cbor-extract/* packages (of cbor-x, automerge-repo's CBOR
            # codec; without them it decodes in JS): a registry that does not
            # serve them yields such a lock. npm install --no-save installs
            # the lock's exact versions all the same and leaves it unchanged.
            say "npm ci refused the lock; installing its versions with npm install --no-save"
            if ! (cd "$peers" && npm install --no-save --no-audit --no-fund >>"$log" 2>&1); then
                failed=1
                ok=0
                meta what=failed step=npm-install rc=1
                say "installing the peers' packages FAILED (see $log)"
            fi
        fi
    fi
    if [ $ok = 1 ]; then
        export WEFT_PEERS_CACHE=${WEFT_PEERS_CACHE:-$rundir/cache}
        mkdir -p "$WEFT_PEERS_CACHE"
        step yjs "$node" --expose-gc "$peers/yjs.mjs" "${quick[@]}"
        step automerge "$node" --expose-gc "$peers/automerge.mjs" "${quick[@]}"
        step automerge-repo "$node" --expose-gc "$peers/automerge_repo.mjs" "${quick[@]}"
    fi
fi

# ---- the page ----
mkdir -p "$(dirname "$out")"
if "$python" "$here/compare_table.py" "$results" >"$out.tmp"; then
    mv "$out.tmp" "$out"
    say "wrote $out"
else
    rm -f "$out.tmp"
    failed=1
    say "compare_table.py FAILED"
fi
say "results kept in $rundir"
exit $failed
