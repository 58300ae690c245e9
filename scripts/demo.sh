#!/usr/bin/env bash
# demo.sh - the README's main command: builds weft and walks through what one
# device's replica does, using the `weft` command on throwaway stores.
#
# Two "devices" here are two store directories on this machine. They do not
# talk over the network yet: changes travel by `weft export | weft import`,
# which carries exactly the op log, as sync will.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh
build=${WEFT_BUILD_DIR:-build}
cmake -S . -B "$build" >/dev/null
cmake --build "$build" -j "$(nproc)" --target weft-cli >/dev/null
WEFT="$PWD/$build/tools/weft"

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
laptop="$WEFT --dir $tmp/laptop"
phone="$WEFT --dir $tmp/phone"

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
run() { printf '$ %s\n' "${*//$WEFT/weft}"; "$@"; }

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
