#!/usr/bin/env bash
# history.sh - what history in the target (issue 11) costs, and how fast
# `restore --at` is.
#
# Everything on a file:// target in WORKDIR (the store's requests and bytes are
# counted by scribefs itself: status' uploader.requests and bytes_sent; the
# bytes the target holds are counted with du). In one run:
#
#  1. small files: N files of 4 KiB created through the mount, then flushed,
#     once with --history off and once with history on (the default):
#     requests and bytes sent per settled change, and bytes stored.
#  2. a 4 KiB change in the middle of a BIG_MIB MiB file (written and flushed
#     first): requests, bytes sent, and growth of the target (of .scribefs/)
#     for that one change, --history off and on.
#  3. restore: `scribectl restore` of the latest state (the mirror) against
#     `scribectl restore --at now` (the history) of the tree of phase 1 plus
#     the big file, MB/s.
#  4. a tree of FILES files overwritten ROUNDS times (a flush after each round,
#     so that every overwrite is stored: FILES x (ROUNDS+1) history entries):
#     `restore --at` of the latest instant and of the middle one: time.
#
# usage: bench/history.sh [-n N] [-b BIG_MIB] [-f FILES] [-r ROUNDS] [-w WORKDIR] [--keep]
#   -n N        small files of phase 1 (default 2000)
#   -b MIB      size of the big file of phases 2-3 (default 1024)
#   -f FILES    files of phase 4 (default 10000)
#   -r ROUNDS   overwrites of every file in phase 4 (default 9: 100,000 changes)
#   -w WORKDIR  parent of the temp dir (default /var/tmp); needs ~3 x BIG_MIB
#   --keep      keep the temp dir
# environment: SCRIBEFS, SCRIBECTL (binaries; default build*/ next to this script)
# needs: root, fusermount3, python3.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
N=2000 BIG_MIB=1024 FILES=10000 ROUNDS=9 WORKDIR=/var/tmp KEEP=0
while [ $# -gt 0 ]; do
  case "$1" in
    -n) N=$2; shift 2 ;;
    -b) BIG_MIB=$2; shift 2 ;;
    -f) FILES=$2; shift 2 ;;
    -r) ROUNDS=$2; shift 2 ;;
    -w) WORKDIR=$2; shift 2 ;;
    --keep) KEEP=1; shift ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
done

find_bin() {  # find_bin SUBPATH
  for b in "$ROOT"/build/"$1" "$ROOT"/build*/"$1"; do
    if [ -x "$b" ]; then echo "$b"; return; fi
  done
}
SCRIBEFS=${SCRIBEFS:-$(find_bin daemon/scribefs)}
SCRIBECTL=${SCRIBECTL:-$(find_bin tools/scribectl)}
[ -x "${SCRIBEFS:-}" ] || { echo "no scribefs binary (build it, or set SCRIBEFS)" >&2; exit 1; }
[ -x "${SCRIBECTL:-}" ] || { echo "no scribectl binary (build it, or set SCRIBECTL)" >&2; exit 1; }
[ "$(id -u)" = 0 ] || { echo "run as root (the daemon mounts)" >&2; exit 1; }

LOAD0=$(cut -d' ' -f1-3 /proc/loadavg)
T=$(mktemp -d "$WORKDIR/scribefs-historybench-XXXXXX")
MNT=$T/mnt
mkdir -p "$MNT"
STATE=
cleanup() {
  set +e
  unmount
  if [ "$KEEP" = 1 ]; then echo "kept $T" >&2; else rm -rf "$T"; fi
}
unmount() {
  if mountpoint -q "$MNT"; then
    fusermount3 -u "$MNT"
    for _ in $(seq 1 200); do
      [ -f "$STATE/lock" ] && pid=$(cat "$STATE/lock" 2>/dev/null) && kill -0 "$pid" 2>/dev/null || break
      sleep 0.1
    done
  fi
}
trap cleanup EXIT

now() { date +%s.%N; }
secs() { python3 -c "print(f'{$2 - $1:.2f}')"; }
ctl() { "$SCRIBECTL" --state-dir "$STATE" "$@"; }
flush() { ctl flush --timeout 3600 >/dev/null; }
# counters: "requests bytes_sent" from status
counters() {
  ctl --json status | python3 -c '
import json, sys
u = json.load(sys.stdin)["daemon"]["uploader"]
print(u.get("requests", 0), u["bytes_sent"])'
}
du_b() { if [ -e "$1" ]; then du -sb --apparent-size "$1" | cut -f1; else echo 0; fi; }
# mount NAME [daemon options]: DATA=$T/NAME/data, target $T/NAME/target
mount_() {
  local name=$1; shift
  DATA=$T/$name/data STATE=$T/$name/state TARGET=$T/$name/target
  mkdir -p "$DATA" "$TARGET"
  "$SCRIBEFS" --state-dir "$STATE" --target "file://$TARGET" "$@" "$DATA" "$MNT" >/dev/null
}

echo "# scribefs history benchmark, $(date -u +%FT%TZ), $(nproc) CPUs, load before: $LOAD0"
echo "# N=$N BIG_MIB=$BIG_MIB FILES=$FILES ROUNDS=$ROUNDS, file:// target on $(df --output=fstype "$T" | tail -1)"

declare -A SMALL_REQ SMALL_BYTES SMALL_STORED BIG_REQ BIG_BYTES BIG_GROWTH
for mode in off on; do
  if [ $mode = off ]; then mount_ "h$mode" --history off; else mount_ "h$mode"; fi
  read -r r0 b0 < <(counters)  # uploads start while the files are written
  python3 - "$MNT/small" "$N" <<'PY'
import os, sys
d, n = sys.argv[1], int(sys.argv[2])
os.makedirs(d)
for i in range(n):
    with open(f"{d}/f{i:06d}", "wb") as f:
        f.write(os.urandom(4096))
PY
  flush
  read -r r1 b1 < <(counters)
  SMALL_REQ[$mode]=$(python3 -c "print(f'{($r1 - $r0) / $N:.2f}')")
  SMALL_BYTES[$mode]=$(python3 -c "print(f'{($b1 - $b0) / $N:.0f}')")
  SMALL_STORED[$mode]=$(du_b "$TARGET")
  python3 - "$MNT/big" "$BIG_MIB" <<'PY'
import os, sys
with open(sys.argv[1], "wb") as f:
    block = os.urandom(1 << 20)
    for i in range(int(sys.argv[2])):
        f.write(block[:-8] + i.to_bytes(8, "little"))
PY
  flush
  read -r r0 b0 < <(counters)
  g0=$(du_b "$TARGET/.scribefs")
  python3 - "$MNT/big" "$BIG_MIB" <<'PY'
import os, sys
fd = os.open(sys.argv[1], os.O_WRONLY)
os.pwrite(fd, os.urandom(4096), int(sys.argv[2]) * (1 << 19))
os.close(fd)
PY
  flush
  read -r r1 b1 < <(counters)
  g1=$(du_b "$TARGET/.scribefs")
  BIG_REQ[$mode]=$((r1 - r0))
  BIG_BYTES[$mode]=$((b1 - b0))
  BIG_GROWTH[$mode]=$(( ${g1:-0} - ${g0:-0} ))
  [ $mode = on ] || unmount
done

echo
echo "## 1-2. cost per settled change (history off -> on)"
echo "| | history off | history on |"
echo "|---|---:|---:|"
echo "| 4 KiB file created: requests per file | ${SMALL_REQ[off]} | ${SMALL_REQ[on]} |"
echo "| 4 KiB file created: bytes sent per file | ${SMALL_BYTES[off]} | ${SMALL_BYTES[on]} |"
echo "| $N x 4 KiB: bytes in the target | ${SMALL_STORED[off]} | ${SMALL_STORED[on]} |"
echo "| 4 KiB change in a $BIG_MIB MiB file: requests | ${BIG_REQ[off]} | ${BIG_REQ[on]} |"
echo "| 4 KiB change in a $BIG_MIB MiB file: bytes sent | ${BIG_BYTES[off]} | ${BIG_BYTES[on]} |"
echo "| 4 KiB change in a $BIG_MIB MiB file: growth of .scribefs/ | ${BIG_GROWTH[off]} | ${BIG_GROWTH[on]} |"

echo
echo "## 3. restore of the latest state: mirror vs history (mount 'on' tree, $((N * 4 / 1024)) MiB small + $BIG_MIB MiB)"
TOTAL=$(du_b "$DATA")
t0=$(now); ctl restore --to "$T/r-mirror" >/dev/null; t1=$(now)
ctl restore --at now --to "$T/r-at" >/dev/null; t2=$(now)
diff -r "$T/r-mirror" "$T/r-at" >/dev/null && same=identical || same=DIFFERENT
m=$(secs "$t0" "$t1"); a=$(secs "$t1" "$t2")
echo "| restore | s | MB/s |"
echo "|---|---:|---:|"
echo "| restore (mirror) | $m | $(python3 -c "print(f'{$TOTAL / 1e6 / $m:.0f}')") |"
echo "| restore --at now (history) | $a | $(python3 -c "print(f'{$TOTAL / 1e6 / $a:.0f}')") |"
echo "(the two restored trees are $same)"
rm -rf "$T/r-mirror" "$T/r-at"
unmount

echo
echo "## 4. restore --at in a tree of $FILES files whose history holds $((FILES * (ROUNDS + 1))) changes"
mount_ tree
for round in $(seq 0 "$ROUNDS"); do
  python3 - "$MNT/t" "$FILES" "$round" <<'PY'
import os, sys
d, n, r = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
if r == 0:
    for k in range(100):
        os.makedirs(f"{d}/d{k:02d}", exist_ok=True)
for i in range(n):
    with open(f"{d}/d{i % 100:02d}/f{i:06d}", "wb") as f:
        f.write(f"round {r} file {i}\n".encode() * (1 + i % 50))
PY
  flush
  if [ "$round" = $((ROUNDS / 2)) ]; then
    MIDTIME=$(date +%s.%N)
  fi
done
ENTRIES=$(ctl --json timeline 2>/dev/null | python3 -c 'import json,sys; print(json.load(sys.stdin).get("entries","?"))' || echo "?")
unmount
t0=$(now); "$SCRIBECTL" restore --at now --to "$T/t-latest" --target "file://$TARGET" >/dev/null; t1=$(now)
"$SCRIBECTL" restore --at "@$MIDTIME" --to "$T/t-mid" --target "file://$TARGET" >/dev/null; t2=$(now)
echo "history entries (scribectl timeline): $ENTRIES"
echo "| restore --at, from the target alone | s |"
echo "|---|---:|"
echo "| latest | $(secs "$t0" "$t1") |"
echo "| middle (after round $((ROUNDS / 2))) | $(secs "$t1" "$t2") |"
grep -q "round $((ROUNDS / 2)) file 7" "$T/t-mid/t/d07/f000007" && echo "(middle restore holds round $((ROUNDS / 2))'s content: checked)"
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
