#!/usr/bin/env bash
# demo.sh - the README's main command: builds weft and walks through what it
# does, with the `weft` command on throwaway stores.
#
# Three replicas run as processes on this machine and sync over loopback
# (ZeroMQ + CURVE): a relay (an always-on peer that backs up and forwards,
# `weft serve --relay`), a laptop and a phone. They write while disconnected,
# converge through the relay, see a concurrent edit as a conflict on both
# sides, catch up after being away, and sync directly. The demo ends by
# checking that all three replicas are identical. Every process it starts is
# stopped on exit (trap); ports are picked free; it takes a few seconds.
#
# If this build of weft has no sync commands yet, the older offline story
# runs instead: two stores exchanging their op logs by export | import.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh
build=${WEFT_BUILD_DIR:-build}
cmake -S . -B "$build" >/dev/null
cmake --build "$build" -j "$(nproc)" --target weft-cli >/dev/null
WEFT="$PWD/$build/tools/weft"

tmp=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
run() { printf '$ %s\n' "$(echo "$*" | sed "s#$WEFT#weft#g; s#$tmp/##g")"; "$@"; }

# ---------------------------------------------------------------- offline story
offline_demo() {
  laptop="$WEFT --dir $tmp/laptop"
  phone="$WEFT --dir $tmp/phone"
  say "Create a replica on the laptop. It gets its own keypair and device id."
  run $laptop init
  say "Write two notes. Each command is one durable transaction: when it returns, the data is on disk."
  run $laptop put notes n1 title='"Shopping"' body='"milk, eggs"' pinned=true
  run $laptop put notes n2 title='"Ideas"' body='"a sync engine"'
  run $laptop tag add notes n1 tags home
  run $laptop inc notes n1 views
  run $laptop ls notes
  say "The phone gets its own replica and receives everything the laptop wrote."
  run $phone init
  $laptop export > "$tmp/laptop.ops"
  run $phone import < "$tmp/laptop.ops"
  run $phone get notes n1
  say "Both devices now edit the same title without seeing each other (offline)."
  run $laptop put notes n1 title='"Shopping list"'
  run $phone put notes n1 title='"Groceries"'
  run $phone inc notes n1 views 2
  say "They exchange their op logs. Nothing is thrown away: the title is a conflict on both."
  $laptop export > "$tmp/laptop.ops"; $phone export > "$tmp/phone.ops"
  run $laptop import < "$tmp/phone.ops"
  run $phone import < "$tmp/laptop.ops"
  run $laptop conflicts
  say "The counter merged by adding both sides' increments (1 + 2):"
  run $laptop get notes n1
  say "The laptop resolves the conflict; once the phone has that op, it is resolved there too."
  run $laptop resolve notes n1 title='"Groceries"'
  $laptop export > "$tmp/laptop.ops"
  run $phone import < "$tmp/laptop.ops"
  run $phone conflicts
  say "The phone deletes note n2; the laptop learns it."
  run $phone del notes n2
  $phone export > "$tmp/phone.ops"
  run $laptop import < "$tmp/phone.ops"
  run $laptop ls notes
  say "The op log, newest last, and the replica's status:"
  run $laptop log
  run $laptop status
  say "Checking that both replicas hold identical state..."
  a=$($laptop ls notes --json; $laptop conflicts --json)
  b=$($phone ls notes --json; $phone conflicts --json)
  if [ "$a" = "$b" ]; then
    echo "identical: both devices show the same notes and no conflicts."
  else
    echo "DIFFERENT:"; diff <(echo "$a") <(echo "$b") || true; exit 1
  fi
}

# ---------------------------------------------------------------- network story

# A TCP port on 127.0.0.1 that nothing listens on.
free_port() {
  local p
  for _ in $(seq 200); do
    p=$((20000 + RANDOM % 40000))
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then echo "$p"; return; fi
  done
  echo "demo: no free port found" >&2; return 1
}

# start NAME ARGS...: run `weft ARGS` in the background, log in $tmp/NAME.log,
# and wait until it says it is serving.
start() {
  local name=$1; shift
  printf '$ %s &\n' "$(echo "weft $*" | sed "s#$tmp/##g")"
  "$WEFT" "$@" 2>"$tmp/$name.log" &
  pids+=($!)
  eval "pid_$name=$!"
  for _ in $(seq 100); do
    grep -q serving "$tmp/$name.log" 2>/dev/null && return 0
    kill -0 "$!" 2>/dev/null || break
    sleep 0.05
  done
  echo "demo: $name did not start:"; cat "$tmp/$name.log"; exit 1
}

# stop NAME: SIGTERM the daemon and wait for its clean exit.
stop() {
  local pid; pid=$(eval echo "\$pid_$1")
  printf '$ kill -TERM <%s daemon>\n' "$1"
  kill -TERM "$pid"; wait "$pid" || true
}

# until_ok SECONDS CMD...: retry CMD (quietly) until it succeeds.
until_ok() {
  local end=$((SECONDS + $1)); shift
  until "$@" >/dev/null 2>&1; do
    [ $SECONDS -lt $end ] || { echo "demo: timed out waiting for: $*"; return 1; }
    sleep 0.1
  done
}

backed_up() { "$WEFT" --dir "$1" peer ls | grep -q 'every op backed up'; }
has_conflict() { "$WEFT" --dir "$1" conflicts --json | grep -q '"field"'; }

network_demo() {
  local relay="$WEFT --dir $tmp/relay" laptop="$WEFT --dir $tmp/laptop" phone="$WEFT --dir $tmp/phone"
  local rport lport
  rport=$(free_port); lport=$(free_port)
  local rep="tcp://127.0.0.1:$rport" lep="tcp://127.0.0.1:$lport"

  say "Three replicas: a relay (an always-on backup server), a laptop and a phone. Each gets a keypair."
  run $relay init
  run $laptop init
  run $phone init

  say "Trust is explicit: each side adds the other's card (public key, and address if it listens)."
  run $relay id --addr "$rep"
  run $laptop peer add relay "$($relay id --addr "$rep")" --relay
  run $phone peer add relay "$($relay id --addr "$rep")" --relay
  run $relay peer add laptop "$($laptop id)"
  run $relay peer add phone "$($phone id)"

  say "The relay starts. It logs one line per event (shown at the end)."
  start relay --dir "$tmp/relay" serve --relay --listen "$rep"

  say "Offline, both devices write notes. Writes are local, instant and durable."
  run $laptop put notes n1 title='"Shopping"' body='"milk, eggs"'
  run $laptop put notes n2 title='"Ideas"' body='"a sync engine"'
  run $laptop inc notes n1 views
  run $phone put notes n3 title='"Phone numbers"'
  say "The laptop's status counts what the relay does not have yet:"
  run $laptop status | sed -n '/^peers/,$p'

  say "The laptop syncs with the relay (backed up), then the phone (it gets the laptop's notes),"
  say "then the laptop again (it gets the phone's). Each 'weft sync' exits once both sides are caught up."
  run $laptop sync relay
  run $phone sync relay
  run $laptop sync relay
  run $laptop status | sed -n '/^peers/,$p'
  run $phone ls notes

  say "The laptop now runs its daemon: it stays connected and pushes every new op at once."
  start laptop --dir "$tmp/laptop" serve --listen "$lep"
  say "Both edit note n1's title at the same time; the phone is offline. When the phone syncs,"
  say "nothing is lost: the title is a conflict on the phone and, through the relay, on the laptop."
  run $laptop put notes n1 title='"Shopping list"'
  until_ok 10 backed_up "$tmp/laptop"
  run $phone put notes n1 title='"Groceries"'
  run $phone sync relay
  until_ok 10 has_conflict "$tmp/laptop"
  run $phone conflicts
  run $laptop conflicts

  say "The laptop goes away (its daemon stops). The phone resolves the conflict and keeps writing."
  stop laptop
  run $phone resolve notes n1 title='"Groceries"'
  run $phone put notes n4 title='"Written while the laptop was away"'
  run $phone del notes n2
  run $phone status | sed -n '/^peers/,$p'
  run $phone sync relay
  run $phone status | sed -n '/^peers/,$p'

  say "Later the laptop comes back and catches up through the relay (the phone is not needed)."
  run $laptop sync relay
  run $laptop ls notes

  say "On the same network, devices can also sync directly. They trust each other's cards,"
  say "the laptop's daemon listens, and the phone syncs with it (the daemon also backs the op up)."
  start laptop --dir "$tmp/laptop" serve --listen "$lep"
  run $laptop peer add phone "$($phone id)"
  run $phone peer add laptop "$($laptop id --addr "$lep")"
  run $phone put notes n5 title='"Sent directly"'
  run $phone sync laptop
  run $laptop get notes n5
  until_ok 10 backed_up "$tmp/laptop"
  stop laptop

  say "What the relay logged:"
  sed "s#$tmp/##g" "$tmp/relay.log" | head -n 30
  echo "..."

  say "Checking that all three replicas are identical (notes, conflicts, version vectors)..."
  local a b c
  snapshot() { "$WEFT" --dir "$1" ls notes --json; "$WEFT" --dir "$1" conflicts --json
               "$WEFT" --dir "$1" status --json | sed 's/.*"vv":\({[^}]*}\).*/\1/'; }
  a=$(snapshot "$tmp/laptop"); b=$(snapshot "$tmp/phone"); c=$(snapshot "$tmp/relay")
  if [ "$a" = "$b" ] && [ "$b" = "$c" ]; then
    echo "identical: laptop, phone and relay hold the same notes, conflicts and version vector."
  else
    echo "DIFFERENT:"; diff <(echo "$a") <(echo "$b") || true; diff <(echo "$b") <(echo "$c") || true
    exit 1
  fi
}

if "$WEFT" help | grep -q '^  serve'; then
  network_demo
else
  offline_demo
fi
