#!/usr/bin/env bash
# checkpoint.sh - how long a checkpoint holds writes, as a function of the
# data that is still to be stored when it starts, on a fast, a slow and a
# stopped target; and what a checkpoint costs the writers after its mark.
#
# A checkpoint captures the state at its mark under a short pause (copy-on-
# write, fs/cow_spool.h) and is stored afterwards (README, "Pause points and
# checkpoints"). For each target and size: wait until nothing is pending
# (`flush`, except on the stopped target), write one file of that size
# through the mount (cp of a pre-made random file; closed), and at once take
# `scribectl --json checkpoint`. Its answer says how long writes were held
# (held_ms); the script also times the command, and, where the target can
# store it, how long until the checkpoint is stored (`flush`). A probe
# process makes and removes a directory in the mount, one operation after the
# other, from just before the command until it returns: the longest of those
# operations is what a writer saw (it waits at the gate while writes are
# held, and for anything after the resume that would hold it too, such as a
# journal commit queued behind an fsync). held_ms alone would not show that.
#
# Targets (-t, comma separated):
#   file       file:// directory in the work dir
#   rgw        a throwaway Ceph RGW (tests/testbed/rgw-up.sh; stopped on exit)
#   rgw-slow   the same RGW with --bwlimit 8M (a distant target)
#   rgw-down   the same RGW with its gateway stopped after the mount started
# RGW keeps its data in memory (an 8 GiB memstore, taken as data is stored;
# RGW_MEMSTORE_BYTES overrides): sizes above 1024 MiB are skipped on rgw
# (history keeps every run's chunks) and above 100 MiB on rgw-slow (8 MB/s:
# storing 1 GiB and its history takes over 4 minutes a run); rgw-down takes
# every size.
#
# --fio: also measures the writers' side on a file:// target slowed to 1 MiB/s
# (`scribectl set bwlimit 1M` before each checkpoint, `off` after: so that the
# capture stays live for the whole measurement, and the flushes in between
# are not slowed):
# fio randwrite (bench/workloads/randwrite.fio, 256 MiB file) with no capture,
# and right after a checkpoint that froze the file; and the latency of
# pwrite+fdatasync of 4 KiB at 2,000 random blocks, the first overwrite after
# the mark (which preserves the old bytes) and the second (which does not).
#
# usage: bench/checkpoint.sh [options]
#   -s, --sizes LIST    sizes in MiB, comma separated (default 1,100,1024,4096)
#   -n, --runs N        checkpoints per size (default 3)
#   -t, --targets LIST  default file,rgw,rgw-slow,rgw-down
#       --fio           also the writers' cost (needs fio)
#   -w, --workdir DIR   parent of the temporary work dir (default /var/tmp)
#   -j, --json FILE     raw answers, one JSON object per line (default ./checkpoint.jsonl)
#   -h, --help
# environment:
#   SCRIBEFS, SCRIBECTL  the binaries (default: build*/ next to this script, then PATH)
#   SCRIBEFS_OPTS        extra daemon options, word-split (e.g. "--workers 8")
# needs: root, fusermount3, python3; for RGW the test bed (ceph-mon ceph-osd
# radosgw) and the aws CLI.
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
SIZES=1,100,1024,4096
RUNS=3
TARGETS=file,rgw,rgw-slow,rgw-down
FIO=0
WORKROOT=/var/tmp
JSON=$PWD/checkpoint.jsonl
while [ $# -gt 0 ]; do
  case "$1" in
    -s|--sizes) SIZES=$2; shift 2 ;;
    -n|--runs) RUNS=$2; shift 2 ;;
    -t|--targets) TARGETS=$2; shift 2 ;;
    --fio) FIO=1; shift ;;
    -w|--workdir) WORKROOT=$2; shift 2 ;;
    -j|--json) JSON=$2; shift 2 ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "checkpoint.sh: unknown option $1 (try --help)" >&2; exit 2 ;;
  esac
done

find_bin() {  # find_bin NAME SUBDIR
  for b in "$ROOT"/build/"$2"/"$1" "$ROOT"/build*/"$2"/"$1"; do
    [ -x "$b" ] && { echo "$b"; return; }
  done
  command -v "$1" || { echo "checkpoint.sh: $1 not found; build first or set it" >&2; exit 1; }
}
SCRIBEFS=${SCRIBEFS:-$(find_bin scribefs daemon)}
SCRIBECTL=${SCRIBECTL:-$(find_bin scribectl tools)}
for tool in fusermount3 python3; do
  command -v "$tool" >/dev/null || { echo "checkpoint.sh: $tool not found" >&2; exit 1; }
done
[ "$FIO" = 0 ] || command -v fio >/dev/null || { echo "checkpoint.sh: fio not found" >&2; exit 1; }
[ "$(id -u)" = 0 ] || { echo "checkpoint.sh: run as root (the daemon mounts)" >&2; exit 1; }

W=$(mktemp -d "$WORKROOT/scribefs-ckpt-bench.XXXXXX")
RGW=$W/rgw
MNT=$W/mnt
STATE=
RGW_UP=0
unmount() {
  if grep -q " $MNT fuse.scribefs " /proc/self/mounts; then
    "$SCRIBECTL" --state-dir "$STATE" resume >/dev/null 2>&1 || true
    fusermount3 -u "$MNT"
    for _ in $(seq 1 600); do [ -e "$STATE/control.sock" ] || break; sleep 0.1; done
  fi
}
cleanup() {
  set +e
  unmount
  [ "$RGW_UP" = 0 ] || "$ROOT/tests/testbed/rgw-down.sh" "$RGW" >/dev/null 2>&1
  rm -rf "$W"
}
trap cleanup EXIT

start_rgw() {
  [ "$RGW_UP" = 1 ] && return
  command -v aws >/dev/null || { echo "checkpoint.sh: aws not found" >&2; exit 1; }
  echo "starting RGW ..." >&2
  RGW_MEMSTORE_BYTES=${RGW_MEMSTORE_BYTES:-8589934592} "$ROOT/tests/testbed/rgw-up.sh" "$RGW" 0 >&2
  RGW_UP=1
  set -a
  # shellcheck disable=SC1091
  . "$RGW/env"
  set +a
  export AWS_DEFAULT_REGION=$S3_REGION
}

# mount_on TARGET [EXTRA DAEMON OPTIONS...]: a fresh DATADIR and state dir.
mount_on() {
  local name=$1
  shift
  local data=$W/data-$name
  STATE=$W/state-$name
  mkdir -p "$data" "$MNT"
  local target
  case $name in
    file*) target=(--target "file://$W/target-$name") ;;
    rgw*)
      start_rgw
      aws --endpoint-url "$S3_ENDPOINT" s3api create-bucket --bucket "ckpt-$name" >/dev/null
      target=(--target "s3://ckpt-$name/bench" --endpoint "$S3_ENDPOINT" --region "$S3_REGION")
      ;;
  esac
  # A spool bound above the largest size: a frozen file removed after its
  # run stays in the spool until its checkpoint is stored.
  # shellcheck disable=SC2086
  "$SCRIBEFS" --state-dir "$STATE" "${target[@]}" --max-spool 64G "$@" ${SCRIBEFS_OPTS:-} \
    "$data" "$MNT"
  CTL=("$SCRIBECTL" --state-dir "$STATE")
}

# One checkpoint with MiB of fresh dirty data; appends its answer to $JSON.
checkpoint_run() {  # checkpoint_run TARGET MIB RUN SRC
  local name=$1 mib=$2 run=$3 src=$4
  [ "$name" = rgw-down ] || "${CTL[@]}" flush --timeout 1200 >/dev/null
  # Fresh content every run, so that every run has the whole file to store.
  printf 'run %s %s' "$run" "$(date +%s%N)" | dd of="$src" conv=notrunc status=none
  cp "$src" "$MNT/dirty-$mib-$run"
  local t0 t1 t2 out probe
  # The probe: mkdir/rmdir until told to stop; "start_ns duration_ns" per op.
  rm -f "$W/probe-stop" "$W/probe.txt"
  python3 -c '
import os, sys, time
d, stop, out = sys.argv[1], sys.argv[2], open(sys.argv[3], "w")
first = True
while first or not os.path.exists(stop):
    t = time.time_ns()
    (os.rmdir if os.path.isdir(d) else os.mkdir)(d)
    out.write(f"{t} {time.time_ns() - t}\n")
    if first:
        out.flush()  # it runs: the command may start
        first = False
' "$MNT/probe-$run" "$W/probe-stop" "$W/probe.txt" &
  probe=$!
  for _ in $(seq 1 1000); do [ -s "$W/probe.txt" ] && break; sleep 0.01; done
  sleep 0.3  # the baseline: as long before the command as it takes
  t0=$(date +%s%N)
  out=$("${CTL[@]}" --json checkpoint "c-$mib-$run-$t0" --timeout 600)
  t1=$(date +%s%N)
  touch "$W/probe-stop"
  wait "$probe"
  t2=$t1
  if [ "$name" != rgw-down ]; then
    "${CTL[@]}" flush --timeout 1200 >/dev/null
    t2=$(date +%s%N)
  fi
  echo "$out" | python3 -c '
import json, sys
j = json.load(sys.stdin)
t0, t1 = int(sys.argv[4]), int(sys.argv[5])
ops = [tuple(map(int, l.split())) for l in open(sys.argv[7]) if l.strip()]
# Every op that was running at some moment of the command.
during = [d for s, d in ops if s <= t1 and s + d >= t0]
# The same length of time just before (ops that ended before the command).
before = [d for s, d in ops if s + d < t0 and s >= t0 - (t1 - t0)]
j.update(target=sys.argv[1], dirty_mib=int(sys.argv[2]), run=int(sys.argv[3]),
         command_ms=(t1 - t0) / 1e6,
         stored_ms=(int(sys.argv[6]) - t0) / 1e6 if sys.argv[1] != "rgw-down" else None,
         probe_max_ms=max(during) / 1e6 if during else None, probe_ops=len(during),
         probe_before_max_ms=max(before) / 1e6 if before else None)
print(json.dumps(j))' "$name" "$mib" "$run" "$t0" "$t1" "$t2" "$W/probe.txt" >>"$JSON"
  echo "$name, dirty $mib MiB, run $run: $(tail -1 "$JSON" | python3 -c '
import json, sys
j = json.load(sys.stdin)
print("held %s ms, longest mkdir/rmdir during the command %.1f ms" % (j["held_ms"], j["probe_max_ms"] or 0))')" >&2
  rmdir "$MNT/probe-$run" 2>/dev/null || true
  if [ "$name" != rgw-down ]; then
    rm -f "$MNT/dirty-$mib-$run"
    "${CTL[@]}" flush --timeout 1200 >/dev/null
    if [ "${name#rgw}" != "$name" ]; then
      # The memstore frees overwritten and deleted objects only at garbage collection.
      radosgw-admin -c "$RGW/ceph.conf" gc process --include-all >/dev/null 2>&1 || true
    fi
  fi
}

: >"$JSON"
IFS=, read -r -a SIZE_LIST <<<"$SIZES"
IFS=, read -r -a TARGET_LIST <<<"$TARGETS"
for mib in "${SIZE_LIST[@]}"; do
  head -c "$((mib * 1024 * 1024))" /dev/urandom >"$W/src-$mib"
done
for name in "${TARGET_LIST[@]}"; do
  case $name in
    file|rgw) mount_on "$name" ;;
    rgw-slow) mount_on "$name" --bwlimit 8M ;;
    rgw-down)
      mount_on "$name"
      "$ROOT/tests/testbed/rgw-gateway.sh" "$RGW" stop >&2
      ;;
    *) echo "checkpoint.sh: unknown target $name" >&2; exit 2 ;;
  esac
  for mib in "${SIZE_LIST[@]}"; do
    if [ "$mib" -gt 1024 ] && [ "$name" = rgw ]; then continue; fi
    if [ "$mib" -gt 100 ] && [ "$name" = rgw-slow ]; then continue; fi
    for run in $(seq 1 "$RUNS"); do checkpoint_run "$name" "$mib" "$run" "$W/src-$mib"; done
  done
  unmount
  [ "$name" != rgw-down ] || "$ROOT/tests/testbed/rgw-gateway.sh" "$RGW" start >&2
  rm -rf "$W/data-$name" "$W/target-$name" "$W/state-$name"
done

# The writers' side: a capture that stays live (the target stores at 1 MiB/s).
if [ "$FIO" = 1 ]; then
  mount_on file-fio
  fio_iops() {  # fio_iops LABEL
    sync; sync
    DIR=$MNT fio --output-format=json "$HERE/workloads/randwrite.fio" >"$W/fio.json"
    python3 -c '
import json, sys
j = json.load(open(sys.argv[1]))
print(json.dumps({"fio": sys.argv[2], "iops": j["jobs"][0]["write"]["iops"]}))' \
      "$W/fio.json" "$1" | tee -a "$JSON" >&2
  }
  DIR=$MNT fio --create_only=1 "$HERE/workloads/randwrite.fio" >/dev/null
  "${CTL[@]}" flush --timeout 1200 >/dev/null
  fio_iops "no capture"
  "${CTL[@]}" flush --timeout 1200 >/dev/null
  # One byte changed: the file has a change not stored at the mark, so the
  # checkpoint freezes it, and the 1 MiB/s target keeps the capture live.
  printf x | dd of="$MNT/randwrite.dat" conv=notrunc status=none
  "${CTL[@]}" set bwlimit 1M >/dev/null
  "${CTL[@]}" --json checkpoint fio-1 >/dev/null
  fio_iops "after a checkpoint that froze the file"
  "${CTL[@]}" set bwlimit off >/dev/null
  "${CTL[@]}" flush --timeout 1200 >/dev/null
  printf y | dd of="$MNT/randwrite.dat" conv=notrunc status=none
  "${CTL[@]}" set bwlimit 1M >/dev/null
  "${CTL[@]}" --json checkpoint lat-1 >/dev/null
  python3 - "$MNT/randwrite.dat" <<'EOF' | tee -a "$JSON" >&2
import json, os, random, statistics, sys, time
fd = os.open(sys.argv[1], os.O_WRONLY)
blocks = random.Random(1).sample(range(os.fstat(fd).st_size // 4096), 2000)
buf = os.urandom(4096)
def timed():
    out = []
    for b in blocks:
        t = time.perf_counter_ns()
        os.pwrite(fd, buf, b * 4096)
        os.fdatasync(fd)
        out.append((time.perf_counter_ns() - t) / 1e3)
    return out
first, second = timed(), timed()
q = lambda xs, p: sorted(xs)[int(p * (len(xs) - 1))]
print(json.dumps({"latency_us": {"first_overwrite": {"p50": q(first, .5), "p99": q(first, .99)},
                                 "second_overwrite": {"p50": q(second, .5), "p99": q(second, .99)}}}))
EOF
  "${CTL[@]}" set bwlimit off >/dev/null
  unmount
fi

python3 - "$JSON" <<'EOF'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
def fmt(v): return f"{v:,.1f}"
def stat(xs): return f"{fmt(statistics.median(xs))} ({fmt(min(xs))}–{fmt(max(xs))})"
print("| target | dirty data | runs | writes held, ms | longest mkdir/rmdir during the command, ms | the same, as long just before, ms | command returned, ms | stored after, ms |")
print("|---|---|---|---|---|---|---|---|")
ck = [r for r in rows if "dirty_mib" in r]
for t in dict.fromkeys(r["target"] for r in ck):
    for mib in sorted({r["dirty_mib"] for r in ck if r["target"] == t}):
        rs = [r for r in ck if r["target"] == t and r["dirty_mib"] == mib]
        stored = [r["stored_ms"] for r in rs if r.get("stored_ms") is not None]
        probe = [r["probe_max_ms"] for r in rs if r.get("probe_max_ms") is not None]
        base = [r["probe_before_max_ms"] for r in rs if r.get("probe_before_max_ms") is not None]
        print(f"| {t} | {mib} MiB | {len(rs)} | {stat([r['held_ms'] for r in rs])} | "
              f"{stat(probe) if probe else '–'} | {stat(base) if base else '–'} | "
              f"{stat([r['command_ms'] for r in rs])} | {stat(stored) if stored else 'not stored (target down)'} |")
for r in rows:
    if "fio" in r: print(f"\nfio randwrite, {r['fio']}: {r['iops']:,.0f} IOPS")
    if "latency_us" in r: print(f"\n4 KiB pwrite+fdatasync, µs: {json.dumps(r['latency_us'])}")
EOF
echo "raw answers: $JSON" >&2
