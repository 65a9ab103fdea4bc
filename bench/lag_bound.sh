#!/usr/bin/env bash
# lag_bound.sh - what bounded lag (--max-lag/--max-pending) costs a writer, against plain
# async mode and sync mode, with the target healthy, slow and down.
#
# Starts its own throwaway Ceph RGW (tests/testbed/rgw-up.sh; stopped on exit) and puts a
# small TCP proxy (Python, in this script) between scribefs and RGW whose behaviour a file
# switches: "ok" forwards, "slow" forwards at most RATE_KIB KiB/s each way per connection
# (a congested link), "down" refuses new connections and cuts open ones. (The tests'
# FaultProxy, tests/replication/fault_proxy.h, is a library inside the gtest binaries with
# no command-line front end, so it cannot be reused here.)
#
# For each mode (async, bounded = async + BOUND_OPTS, sync) and each target state
# (healthy, slow, down) it mounts scribefs, runs one writer for SECONDS s that creates files
# of SIZE_KIB KiB (open, write, close) and reports: MB/s written, the write() and close()
# latency (p50/p99/max, ms), how many files got through, and the lag (age of the oldest
# pending record, `scribectl status`) at the end. A writer still blocked at the end (held
# by the bound, or a sync close waiting) is counted as blocked; the target is then made
# healthy so that it finishes, and the uploads are flushed before the next run.
#
# usage: bench/lag_bound.sh [-s SECONDS] [-k SIZE_KIB] [-r RATE_KIB] [-w WORKDIR] [--keep]
#   -s SECONDS   writer time per run (default 30)
#   -k SIZE_KIB  file size (default 1024)
#   -r RATE_KIB  the slow target's rate per connection (default 256)
#   -w WORKDIR   parent of the temp dir (default /var/tmp)
#   --keep       keep the temp dir
# environment: SCRIBEFS, SCRIBECTL (binaries; default build*/ next to this script),
#   BOUND_OPTS (default "--max-lag 5s --max-pending 64M"), SYNC_TIMEOUT (default 10),
#   AWS (default /usr/bin/aws, else aws)
# needs: root, fusermount3, python3, the AWS CLI, and what rgw-up.sh needs.
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
SECS=30
SIZE_KIB=1024
RATE_KIB=256
WORKDIR=/var/tmp
KEEP=0
while [ $# -gt 0 ]; do
  case "$1" in
    -s) SECS=$2; shift 2 ;;
    -k) SIZE_KIB=$2; shift 2 ;;
    -r) RATE_KIB=$2; shift 2 ;;
    -w) WORKDIR=$2; shift 2 ;;
    --keep) KEEP=1; shift ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
done
BOUND_OPTS=${BOUND_OPTS:---max-lag 5s --max-pending 64M}
SYNC_TIMEOUT=${SYNC_TIMEOUT:-10}

for var in SCRIBEFS SCRIBECTL; do
  if [ -z "${!var:-}" ]; then
    name=$(echo "$var" | tr 'A-Z' 'a-z')
    sub=daemon; [ "$name" = scribectl ] && sub=tools
    for b in "$ROOT"/build/$sub/$name "$ROOT"/build*/$sub/$name; do
      if [ -x "$b" ]; then printf -v "$var" '%s' "$b"; break; fi
    done
  fi
  [ -x "${!var:-}" ] || { echo "no $var binary (build it, or set $var)" >&2; exit 1; }
done
if [ -z "${AWS:-}" ]; then
  if [ -x /usr/bin/aws ]; then AWS=/usr/bin/aws; else AWS=aws; fi
fi
[ "$(id -u)" = 0 ] || { echo "run as root (the daemon mounts)" >&2; exit 1; }

T=$(mktemp -d "$WORKDIR/scribefs-lagbench-XXXXXX")
RGW=$T/rgw
MODE_FILE=$T/proxy.mode
PROXY_PID=
cleanup() {
  set +e
  if [ -n "${MNT:-}" ] && mountpoint -q "$MNT"; then fusermount3 -u "$MNT"; sleep 1; fi
  [ -n "$PROXY_PID" ] && kill "$PROXY_PID" 2>/dev/null
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
BUCKET=lagbench-$(date +%s)
"$AWS" --endpoint-url "$S3_ENDPOINT" --region "$S3_REGION" s3api create-bucket \
  --bucket "$BUCKET" >/dev/null

# ---- the switchable proxy ------------------------------------------------------------
echo ok >"$MODE_FILE"
python3 - "$MODE_FILE" "$S3_ENDPOINT" "$RATE_KIB" >"$T/proxy.port" 2>"$T/proxy.log" <<'PY' &
import asyncio, sys, urllib.parse
mode_file, endpoint, rate_kib = sys.argv[1], sys.argv[2], int(sys.argv[3])
up = urllib.parse.urlparse(endpoint)
def mode():
    try:
        return open(mode_file).read().strip()
    except OSError:
        return "ok"
async def pipe(r, w):
    try:
        while True:
            data = await r.read(16384)
            if not data or mode() == "down":
                break
            if mode() == "slow":
                await asyncio.sleep(len(data) / (rate_kib * 1024))
            w.write(data)
            await w.drain()
    except Exception:
        pass
    finally:
        w.close()
async def handle(cr, cw):
    if mode() == "down":
        cw.close()
        return
    try:
        sr, sw = await asyncio.open_connection(up.hostname, up.port)
    except OSError:
        cw.close()
        return
    await asyncio.gather(pipe(cr, sw), pipe(sr, cw))
async def main():
    srv = await asyncio.start_server(handle, "127.0.0.1", 0)
    print(srv.sockets[0].getsockname()[1], flush=True)
    await srv.serve_forever()
asyncio.run(main())
PY
PROXY_PID=$!
for _ in $(seq 1 50); do [ -s "$T/proxy.port" ] && break; sleep 0.1; done
PROXY=http://127.0.0.1:$(cat "$T/proxy.port")

# ---- one run -------------------------------------------------------------------------
RESULTS=$T/results.jsonl
run() {  # run MODE TARGET_STATE
  local mode=$1 state=$2 opts=()
  case "$mode" in
    async) opts=(--mode async) ;;
    bounded) read -r -a opts <<<"--mode async $BOUND_OPTS" ;;
    sync) opts=(--mode sync --sync-timeout "$SYNC_TIMEOUT") ;;
  esac
  local run_dir=$T/$mode-$state
  DATA=$run_dir/data MNT=$run_dir/mnt STATE=$run_dir/state
  mkdir -p "$DATA" "$MNT"
  echo ok >"$MODE_FILE"
  "$SCRIBEFS" --state-dir "$STATE" --target "s3://$BUCKET/$mode-$state" --endpoint "$PROXY" \
    "${opts[@]}" "$DATA" "$MNT" >/dev/null
  case "$state" in healthy) echo ok ;; slow) echo slow ;; down) echo down ;; esac >"$MODE_FILE"
  echo "== $mode, target $state: writing for $SECS s" >&2
  python3 - "$MNT" "$SECS" "$SIZE_KIB" "$mode" "$state" "$SCRIBECTL" "$STATE" "$MODE_FILE" \
    >>"$RESULTS" <<'PY'
import json, os, subprocess, sys, threading, time
mnt, secs, size_kib, mode, state, ctl, state_dir, mode_file = sys.argv[1:]
secs, size = float(secs), int(size_kib) * 1024
data = os.urandom(size)
writes, closes, errors = [], [], []
done_files = 0
stop = threading.Event()
finished = threading.Event()
def writer():
    global done_files
    i = 0
    while not stop.is_set():
        try:
            fd = os.open(f"{mnt}/f{i}", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            t = time.monotonic()
            os.write(fd, data)
            writes.append(time.monotonic() - t)
            t = time.monotonic()
            os.close(fd)
            closes.append(time.monotonic() - t)
            done_files += 1
        except OSError as e:
            errors.append(str(e))
        i += 1
    finished.set()
th = threading.Thread(target=writer, daemon=True)
t0 = time.monotonic()
th.start()
time.sleep(secs)
stop.set()
files_in_time = done_files
blocked = not finished.wait(2.0)
status = json.loads(subprocess.run([ctl, "--state-dir", state_dir, "--json", "status"],
                                   capture_output=True, text=True).stdout or "{}")
lag = (status.get("daemon") or status).get("lag") or {}
# Let a blocked writer finish: the target becomes healthy.
open(mode_file, "w").write("ok\n")
finished.wait(600)
def pct(v, p):
    v = sorted(v)
    return round(1000 * v[min(len(v) - 1, int(p * (len(v) - 1)))], 2) if v else None
print(json.dumps({
    "mode": mode, "target": state, "seconds": secs, "file_kib": size // 1024,
    "files": files_in_time, "mb_per_s": round(files_in_time * size / secs / 1e6, 2),
    "write_ms": {"p50": pct(writes, .5), "p99": pct(writes, .99), "max": pct(writes, 1)},
    "close_ms": {"p50": pct(closes, .5), "p99": pct(closes, .99), "max": pct(closes, 1)},
    "blocked_at_end": blocked, "errors": len(errors), "first_error": errors[0] if errors else "",
    "lag_s_at_end": lag.get("oldest_pending_s"), "pending_bytes_at_end": lag.get("pending_bytes"),
    "throttle_at_end": lag.get("throttle"), "throttle_reason": lag.get("reason"),
}), flush=True)
PY
  "$SCRIBECTL" --state-dir "$STATE" flush >/dev/null 2>&1 || echo "flush failed ($mode-$state)" >&2
  fusermount3 -u "$MNT"
  for _ in $(seq 1 100); do
    [ -f "$STATE/lock" ] && pid=$(cat "$STATE/lock" 2>/dev/null) && kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  rm -rf "$DATA"
}

for state in healthy slow down; do
  for mode in async bounded sync; do run "$mode" "$state"; done
done

echo "== results ($RESULTS)" >&2
python3 - "$RESULTS" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
print(f"{'mode':8} {'target':8} {'MB/s':>7} {'files':>6} {'write p50/p99/max ms':>24} "
      f"{'close p50/p99/max ms':>24} {'blocked':>7} {'err':>4} {'lag s':>6} throttle")
for r in rows:
    w, c = r["write_ms"], r["close_ms"]
    print(f"{r['mode']:8} {r['target']:8} {r['mb_per_s']:7} {r['files']:6} "
          f"{str(w['p50'])+'/'+str(w['p99'])+'/'+str(w['max']):>24} "
          f"{str(c['p50'])+'/'+str(c['p99'])+'/'+str(c['max']):>24} "
          f"{str(r['blocked_at_end']):>7} {r['errors']:4} {str(r['lag_s_at_end']):>6} "
          f"{r['throttle_at_end']} {r['throttle_reason'] or ''}")
PY
