#!/usr/bin/env bash
# flush_small.sh - what the uploader costs per small file (issue 14: "flush of
# 100,000 small files to RGW at >= 1,000 files/s").
#
# In one run, with the same N files (1 B - 4 KiB each, in 100 directories, made
# once outside any mount):
#  1. ceiling: the PUT/s a throwaway RGW (tests/testbed/rgw-up.sh; stopped on
#     exit) takes from a client that does nothing else: bench/s3_put_ceiling.cc
#     (scribefs's own S3 client, 16 threads; compiled against build/) and
#     `aws s3 cp --recursive` (16 concurrent requests) of the same tree.
#  2. for file:// and RGW (s3://): a fresh mount (--workers 16 --history off,
#     as the storm test); the tree written into it by 2 processes (create +
#     write + close per file) while the uploads are held back (--bwlimit 32K),
#     so that a backlog of N files waits, as after the storm test's writers;
#     then `scribectl set bwlimit off` + `scribectl flush`, timed:
#       flush s, files/s = N / flush s, the daemon's CPU during the flush
#       (utime+stime of /proc/PID/stat: the uploader's work, not the write
#       path's), ms of CPU per file, store requests per file (`scribectl
#       status`: uploader.requests, over the whole run).
#
# usage: bench/flush_small.sh [-n FILES] [-w WORKDIR] [--no-rgw] [--perf] [--keep]
#   -n FILES   files (default 10000)
#   -w WORKDIR parent of the temp dir (default /var/tmp)
#   --no-rgw   file:// only (no RGW needed)
#   --perf     also `perf record --call-graph dwarf` the daemon during the file:// run
#              (report in WORKDIR/.../perf-file.txt, kept with --keep)
#   --keep     keep the temp dir
# environment: SCRIBEFS, SCRIBECTL (binaries; default build*/ next to this
#   script), SCRIBEFS_OPTS (extra daemon options), AWS (default /usr/bin/aws).
# needs: root, fusermount3, the AWS CLI, and what rgw-up.sh needs.
# The figures are noisy on a shared machine: CPU per file is the steadier
# one; run it twice. SCRIBEFS/SCRIBECTL of another tree compare two builds.
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
NFILES=10000
WORKDIR=/var/tmp
RGW_ON=1
PERF=0
KEEP=0
while [ $# -gt 0 ]; do
  case "$1" in
    -n) NFILES=$2; shift 2 ;;
    -w) WORKDIR=$2; shift 2 ;;
    --no-rgw) RGW_ON=0; shift ;;
    --perf) PERF=1; shift ;;
    --keep) KEEP=1; shift ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
done

for v in SCRIBEFS:daemon/scribefs SCRIBECTL:tools/scribectl; do
  name=${v%%:*} rel=${v#*:}
  if [ -z "${!name:-}" ]; then
    for b in "$ROOT/build/$rel" "$ROOT"/build*/"$rel"; do
      if [ -x "$b" ]; then printf -v "$name" '%s' "$b"; break; fi
    done
  fi
  [ -x "${!name:-}" ] || { echo "no $rel (build it, or set $name)" >&2; exit 1; }
done
if [ -z "${AWS:-}" ]; then
  if [ -x /usr/bin/aws ]; then AWS=/usr/bin/aws; else AWS=aws; fi
fi
[ "$(id -u)" = 0 ] || { echo "run as root (the daemon mounts)" >&2; exit 1; }

T=$(mktemp -d "$WORKDIR/scribefs-flushsmall-XXXXXX")
RGW=$T/rgw SRC=$T/src
MNT=""
cleanup() {
  set +e
  if [ -n "$MNT" ] && mountpoint -q "$MNT"; then fusermount3 -u "$MNT"; sleep 1; fi
  [ "$RGW_ON" = 1 ] && "$ROOT/tests/testbed/rgw-down.sh" "$RGW" >/dev/null 2>&1
  if [ "$KEEP" = 1 ]; then echo "kept $T"; else rm -rf "$T"; fi
}
trap cleanup EXIT

echo "== making $NFILES files" >&2
python3 - "$SRC" "$NFILES" <<'PY'
import os, sys
src, n = sys.argv[1], int(sys.argv[2])
for d in range(100):
    os.makedirs(f"{src}/d{d:03}", exist_ok=True)
for i in range(n):
    size = 1 + (i * 7919) % 4096  # as the storm writer: 1 B .. 4 KiB
    with open(f"{src}/d{i % 100:03}/f{i:07}", "wb") as f:
        f.write(bytes((97 + (i + k) % 26) for k in range(size)))
PY

# write_tree DIR: the files of SRC written into DIR by 2 processes (as the
# storm test's 2 writers), each file open(O_CREAT) + one write + close.
write_tree() {
  python3 - "$SRC" "$1" <<'PY'
import os, sys
from multiprocessing import Process
src, dst = sys.argv[1], sys.argv[2]
dirs = sorted(os.listdir(src))
for d in dirs:
    os.makedirs(os.path.join(dst, d), exist_ok=True)
def writer(part):
    for d in dirs[part::2]:
        for name in sorted(os.listdir(os.path.join(src, d))):
            with open(os.path.join(src, d, name), "rb") as f:
                data = f.read()
            fd = os.open(os.path.join(dst, d, name), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            os.write(fd, data)
            os.close(fd)
ps = [Process(target=writer, args=(i,)) for i in range(2)]
for p in ps: p.start()
for p in ps: p.join()
sys.exit(any(p.exitcode for p in ps))
PY
}
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
HZ=$(getconf CLK_TCK)
declare -A RES

# run NAME [daemon target options...]: one fresh mount (--workers 16
# --history off, as the storm test). The tree is written while the uploads
# are held back (--bwlimit 32K, the minimum: a few hundred stored meanwhile), so that,
# as in the storm test, a backlog of N files waits; then `scribectl set
# bwlimit off` and `scribectl flush`, timed, with the daemon's CPU over the
# flush alone (the write path is not in it).
run() {
  local name=$1; shift
  local data=$T/$name/data state=$T/$name/state
  MNT=$T/$name/mnt
  mkdir -p "$data" "$MNT"
  # shellcheck disable=SC2086
  "$SCRIBEFS" --state-dir "$state" --workers 16 --history off --bwlimit 32K \
    ${SCRIBEFS_OPTS:-} "$@" "$data" "$MNT"
  local pid; pid=$(cat "$state/lock")
  local t0; t0=$(date +%s.%N)
  write_tree "$MNT"
  local t1; t1=$(date +%s.%N)
  local perf_pid=""
  if [ "$PERF" = 1 ] && [ "$name" = file ]; then
    perf record --call-graph dwarf,16384 -F 250 -p "$pid" -o "$T/perf-file.data" >/dev/null 2>&1 &
    perf_pid=$!
    sleep 1
  fi
  local c1; c1=$(cpu_ticks "$pid")
  local t2; t2=$(date +%s.%N)
  "$SCRIBECTL" --state-dir "$state" set bwlimit off >/dev/null
  "$SCRIBECTL" --state-dir "$state" flush --timeout 900 >/dev/null
  local t3; t3=$(date +%s.%N)
  local c2; c2=$(cpu_ticks "$pid")
  if [ -n "$perf_pid" ]; then
    kill -INT "$perf_pid"; wait "$perf_pid" || true
    perf report -i "$T/perf-file.data" --children --stdio -g none --percent-limit 2 \
      2>/dev/null | grep -v '^$' | head -80 >"$T/perf-file.txt" || true
    echo "perf: $T/perf-file.data, top: $T/perf-file.txt" >&2
  fi
  local req
  req=$("$SCRIBECTL" --state-dir "$state" --json status |
    python3 -c 'import json,sys; d=json.load(sys.stdin).get("daemon") or {}; print((d.get("uploader") or {}).get("requests",0))')
  fusermount3 -u "$MNT"
  for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  MNT=""
  RES[$name.write]=$(echo "$t1 - $t0" | bc -l)
  RES[$name.flush]=$(echo "$t3 - $t2" | bc -l)
  RES[$name.cpu]=$(echo "($c2 - $c1) / $HZ" | bc -l)
  RES[$name.req]=$req
  printf '%-5s write %6.1f s  flush %6.1f s = %5.0f files/s  daemon CPU in flush %6.2f s  requests %s\n' \
    "$name" "${RES[$name.write]}" "${RES[$name.flush]}" \
    "$(echo "$NFILES / ${RES[$name.flush]}" | bc -l)" "${RES[$name.cpu]}" "$req" >&2
}

CEIL=""
if [ "$RGW_ON" = 1 ]; then
  echo "== starting RGW" >&2
  "$ROOT/tests/testbed/rgw-up.sh" "$RGW" 0 >&2
  set -a
  # shellcheck disable=SC1091
  . "$RGW/env"
  set +a
  export AWS_EC2_METADATA_DISABLED=true AWS_REGION=$S3_REGION AWS_PAGER=
  export AWS_CONFIG_FILE=$T/aws-config
  printf '[default]\ns3 =\n  max_concurrent_requests = 16\n' >"$AWS_CONFIG_FILE"
  aws_() { "$AWS" --endpoint-url "$S3_ENDPOINT" --region "$S3_REGION" "$@"; }
  BUCKET=flush-$(date +%s)
  aws_ s3api create-bucket --bucket "$BUCKET" >/dev/null
  echo "== ceiling: scribefs's S3 client alone (bench/s3_put_ceiling.cc, 16 threads)" >&2
  g++ -std=c++20 -O2 -I"$ROOT" -o "$T/s3_put_ceiling" "$HERE/s3_put_ceiling.cc" \
    "$ROOT/build/uploader/libscribefs_uploader.a" "$ROOT/build/history/libscribefs_history.a" \
    "$ROOT/build/uploader/libscribefs_uploader.a" "$ROOT/build/journal/libscribefs_journal.a" \
    "$ROOT/build/common/libscribefs_common.a" -lcurl -lcrypto -lexpat -lspdlog -lfmt -lsqlite3 -lpthread
  read -r _ CEIL_S CEIL_C CEIL_CPU < <("$T/s3_put_ceiling" "$SRC" "$BUCKET" ceiling-c 16)
  printf 's3_put_ceiling: %.1f s, %.0f PUT/s, client CPU %.2f s\n' "$CEIL_S" "$CEIL_C" "$CEIL_CPU" >&2
  echo "== ceiling: aws s3 cp --recursive (16 concurrent)" >&2
  a0=$(date +%s.%N)
  aws_ s3 cp --recursive --only-show-errors "$SRC" "s3://$BUCKET/ceiling" >/dev/null
  a1=$(date +%s.%N)
  CEIL=$(echo "$NFILES / ($a1 - $a0)" | bc -l)
  printf 'aws s3 cp: %.1f s, %.0f PUT/s\n' "$(echo "$a1 - $a0" | bc -l)" "$CEIL" >&2
fi

echo "== file://" >&2
mkdir -p "$T/file-target"
run file --target "file://$T/file-target"
if [ "$RGW_ON" = 1 ]; then
  echo "== RGW" >&2
  run s3 --target "s3://$BUCKET/fs" --endpoint "$S3_ENDPOINT" --region "$S3_REGION"
fi

echo
echo "| $NFILES small files, flush of the backlog (load $(cut -d' ' -f1-3 /proc/loadavg)) | write s | flush s | files/s | daemon CPU in flush, s | ms CPU / file | requests / file |"
echo "|---|---:|---:|---:|---:|---:|---:|"
for name in file s3; do
  [ -n "${RES[$name.cpu]:-}" ] || continue
  printf '| %s | %.1f | %.1f | %.0f | %.2f | %.2f | %s |\n' "$name" "${RES[$name.write]}" \
    "${RES[$name.flush]}" "$(echo "$NFILES / ${RES[$name.flush]}" | bc -l)" "${RES[$name.cpu]}" \
    "$(echo "${RES[$name.cpu]} * 1000 / $NFILES" | bc -l)" \
    "$(printf '%.2f' "$(echo "${RES[$name.req]} / $NFILES" | bc -l)")"
done
if [ -n "$CEIL" ]; then
  printf '| RGW ceiling: s3_put_ceiling (S3Store, 16 threads) | | %.1f | %.0f | %.2f (client) | | 1 |\n' \
    "$CEIL_S" "$CEIL_C" "$CEIL_CPU"
  printf '| RGW ceiling: aws s3 cp --recursive (16 concurrent) | | | %.0f | | | 1 |\n' "$CEIL"
fi
exit 0
