#!/usr/bin/env bash
# journal_queries.sh - how long scribectl's journal queries take on a journal of
# millions of records (issue 14: status, stats and journal --path <= 100 ms at
# 10,000,000 records).
#
# Making 10M records through a mount takes hours here (~3,000 creates/s), so
# the journal is written directly with sqlite3, in the shape a mount leaves:
# N records over N/10 files (d<k % 1000>/f<k % (N/10)>; per file a create of
# size 0, 8 writes, a close of 4096 bytes, each file's records spread over the
# whole journal), all done but the last P, which are pending (a target that
# is behind by P records). The empty journal comes from the scribefs under
# test (its schema, its migrations), so each binary is measured on the schema
# it writes; a second binary's journal is the same rows, migrated by it.
#
# Then, for each binary (3 runs each, the median of the whole process's wall
# time, as a user sees it; scribefs is not running: status reads the journal
# alone, exit 4):
#   status                    scribectl status
#   stats                     scribectl stats
#   path dir, limit 10        journal --path 'd500/*' --limit 10  (matches near the end)
#   path old file, limit 10   journal --path 'd500/f500' --limit 10 (last written 1M records ago)
#   path none, limit 10       journal --path 'nosuch/*' --limit 10  (no match at all)
#   path old file, all        journal --path 'd500/f500'  (every record of it)
#   path dir, all             journal --path 'd500/*'  (its 10,000 records, printed)
#
# usage: bench/journal_queries.sh [-n RECORDS] [-p PENDING] [-w WORKDIR] NAME=BUILD_DIR...
#   NAME=BUILD_DIR   a build tree with daemon/scribefs and tools/scribectl
#   -n RECORDS       default 10000000
#   -p PENDING       default 1000 (a second run with -p 2000000: a target down)
#   -w WORKDIR       default /var/tmp (about 1 GB per binary at 10M records)
# needs: root (the daemon mounts once to create the journal), sqlite3,
# fusermount3. Takes the machine: run it alone.
set -euo pipefail

RECORDS=10000000
PENDING=1000
WORKDIR=/var/tmp
while getopts "n:p:w:h" o; do
  case $o in
    n) RECORDS=$OPTARG ;;
    p) PENDING=$OPTARG ;;
    w) WORKDIR=$OPTARG ;;
    *) sed -n '2,30p' "$0"; exit 2 ;;
  esac
done
shift $((OPTIND - 1))
[ $# -ge 1 ] || { sed -n '2,30p' "$0"; exit 2; }
for tool in sqlite3 fusermount3 python3; do
  command -v $tool >/dev/null || { echo "journal_queries.sh: needs $tool" >&2; exit 1; }
done

WORK=$(mktemp -d "$WORKDIR/journal_queries.XXXXXX")
cleanup() {
  for m in "$WORK"/*/mnt; do
    grep -q " $m fuse" /proc/self/mounts && fusermount3 -uz "$m"
  done
  rm -rf "$WORK"
}
trap cleanup EXIT

FILES=$((RECORDS / 10))
# make_journal NAME BUILD: an empty journal from this scribefs, then the rows.
make_journal() {
  local dir=$WORK/$1 bin=$2/daemon/scribefs
  mkdir -p "$dir"/{data,mnt,state}
  chmod 700 "$dir/state"
  "$bin" --state-dir "$dir/state" "$dir/data" "$dir/mnt" >"$dir/daemon.log" 2>&1
  fusermount3 -u "$dir/mnt"
  while [ -e "$dir/state/control.sock" ]; do sleep 0.1; done
  # The daemon may still be closing the journal after the unmount: wait for it.
  sqlite3 "$dir/state/journal.db" <<SQL >/dev/null
.timeout 30000
PRAGMA synchronous=OFF;
INSERT INTO targets(id, name, url, added_ns) VALUES(1, 'bench', 'file://$dir/target', 0);
BEGIN;
WITH RECURSIVE i(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM i WHERE n < $RECORDS)
INSERT INTO records(time_ns, op, path, size, uid, gid, pid, state, state_ns)
SELECT 1700000000000000000 + n * 1000,
  CASE n % 10 WHEN 0 THEN 'create' WHEN 9 THEN 'close' ELSE 'write' END,
  'd' || (n % 1000) || '/f' || (n % $FILES),
  CASE n % 10 WHEN 0 THEN 0 WHEN 9 THEN 4096 ELSE NULL END, 0, 0, 0,
  CASE WHEN n > $RECORDS - $PENDING THEN 'pending' ELSE 'done' END, 0 FROM i;
COMMIT;
PRAGMA wal_checkpoint(TRUNCATE);
SQL
}

# median_ms CMD...: the median wall time of 3 runs, in ms.
median_ms() {
  local t=()
  for _ in 1 2 3; do
    local s e
    s=$(date +%s%N)
    "$@" >/dev/null 2>&1 || true
    e=$(date +%s%N)
    t+=($(((e - s) / 1000000)))
  done
  printf '%s\n' "${t[@]}" | sort -n | sed -n 2p
}

printf '%-10s %10s %10s %10s %10s %10s %10s %10s %10s\n' binary schema status stats \
  "dir,10" "oldfile,10" "none,10" "oldfile" "dir"
for side in "$@"; do
  name=${side%%=*} build=${side#*=}
  echo "$name: writing $RECORDS records ($PENDING pending) ..." >&2
  make_journal "$name" "$build"
  state=$WORK/$name/state
  ctl=("$build/tools/scribectl" --state-dir "$state")
  schema=$(sqlite3 "$state/journal.db" 'PRAGMA user_version')
  printf '%-10s %10s %10s %10s %10s %10s %10s %10s %10s\n' "$name" "$schema" \
    "$(median_ms "${ctl[@]}" status)" "$(median_ms "${ctl[@]}" stats)" \
    "$(median_ms "${ctl[@]}" journal --path 'd500/*' --limit 10)" \
    "$(median_ms "${ctl[@]}" journal --path 'd500/f500' --limit 10)" \
    "$(median_ms "${ctl[@]}" journal --path 'nosuch/*' --limit 10)" \
    "$(median_ms "${ctl[@]}" journal --path 'd500/f500')" \
    "$(median_ms "${ctl[@]}" journal --path 'd500/*')"
  rm -rf "$WORK/$name"
done
