#!/usr/bin/env bash
# recovery.sh - how fast scribefs gets going again: the start-up
# reconciliation rate, and recovery after kill -9 with pending records.
#
# Part 1, start-up reconciliation on --files files (100 directories of small
# files, made directly in DATADIR): scribefs is started with a file:// (or
# s3://) target and its log line "start-up reconciliation: N entries in S s"
# gives the rate, for three starts:
#   cold  first start, empty objects table: every entry is new (and journaled)
#   warm  restart after everything was uploaded, nothing changed
#   1 %   restart after 1 % of the files were changed directly in DATADIR
# and then, with that mount serving, `scribectl rescan` after another 1 % were
# changed directly in DATADIR (the mount is on a separate MOUNTPOINT): its
# duration and how long it held writes.
# "to serving" is from exec to the daemon's return (it returns once the mount
# serves: journal open with its integrity check, reconciliation, mount);
# "to uploaded" adds `scribectl flush` (everything the start found is stored).
#
# Part 2, recovery after kill -9: a journal-only mount (no uploader, so every
# record stays pending) gets --pending files written through it (create,
# 4 KiB, close: two records each), then the daemon is killed with SIGKILL
# (its mount is left dead). scribefs is started again with the target: "to
# serving" (it detaches the dead mount, checks the journal, reconciles) and
# "to uploaded" (the replay of every pending record, `scribectl flush`).
#
# usage: bench/recovery.sh [options]
#   -f, --files N       files for part 1 (default 100000)
#   -p, --pending N     files written before the kill in part 2 (default 5000)
#   -t, --target KIND   file (default) or s3 (starts the RGW test bed, stopped on exit)
#       --parts LIST    which parts to run: 1,2 (default), 1 or 2
#   -w, --workdir DIR   parent of the temporary work dir (default /var/tmp)
#   -j, --json FILE     the figures as one JSON object (default ./recovery.json)
#   -h, --help
# environment:
#   SCRIBEFS, SCRIBECTL  the binaries (default: build*/ next to this script, then PATH)
#   SCRIBEFS_OPTS        extra daemon options, word-split (e.g. "--workers 8")
# needs: root, fusermount3, python3; for s3 the RGW test bed and the aws CLI.
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
FILES=100000
PENDING=5000
KIND=file
WORKROOT=/var/tmp
JSON=$PWD/recovery.json
PARTS=1,2
while [ $# -gt 0 ]; do
  case "$1" in
    -f|--files) FILES=$2; shift 2 ;;
    -p|--pending) PENDING=$2; shift 2 ;;
    -t|--target) KIND=$2; shift 2 ;;
    --parts) PARTS=$2; shift 2 ;;
    -w|--workdir) WORKROOT=$2; shift 2 ;;
    -j|--json) JSON=$2; shift 2 ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "recovery.sh: unknown option $1 (try --help)" >&2; exit 2 ;;
  esac
done
case "$KIND" in file|s3) ;; *) echo "recovery.sh: --target file or s3" >&2; exit 2 ;; esac

find_bin() {  # find_bin NAME SUBDIR
  for b in "$ROOT"/build/"$2"/"$1" "$ROOT"/build*/"$2"/"$1"; do
    [ -x "$b" ] && { echo "$b"; return; }
  done
  command -v "$1" || { echo "recovery.sh: $1 not found; build first or set it" >&2; exit 1; }
}
SCRIBEFS=${SCRIBEFS:-$(find_bin scribefs daemon)}
SCRIBECTL=${SCRIBECTL:-$(find_bin scribectl tools)}
for tool in fusermount3 python3; do
  command -v "$tool" >/dev/null || { echo "recovery.sh: $tool not found" >&2; exit 1; }
done
[ "$(id -u)" = 0 ] || { echo "recovery.sh: run as root (the daemon mounts)" >&2; exit 1; }

W=$(mktemp -d "$WORKROOT/scribefs-recovery-bench.XXXXXX")
RGW=$W/rgw
MOUNTS=()
cleanup() {
  set +e
  for m in "${MOUNTS[@]}"; do
    grep -q " $m fuse" /proc/self/mounts && { fusermount3 -u "$m" || fusermount3 -uz "$m"; }
  done
  sleep 0.5
  [ "$KIND" = s3 ] && "$ROOT/tests/testbed/rgw-down.sh" "$RGW" >/dev/null 2>&1
  rm -rf "$W"
}
trap cleanup EXIT

now_ns() { date +%s%N; }
secs() { python3 -c "print(f'{($2 - $1) / 1e9:.3f}')" "$1" "$2"; }

TARGET_ARGS=()
target_for() {  # target_for NAME -> sets TARGET_ARGS
  if [ "$KIND" = file ]; then
    TARGET_ARGS=(--target "file://$W/$1-target")
  else
    aws --endpoint-url "$S3_ENDPOINT" s3api create-bucket --bucket "scribefs-bench-$1" >/dev/null
    TARGET_ARGS=(--target "s3://scribefs-bench-$1/bench" --endpoint "$S3_ENDPOINT" --region "$S3_REGION")
  fi
}
if [ "$KIND" = s3 ]; then
  command -v aws >/dev/null || { echo "recovery.sh: aws not found" >&2; exit 1; }
  echo "starting RGW ..." >&2
  "$ROOT/tests/testbed/rgw-up.sh" "$RGW" 0 >&2
  set -a
  # shellcheck disable=SC1091
  . "$RGW/env"
  set +a
  export AWS_DEFAULT_REGION=$S3_REGION
fi

daemon_pid() { tr -d '\n' <"$1/lock"; }
# stop STATE MNT: unmount and wait for the daemon to exit.
stop() {
  local pid
  pid=$(daemon_pid "$1")
  fusermount3 -u "$2"
  for _ in $(seq 1 600); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.1; done
  echo "recovery.sh: daemon $pid did not exit" >&2
  exit 1
}
# start STATE DATA MNT [ARGS...]: starts the daemon; prints ns from exec to serving.
start() {
  local state=$1 data=$2 mnt=$3 t0 t1
  shift 3
  t0=$(now_ns)
  # shellcheck disable=SC2086
  "$SCRIBEFS" --state-dir "$state" ${SCRIBEFS_OPTS:-} "$@" "$data" "$mnt" >&2
  t1=$(now_ns)
  echo $((t1 - t0))
}
# The last "start-up reconciliation: ..." line of the log, as
# "entries seconds journaled(new+changed+missing) pending".
recon_line() {
  grep 'start-up reconciliation:' "$1/scribefs.log" | tail -1 |
    sed -E 's/.*reconciliation: ([0-9]+) entries in ([0-9.]+) s: ([0-9]+) new, ([0-9]+) changed, ([0-9]+) missing, ([0-9]+) left.*/\1 \2 \3 \4 \5 \6/' |
    awk '{print $1, $2, $3 + $4 + $5, $6}'
}
flush_ns() {  # flush STATE -> ns the flush took
  local t0 t1
  t0=$(now_ns)
  "$SCRIBECTL" --state-dir "$1" flush --timeout 3600 >/dev/null
  t1=$(now_ns)
  echo $((t1 - t0))
}

RESULTS=$W/results.txt
: >"$RESULTS"
record() { echo "$*" >>"$RESULTS"; }  # PHASE serving_ns uploaded_ns entries recon_s found pending [records]

# ---- part 1: start-up reconciliation ------------------------------------------
if [[ ",$PARTS," == *,1,* ]]; then
D1=$W/p1-data M1=$W/p1-mnt S1=$W/p1-state
mkdir -p "$D1" "$M1"
MOUNTS+=("$M1")
echo "making $FILES files ..." >&2
python3 - "$D1" "$FILES" <<'EOF'
import os, sys
root, n = sys.argv[1], int(sys.argv[2])
dirs = 100
for d in range(dirs):
    os.mkdir(f"{root}/d{d:03}")
for i in range(n):
    with open(f"{root}/d{i % dirs:03}/f{i:07}", "wb") as f:
        f.write(b"x" * (64 + i % 64))
EOF
sync
target_for p1
for phase in cold warm changed-1pct; do
  if [ "$phase" = changed-1pct ]; then
    python3 - "$D1" "$FILES" <<'EOF'
import sys
root, n = sys.argv[1], int(sys.argv[2])
for i in range(0, n, 100):
    with open(f"{root}/d{i % 100:03}/f{i:07}", "ab") as f:
        f.write(b"changed")
EOF
  fi
  echo "part 1: $phase start ..." >&2
  serve=$(start "$S1" "$D1" "$M1" "${TARGET_ARGS[@]}")
  up=$(flush_ns "$S1")
  read -r entries rs found left < <(recon_line "$S1")
  record "$phase $serve $((serve + up)) $entries $rs $found $left"
  echo "  $phase: $entries entries reconciled in $rs s; serving after $(secs 0 "$serve") s, uploaded after $(secs 0 $((serve + up))) s" >&2
  if [ "$phase" = changed-1pct ]; then
    python3 - "$D1" "$FILES" <<'EOF'
import sys
root, n = sys.argv[1], int(sys.argv[2])
for i in range(50, n, 100):
    with open(f"{root}/d{i % 100:03}/f{i:07}", "ab") as f:
        f.write(b"changed behind the mount")
EOF
    t0=$(now_ns)
    "$SCRIBECTL" --state-dir "$S1" --json rescan >"$W/rescan.json"
    t1=$(now_ns)
    up=$(flush_ns "$S1")
    read -r entries rs found left hold < <(python3 -c '
import json, sys
j = json.load(open(sys.argv[1]))
print(j["scanned"], j["seconds"], j["records"], j["pending"], j["hold_ms"])' "$W/rescan.json")
    record "rescan $((t1 - t0)) $((t1 - t0 + up)) $entries $rs $found $left $hold"
    echo "  rescan: $entries entries in $rs s, $found journaled, writes held $hold ms; uploaded after $(secs 0 $((t1 - t0 + up))) s" >&2
  fi
  stop "$S1" "$M1"
done
fi

# ---- part 2: kill -9 with pending records ----------------------------------------
if [[ ",$PARTS," == *,2,* ]]; then
D2=$W/p2-data M2=$W/p2-mnt S2=$W/p2-state
mkdir -p "$D2" "$M2"
MOUNTS+=("$M2")
echo "part 2: writing $PENDING files through a journal-only mount ..." >&2
start "$S2" "$D2" "$M2" >/dev/null
python3 - "$M2" "$PENDING" <<'EOF'
import os, sys
root, n = sys.argv[1], int(sys.argv[2])
block = os.urandom(4096)
for d in range(10):
    os.mkdir(f"{root}/d{d}")
for i in range(n):
    with open(f"{root}/d{i % 10}/f{i:06}", "wb") as f:
        f.write(block)
EOF
pending=$(sqlite3 -readonly "$S2/journal.db" "select count(*) from records where state='pending'" 2>/dev/null ||
  python3 -c 'import sqlite3,sys; print(sqlite3.connect(f"file:{sys.argv[1]}?mode=ro", uri=True).execute("select count(*) from records where state=\"pending\"").fetchone()[0])' "$S2/journal.db")
kill -9 "$(daemon_pid "$S2")"
sleep 0.5
echo "part 2: killed with $pending pending records; restarting with the target ..." >&2
target_for p2
serve=$(start "$S2" "$D2" "$M2" "${TARGET_ARGS[@]}")
up=$(flush_ns "$S2")
read -r entries rs found left < <(recon_line "$S2")
record "kill9 $serve $((serve + up)) $entries $rs $found $left $pending"
echo "  serving after $(secs 0 "$serve") s, all $pending records uploaded after $(secs 0 $((serve + up))) s" >&2
left=$("$SCRIBECTL" --state-dir "$S2" --json stats | python3 -c 'import json,sys; print(json.load(sys.stdin)["pending_records"])')
[ "$left" = 0 ] || { echo "recovery.sh: $left records still pending" >&2; exit 1; }
stop "$S2" "$M2"
fi

# ---- report --------------------------------------------------------------------
python3 - "$RESULTS" "$JSON" "$FILES" "$PENDING" "$KIND" <<'EOF'
import json, sys
lines = [l.split() for l in open(sys.argv[1]) if l.strip()]
files, pending_files, kind = int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
out = {"files": files, "pending_files": pending_files, "target": kind, "phases": {}}
if any(l[0] != "kill9" for l in lines):
    print(f"Start-up reconciliation, {files:,} files in 100 directories, {kind}:// target\n")
    print("| start | entries | journaled | reconciliation | rate | to serving | to uploaded |")
    print("|---|---:|---:|---:|---:|---:|---:|")
names = {"cold": "cold (empty objects table)", "warm": "warm (nothing changed)",
         "changed-1pct": "1 % changed offline",
         "rescan": "`scribectl rescan`, mounted, 1 % changed behind the mount"}
for l in lines:
    phase, serve, up, entries, rs = l[0], int(l[1]), int(l[2]), int(l[3]), float(l[4])
    found, left = int(l[5]), int(l[6])
    rate = entries / rs if rs > 0 else float("inf")
    out["phases"][phase] = {"serving_s": serve / 1e9, "uploaded_s": up / 1e9, "entries": entries,
                            "reconcile_s": rs, "files_per_s": rate, "journaled": found,
                            "left_to_pending": left}
    if phase == "kill9":
        out["phases"][phase]["pending_records"] = int(l[7])
        continue
    if phase == "rescan":
        out["phases"][phase]["hold_ms"] = float(l[7])
    held = f" (writes held {float(l[7]):.1f} ms)" if phase == "rescan" else ""
    print(f"| {names[phase]} | {entries:,} | {found:,} | {rs:.3f} s{held} | {rate:,.0f} entries/s | "
          f"{serve / 1e9:.2f} s | {up / 1e9:.2f} s |")
k = out["phases"].get("kill9")
if k:
    print(f"\nRecovery after kill -9 with {k['pending_records']:,} pending records "
          f"({pending_files:,} files written through the mount), {kind}:// target\n")
    print("| | time from start |")
    print("|---|---:|")
    print(f"| serving (dead mount detached, journal checked, {k['entries']:,} entries reconciled: "
          f"{k['journaled']:,} journaled, {k['left_to_pending']:,} left to pending records) | "
          f"{k['serving_s']:.2f} s |")
    print(f"| every pending record uploaded | {k['uploaded_s']:.2f} s |")
json.dump(out, open(sys.argv[2], "w"), indent=1)
EOF
echo "figures: $JSON" >&2
