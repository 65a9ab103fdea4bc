#!/bin/sh
# systemd-analyze verify of packaging/scribefs@.service, with ExecStart pointed
# at the scribefs under test (the unit names the installed /usr/bin/scribefs)
# and without the Documentation= man page (installed by the package only).
# Any complaint fails the test. Exit 77 (skipped) without systemd-analyze.
set -eu
unit="$1"
bin="$2"
command -v systemd-analyze >/dev/null || { echo "systemd-analyze not installed"; exit 77; }
dir=$(mktemp -d /tmp/scribefs-unit-XXXXXX)
trap 'rm -rf "$dir"' EXIT
sed -e "s|/usr/bin/scribefs|$bin|" -e '/^Documentation=/d' "$unit" > "$dir/scribefs@test.service"
out=$(cd "$dir" && systemd-analyze verify --man=no "$dir/scribefs@test.service" 2>&1) || rc=$?
printf '%s\n' "$out"
[ -z "$out" ] && [ "${rc:-0}" -eq 0 ]
