#!/usr/bin/env bash
# ns_journal.sh - instructions the journal spends on N creates (+ deferred
# close) and N unlinks, per build tree, under callgrind (deterministic; the
# daemon itself cannot run under valgrind 3.19, which lacks openat2).
#
# usage: bench/ns_journal.sh [-n N] LABEL=TREE [LABEL=TREE...]
#   TREE: a checkout with a build in TREE/build (libscribefs_journal.a and
#   libscribefs_common.a built), e.g. old=/work/wt/perf-old new=.
# Prints per tree: instructions of the committing thread (Journal::WriteGroup)
# and of the background checkpointer, per commit.
set -euo pipefail
N=2000
[[ ${1:-} == -n ]] && { N=$2; shift 2; }
[[ $# -ge 1 ]] || { sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'; exit 2; }
command -v valgrind >/dev/null || { echo "ns_journal: valgrind not found" >&2; exit 2; }
SRC=$(cd "$(dirname "$0")" && pwd)/ns_journal.cc
T=$(mktemp -d /var/tmp/ns_journal.XXXXXX)
trap 'rm -rf "$T"' EXIT
for a in "$@"; do
  l=${a%%=*} tree=$(realpath "${a#*=}")
  g++ -std=c++20 -O2 -I"$tree" -o "$T/$l" "$SRC" "$tree/build/journal/libscribefs_journal.a" \
    "$tree/build/common/libscribefs_common.a" -lsqlite3 -lpthread
  valgrind --tool=callgrind --callgrind-out-file="$T/$l.cg" "$T/$l" "$T/$l.db" "$N" >/dev/null 2>&1
  ann=$(callgrind_annotate --inclusive=yes "$T/$l.cg" 2>/dev/null)
  w=$(grep -m1 'Journal::WriteGroup' <<<"$ann" | awk '{gsub(",", "", $1); print $1}')
  c=$(grep -m1 'Journal::CheckpointLoop()' <<<"$ann" | awk '{gsub(",", "", $1); print $1}')
  awk -v l="$l" -v w="${w:-0}" -v c="${c:-0}" -v n="$N" 'BEGIN {
    printf "%s commits=%d writegroup_instr_per_commit=%.0f checkpointer_instr_per_commit=%.0f\n",
      l, 2 * n, w / (2 * n), c / (2 * n) }'
done
