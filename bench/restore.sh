#!/usr/bin/env bash
# restore.sh - how fast `scribectl restore` brings a target back, against
# `aws s3 cp --recursive` of the same objects, in the same run.
#
# Starts its own throwaway Ceph RGW (tests/testbed/rgw-up.sh; stopped on exit),
# mounts scribefs with --target s3://BUCKET/fs --endpoint RGW (defaults: 8 MiB
# parts), writes two data sets through the mount, waits until they are stored
# (`scribectl flush`) and unmounts (restore needs no daemon):
#   big/    FILES_BIG files of BIG_MIB MiB, random (default 64 x 16 MiB = 1 GiB;
#           multipart objects, 2 parts each)
#   small/  FILES_SMALL files of SMALL_KIB KiB in 100 directories (default
#           10,000 x 4 KiB)
# Then, RUNS times (default 3), for each data set and in alternating order:
#   scribectl restore --target s3://BUCKET/fs --endpoint RGW --path SET --to OUT -j WORKERS
#   aws s3 cp --recursive --only-show-errors s3://BUCKET/fs/SET OUT2/SET
# each into an empty directory on the same filesystem (WORKDIR), after `sync`.
# Figures: wall time -> MB/s (10^6 bytes/s) and files/s, medians over the runs,
# and the ratio scribectl / aws. After the first run the two trees are compared
# (`diff -r`: same content). Last, a resume: scribectl restore again into its
# complete tree (every file skipped after HEAD + hash check), timed.
#
# usage: bench/restore.sh [-n RUNS] [-b FILES_BIG] [-m BIG_MIB] [-s FILES_SMALL]
#                         [-k SMALL_KIB] [-j WORKERS] [-w WORKDIR] [--keep]
# environment: SCRIBEFS, SCRIBECTL (binaries; default build*/daemon/scribefs and
#   build*/tools/scribectl next to this script), AWS (default /usr/bin/aws, else aws)
# needs: root, fusermount3, python3, the AWS CLI, and what rgw-up.sh needs
#   (ceph-mon ceph-osd radosgw ceph-common uuid-runtime curl); WORKDIR needs
#   about 3.5 x the data (source through the mount, two restored copies).
# RGW's memstore OSD holds 2 GiB: keep the data below ~1.5 GiB.
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
RUNS=3
FILES_BIG=64
BIG_MIB=16
FILES_SMALL=10000
SMALL_KIB=4
WORKERS=8
WORKDIR=/var/tmp
KEEP=0
while [ $# -gt 0 ]; do
  case "$1" in
    -n) RUNS=$2; shift 2 ;;
    -b) FILES_BIG=$2; shift 2 ;;
    -m) BIG_MIB=$2; shift 2 ;;
    -s) FILES_SMALL=$2; shift 2 ;;
    -k) SMALL_KIB=$2; shift 2 ;;
    -j) WORKERS=$2; shift 2 ;;
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
if [ -z "${AWS:-}" ]; then
  if [ -x /usr/bin/aws ]; then AWS=/usr/bin/aws; else AWS=aws; fi
fi
[ "$(id -u)" = 0 ] || { echo "run as root (the daemon mounts)" >&2; exit 1; }

LOAD0=$(cut -d' ' -f1-3 /proc/loadavg)
T=$(mktemp -d "$WORKDIR/scribefs-restorebench-XXXXXX")
RGW=$T/rgw
DATA=$T/data MNT=$T/mnt STATE=$T/state
mkdir -p "$DATA" "$MNT"
cleanup() {
  set +e
  if mountpoint -q "$MNT"; then
    fusermount3 -u "$MNT"
    for _ in $(seq 1 100); do
      [ -f "$STATE/lock" ] && pid=$(cat "$STATE/lock" 2>/dev/null) && kill -0 "$pid" 2>/dev/null || break
      sleep 0.1
    done
  fi
  "$ROOT/tests/testbed/rgw-down.sh" "$RGW" >/dev/null 2>&1
  if [ "$KEEP" = 1 ]; then echo "kept $T" >&2; else rm -rf "$T"; fi
}
trap cleanup EXIT

echo "== starting RGW" >&2
"$ROOT/tests/testbed/rgw-up.sh" "$RGW" 0 >&2
set -a
# shellcheck disable=SC1091
. "$RGW/env"
set +a
export AWS_EC2_METADATA_DISABLED=true AWS_REGION=$S3_REGION AWS_PAGER=
aws_() { "$AWS" --endpoint-url "$S3_ENDPOINT" --region "$S3_REGION" "$@"; }
BUCKET=restore-bench-$(date +%s)
aws_ s3api create-bucket --bucket "$BUCKET" >/dev/null

echo "== writing ${FILES_BIG} x ${BIG_MIB} MiB and ${FILES_SMALL} x ${SMALL_KIB} KiB through scribefs" >&2
"$SCRIBEFS" --state-dir "$STATE" --target "s3://$BUCKET/fs" --endpoint "$S3_ENDPOINT" "$DATA" "$MNT"
python3 - "$MNT" "$FILES_BIG" "$BIG_MIB" "$FILES_SMALL" "$SMALL_KIB" <<'PY'
import os, sys
mnt, nb, mib, ns, kib = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
os.makedirs(f"{mnt}/big")
for i in range(nb):
    with open(f"{mnt}/big/f{i:03d}", "wb") as f:
        for _ in range(mib):
            f.write(os.urandom(1 << 20))
for d in range(100):
    os.makedirs(f"{mnt}/small/d{d:02d}")
for i in range(ns):
    with open(f"{mnt}/small/d{i % 100:02d}/f{i:05d}", "wb") as f:
        f.write(os.urandom(kib * 1024))
PY
T0=$(date +%s.%N)
"$SCRIBECTL" --state-dir "$STATE" flush --timeout 3600 >&2
echo "   uploaded in $(python3 -c "print(round($(date +%s.%N) - $T0, 1))") s after the writes" >&2
fusermount3 -u "$MNT"
for _ in $(seq 1 100); do
  pid=$(cat "$STATE/lock" 2>/dev/null) && kill -0 "$pid" 2>/dev/null || break
  sleep 0.1
done

RESULTS=$T/results.jsonl
: >"$RESULTS"
now() { date +%s.%N; }
count_files() { find "$1" -type f | wc -l; }
run_ctl() {  # run_ctl SET OUT
  local t0 t1
  sync
  t0=$(now)
  "$SCRIBECTL" --json restore --target "s3://$BUCKET/fs" --endpoint "$S3_ENDPOINT" \
    --path "$1" --to "$2" -j "$WORKERS" >"$T/ctl.json"
  t1=$(now)
  python3 - "$1" "$t0" "$t1" "$T/ctl.json" "$(count_files "$2/$1")" "$(du -sb "$2/$1" | cut -f1)" >>"$RESULTS" <<'PY'
import json, sys
s, t0, t1, path, files, size = sys.argv[1], float(sys.argv[2]), float(sys.argv[3]), sys.argv[4], int(sys.argv[5]), int(sys.argv[6])
j = json.load(open(path))
assert j["ok"] and not j["failed"], j
print(json.dumps({"tool": "scribectl", "set": s, "seconds": t1 - t0, "files": files,
                  "bytes": j["bytes"], "restored": j["restored"], "skipped": j["skipped"],
                  "self_seconds": j["seconds"]}))
PY
}
run_aws() {  # run_aws SET OUT
  local t0 t1
  sync
  t0=$(now)
  aws_ s3 cp --recursive --only-show-errors "s3://$BUCKET/fs/$1" "$2/$1"
  t1=$(now)
  python3 -c 'import json,sys; print(json.dumps({"tool": "aws", "set": sys.argv[1], "seconds": float(sys.argv[3]) - float(sys.argv[2]), "files": int(sys.argv[4]), "bytes": int(sys.argv[5])}))' \
    "$1" "$t0" "$t1" "$(count_files "$2/$1")" "$(find "$2/$1" -type f -printf '%s\n' | awk '{s+=$1} END {print s+0}')" >>"$RESULTS"
}

for run in $(seq 1 "$RUNS"); do
  for set in big small; do
    echo "== run $run: $set" >&2
    rm -rf "$T/out-ctl" "$T/out-aws"
    if [ $((run % 2)) = 1 ]; then
      run_ctl "$set" "$T/out-ctl"; run_aws "$set" "$T/out-aws"
    else
      run_aws "$set" "$T/out-aws"; run_ctl "$set" "$T/out-ctl"
    fi
    if [ "$run" = 1 ]; then
      diff -r "$T/out-ctl/$set" "$T/out-aws/$set" >/dev/null ||
        { echo "restored trees differ for $set" >&2; exit 1; }
    fi
    if [ "$run" = "$RUNS" ]; then
      echo "== resume: $set" >&2
      run_ctl "$set" "$T/out-ctl"
      sed -i '$ s/"tool": "scribectl"/"tool": "scribectl-resume"/' "$RESULTS"
    fi
  done
done
rm -rf "$T/out-ctl" "$T/out-aws"

python3 - "$RESULTS" "$LOAD0" "$(cut -d' ' -f1-3 /proc/loadavg)" "$("$AWS" --version 2>&1 | cut -d' ' -f1)" \
  "$("$SCRIBECTL" --version)" "$WORKERS" <<'PY'
import json, platform, statistics, subprocess, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
load0, load1, awsv, ctlv, workers = sys.argv[2:7]
cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
ram = int(next(l.split()[1] for l in open("/proc/meminfo") if l.startswith("MemTotal"))) / 2**20
print(f"machine: {platform.node()}, {cpu}, {subprocess.getoutput('nproc')} cores, {ram:.0f} GiB RAM, "
      f"kernel {platform.release()}; load average {load0} before, {load1} after")
print(f"{ctlv} (-j {workers}) vs {awsv} (defaults: 10 concurrent requests, 8 MiB chunks)\n")
print("| data set | tool | runs | seconds: median (min-max) | MB/s | files/s | scribectl / aws |")
print("|---|---|---|---|---|---|---|")
def rows_of(s, tool):
    return [x for x in rows if x["set"] == s and x["tool"] == tool]
for s in ("big", "small"):
    aws = rows_of(s, "aws")
    if not aws:
        continue
    size, files = aws[0]["bytes"], aws[0]["files"]
    med = {t: statistics.median(x["seconds"] for x in rows_of(s, t))
           for t in ("scribectl", "aws", "scribectl-resume") if rows_of(s, t)}
    for tool, m in med.items():
        secs = [x["seconds"] for x in rows_of(s, tool)]
        resume = tool == "scribectl-resume"
        ratio = f"**{med['aws'] / m:.2f}**" if tool == "scribectl" else ""
        mbps = "-" if resume else f"{size / m / 1e6:.1f}"
        label = "scribectl, again (resume: all skipped)" if resume else tool
        print(f"| {s}: {files} files, {size / 2**20:.0f} MiB | {label} | {len(secs)} | "
              f"{m:.2f} ({min(secs):.2f}-{max(secs):.2f}) | {mbps} | {files / m:,.0f} | {ratio} |")
print()
print("raw:", sys.argv[1])
for x in rows:
    print(json.dumps(x))
PY
