#!/usr/bin/env bash
# checkpoint.sh - how long a checkpoint holds writes, as a function of the
# data that is still to be uploaded when it starts.
#
# Starts a throwaway Ceph RGW (tests/testbed/rgw-up.sh; stopped on exit), mounts
# scribefs on a temporary DATADIR replicating to s3://BUCKET/bench (async), and
# for each size: waits until nothing is pending (scribectl flush), writes one
# file of that size through the mount (cp of a pre-made random file; closed),
# and at once takes `scribectl checkpoint`. The checkpoint pauses, waits until
# that file is uploaded, stores the manifest and resumes; its --json answer
# says how long writes were held and where the time went. Prints a Markdown
# table (median, min and max of --runs runs per size) and the raw answers.
#
# usage: bench/checkpoint.sh [options]
#   -s, --sizes LIST    sizes in MiB, comma separated (default 1,100,1024)
#   -n, --runs N        checkpoints per size (default 3)
#   -w, --workdir DIR   parent of the temporary work dir (default /var/tmp)
#   -j, --json FILE     raw answers, one JSON object per line (default ./checkpoint.jsonl)
#   -h, --help
# environment:
#   SCRIBEFS, SCRIBECTL  the binaries (default: build*/ next to this script, then PATH)
#   SCRIBEFS_OPTS        extra daemon options, word-split (e.g. "--workers 8")
# needs: root, fusermount3, the RGW test bed (ceph-mon ceph-osd radosgw), aws CLI, python3.
# Each run deletes its file afterwards and has RGW collect the garbage, so that
# 1 GiB runs fit the test bed's 2 GiB in-memory OSD.
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
SIZES=1,100,1024
RUNS=3
WORKROOT=/var/tmp
JSON=$PWD/checkpoint.jsonl
while [ $# -gt 0 ]; do
  case "$1" in
    -s|--sizes) SIZES=$2; shift 2 ;;
    -n|--runs) RUNS=$2; shift 2 ;;
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
for tool in fusermount3 aws python3; do
  command -v "$tool" >/dev/null || { echo "checkpoint.sh: $tool not found" >&2; exit 1; }
done
[ "$(id -u)" = 0 ] || { echo "checkpoint.sh: run as root (the daemon mounts)" >&2; exit 1; }

W=$(mktemp -d "$WORKROOT/scribefs-ckpt-bench.XXXXXX")
DATA=$W/data MNT=$W/mnt STATE=$W/state RGW=$W/rgw
mkdir -p "$DATA" "$MNT"
cleanup() {
  set +e
  if grep -q " $MNT fuse.scribefs " /proc/self/mounts; then
    "$SCRIBECTL" --state-dir "$STATE" resume >/dev/null 2>&1
    fusermount3 -u "$MNT"
    for _ in $(seq 1 100); do [ -e "$STATE/control.sock" ] || break; sleep 0.1; done
  fi
  "$ROOT/tests/testbed/rgw-down.sh" "$RGW" >/dev/null 2>&1
  rm -rf "$W"
}
trap cleanup EXIT

echo "starting RGW ..." >&2
"$ROOT/tests/testbed/rgw-up.sh" "$RGW" 0 >&2
set -a
# shellcheck disable=SC1091
. "$RGW/env"
set +a
export AWS_DEFAULT_REGION=$S3_REGION
BUCKET=scribefs-ckpt-bench
aws --endpoint-url "$S3_ENDPOINT" s3api create-bucket --bucket "$BUCKET" >/dev/null

# shellcheck disable=SC2086
"$SCRIBEFS" --state-dir "$STATE" --target "s3://$BUCKET/bench" --endpoint "$S3_ENDPOINT" \
  --region "$S3_REGION" ${SCRIBEFS_OPTS:-} "$DATA" "$MNT"
CTL=("$SCRIBECTL" --state-dir "$STATE")

: >"$JSON"
IFS=, read -r -a SIZE_LIST <<<"$SIZES"
for mib in "${SIZE_LIST[@]}"; do
  src=$W/src-$mib
  head -c "$((mib * 1024 * 1024))" /dev/urandom >"$src"
  for run in $(seq 1 "$RUNS"); do
    "${CTL[@]}" flush --timeout 600 >/dev/null
    # Fresh content every run, so that every run uploads the whole file.
    printf 'run %s %s' "$run" "$(date +%s%N)" | dd of="$src" conv=notrunc status=none
    cp "$src" "$MNT/dirty-$mib"
    t0=$(date +%s%N)
    out=$("${CTL[@]}" --json checkpoint "c-$mib-$run-$t0" --timeout 600)
    t1=$(date +%s%N)
    echo "$out" | python3 -c '
import json, sys
j = json.load(sys.stdin)
j["dirty_mib"] = int(sys.argv[1]); j["run"] = int(sys.argv[2])
j["command_ms"] = (int(sys.argv[4]) - int(sys.argv[3])) / 1e6
print(json.dumps(j))' "$mib" "$run" "$t0" "$t1" >>"$JSON"
    echo "dirty ${mib} MiB run $run: held $(echo "$out" | python3 -c 'import json,sys; print(json.load(sys.stdin)["held_ms"])') ms" >&2
    # The test bed's RGW keeps its data in a 2 GiB memstore and frees
    # overwritten objects only at garbage collection: delete and collect now.
    rm -f "$MNT/dirty-$mib"
    "${CTL[@]}" flush --timeout 600 >/dev/null
    radosgw-admin -c "$RGW/ceph.conf" gc process --include-all >/dev/null 2>&1 || true
  done
  rm -f "$src"
done

python3 - "$JSON" <<'EOF'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
def fmt(v): return f"{v:,.1f}"
def stat(xs): return f"{fmt(statistics.median(xs))} ({fmt(min(xs))}–{fmt(max(xs))})"
print("| dirty data | runs | writes held, ms | of which: drain | upload wait | manifest | effective upload rate |")
print("|---|---|---|---|---|---|---|")
for mib in sorted({r["dirty_mib"] for r in rows}):
    rs = [r for r in rows if r["dirty_mib"] == mib]
    held = [r["held_ms"] for r in rs]
    up = [r["upload_wait_ms"] for r in rs]
    rate = statistics.median(mib / (u / 1000) for u in up if u > 0) if any(u > 0 for u in up) else 0
    print(f"| {mib} MiB | {len(rs)} | {stat(held)} | {stat([r['drain_ms'] for r in rs])} | "
          f"{stat(up)} | {stat([r['manifest_ms'] for r in rs])} | {rate:,.0f} MiB/s |")
EOF
echo "raw answers: $JSON" >&2
