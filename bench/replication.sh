#!/usr/bin/env bash
# replication.sh - how fast scribefs' uploader gets changes into S3.
#
# Starts its own throwaway Ceph RGW (tests/testbed/rgw-up.sh; stopped on exit),
# mounts scribefs with --target s3://BUCKET --endpoint RGW (async mode, default
# options unless SCRIBEFS_OPTS says otherwise) and measures, in one run:
#
#  1. lag: a writer creates 1 KiB files at a steady RATE files/s for SECONDS s
#     (open, write, close; the time close() returned is taken right after it).
#     For every file:  lag = state_ns of the journal's last record of the file
#     (the uploader sets it when it marks the record done, right after the
#     object store acknowledged the PUT)  -  the time close() returned.
#     For a sample (every 20th file) a poller also sends signed HEAD requests
#     (SigV4 in Python, one persistent HTTP connection, every 5 ms) straight to
#     RGW until the object is there: lag = first HEAD 200 - close() return.
#     p50/p95/p99/max of both; afterwards `aws s3api head-object` spot-checks a
#     few objects (ETag = MD5 of the local file).
#  2. throughput: 1,000 files of 1 MiB (made once, outside the mount) copied
#     into the mount; time from the start of the copy until the last record is
#     done (so: the local copy plus the upload, as a user waits for it), MB/s;
#     against `aws s3 cp --recursive` of the same tree to another prefix of the
#     same bucket in the same run, MB/s; ratio scribefs / aws.
#  3. partial update: a 256 MiB file (--part-size 8, the default) is written and
#     uploaded; 4 KiB in its middle is rewritten; bytes sent for that update =
#     delta of bytes_sent in the journal's meta 'uploader' counters; compared
#     with the file size; the object's SHA-256 is checked (aws s3 cp + sha256sum).
#
# usage: bench/replication.sh [-r RATE] [-s SECONDS] [-n FILES] [-w WORKDIR] [--keep]
#   -r RATE      files/s for the lag phase (default 200)
#   -s SECONDS   duration of the lag phase (default 60)
#   -n FILES     1 MiB files for the throughput phase (default 1000)
#   -w WORKDIR   parent of the temp dir (default /var/tmp); needs ~2.5 GiB
#   --keep       keep the temp dir
# environment: SCRIBEFS (daemon binary; default build*/daemon/scribefs next to this
#   script), SCRIBEFS_OPTS (extra daemon options), AWS (default /usr/bin/aws, else aws)
# needs: root, fusermount3, python3, sqlite3, the AWS CLI, and what rgw-up.sh needs
#   (ceph-mon ceph-osd radosgw ceph-common uuid-runtime curl).
#
# RGW's memstore OSD holds 2 GiB: the script deletes each phase's objects before
# the next one (and runs RGW's garbage collector).
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
RATE=200
SECONDS_LAG=60
NFILES=1000
WORKDIR=/var/tmp
KEEP=0
while [ $# -gt 0 ]; do
  case "$1" in
    -r) RATE=$2; shift 2 ;;
    -s) SECONDS_LAG=$2; shift 2 ;;
    -n) NFILES=$2; shift 2 ;;
    -w) WORKDIR=$2; shift 2 ;;
    --keep) KEEP=1; shift ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
done

if [ -z "${SCRIBEFS:-}" ]; then
  for b in "$ROOT"/build/daemon/scribefs "$ROOT"/build*/daemon/scribefs; do
    if [ -x "$b" ]; then SCRIBEFS=$b; break; fi
  done
fi
[ -x "${SCRIBEFS:-}" ] || { echo "no scribefs binary (build it, or set SCRIBEFS)" >&2; exit 1; }
if [ -z "${AWS:-}" ]; then
  if [ -x /usr/bin/aws ]; then AWS=/usr/bin/aws; else AWS=aws; fi
fi
[ "$(id -u)" = 0 ] || { echo "run as root (the daemon mounts)" >&2; exit 1; }

LOAD0=$(cut -d' ' -f1-3 /proc/loadavg)
T=$(mktemp -d "$WORKDIR/scribefs-repbench-XXXXXX")
RGW=$T/rgw
DATA=$T/data MNT=$T/mnt STATE=$T/state SRC=$T/src
mkdir -p "$DATA" "$MNT" "$SRC"
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
  if [ "$KEEP" = 1 ]; then echo "kept $T"; else rm -rf "$T"; fi
}
trap cleanup EXIT

echo "== starting RGW" >&2
"$ROOT/tests/testbed/rgw-up.sh" "$RGW" 0 >&2
set -a
# shellcheck disable=SC1091
. "$RGW/env"
set +a
export AWS_EC2_METADATA_DISABLED=true AWS_REGION=$S3_REGION AWS_PAGER=
CONF=$RGW/ceph.conf
aws_() { "$AWS" --endpoint-url "$S3_ENDPOINT" --region "$S3_REGION" "$@"; }
BUCKET=bench-$(date +%s)
aws_ s3api create-bucket --bucket "$BUCKET" >/dev/null

# shellcheck disable=SC2086
"$SCRIBEFS" --state-dir "$STATE" --target "s3://$BUCKET/fs" --endpoint "$S3_ENDPOINT" \
  ${SCRIBEFS_OPTS:-} "$DATA" "$MNT"
DB=$STATE/journal.db

# Waits until no record is pending/uploading and the uploader counters have
# been quiet for 1 s (there is no control socket yet for a real flush).
wait_uploads() {
  python3 - "$DB" <<'PY'
import sqlite3, sys, time
db = sqlite3.connect(f"file:{sys.argv[1]}?mode=ro", uri=True, timeout=10)
last, quiet, start = None, time.time(), time.time()
while True:
    busy = db.execute("select count(*) from records where state in ('pending','uploading')").fetchone()[0]
    row = db.execute("select value from meta where key='uploader'").fetchone()
    cur = row[0] if row else ""
    if busy or cur != last:
        last, quiet = cur, time.time()
    elif time.time() - quiet >= 1.0:
        break
    if time.time() - start > 900:
        sys.exit("uploads did not finish in 900 s")
    time.sleep(0.05)
PY
}
counter() {  # counter NAME: a field of the meta 'uploader' JSON (0 before the first upload)
  python3 -c 'import json,sqlite3,sys
db = sqlite3.connect(f"file:{sys.argv[1]}?mode=ro", uri=True)
row = db.execute("select value from meta where key=?", ("uploader",)).fetchone()
print(json.loads(row[0])[sys.argv[2]] if row else 0)' "$DB" "$1"
}

# ---- 1. lag -------------------------------------------------------------------
echo "== lag: $RATE files/s for $SECONDS_LAG s" >&2
mkdir "$MNT/lag"
wait_uploads
R0=$(counter retries)
python3 - "$MNT/lag" "$RATE" "$SECONDS_LAG" "$DB" "$S3_ENDPOINT" "$BUCKET" "fs/lag" \
  "$AWS_ACCESS_KEY_ID" "$AWS_SECRET_ACCESS_KEY" "$S3_REGION" >"$T/lag.json" <<'PY'
import datetime, hashlib, hmac, http.client, json, os, queue, sqlite3, sys, threading, time
import urllib.parse

d, rate, secs, dbpath, endpoint, bucket, prefix, ak, sk, region = sys.argv[1:]
rate, secs = float(rate), float(secs)
host = urllib.parse.urlparse(endpoint).netloc

def sign_head(key):
    now = datetime.datetime.now(datetime.timezone.utc)
    amzdate, day = now.strftime("%Y%m%dT%H%M%SZ"), now.strftime("%Y%m%d")
    uri = "/" + bucket + "/" + urllib.parse.quote(key, safe="/-_.~")
    empty = hashlib.sha256(b"").hexdigest()
    canon = "\n".join(["HEAD", uri, "", f"host:{host}", f"x-amz-content-sha256:{empty}",
                       f"x-amz-date:{amzdate}", "", "host;x-amz-content-sha256;x-amz-date", empty])
    scope = f"{day}/{region}/s3/aws4_request"
    sts = "\n".join(["AWS4-HMAC-SHA256", amzdate, scope, hashlib.sha256(canon.encode()).hexdigest()])
    k = ("AWS4" + sk).encode()
    for part in (day, region, "s3", "aws4_request"):
        k = hmac.new(k, part.encode(), hashlib.sha256).digest()
    sig = hmac.new(k, sts.encode(), hashlib.sha256).hexdigest()
    return uri, {"Host": host, "x-amz-date": amzdate, "x-amz-content-sha256": empty,
                 "Authorization": f"AWS4-HMAC-SHA256 Credential={ak}/{scope}, "
                                  f"SignedHeaders=host;x-amz-content-sha256;x-amz-date, Signature={sig}"}

samples = queue.Queue()
head_lags, head_errors = [], []
def poller():
    conn = http.client.HTTPConnection(host, timeout=10)
    while True:
        item = samples.get()
        if item is None:
            return
        name, closed_ns = item
        deadline = time.time() + 60
        while True:
            uri, hdrs = sign_head(prefix + "/" + name)
            try:
                conn.request("HEAD", uri, headers=hdrs)
                r = conn.getresponse()
                r.read()
                status = r.status
            except Exception as e:  # reconnect
                conn.close()
                conn = http.client.HTTPConnection(host, timeout=10)
                status = str(e)
            if status == 200:
                head_lags.append((time.time_ns() - closed_ns) / 1e6)
                break
            if isinstance(status, int) and status != 404:
                head_errors.append(f"{name}: HTTP {status}")
                break
            if time.time() > deadline:
                head_errors.append(f"{name}: not visible after 60 s")
                break
            time.sleep(0.005)
threads = [threading.Thread(target=poller) for _ in range(2)]
for t in threads:
    t.start()

n = int(rate * secs)
closed = {}
write_ms = []
start = time.monotonic()
behind = 0
for i in range(n):
    due = start + i / rate
    delay = due - time.monotonic()
    if delay > 0:
        time.sleep(delay)
    else:
        behind = max(behind, -delay)
    name = f"f{i:06d}"
    data = os.urandom(1024)
    t0 = time.monotonic()
    fd = os.open(os.path.join(d, name), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    os.write(fd, data)
    os.close(fd)
    closed_ns = time.time_ns()
    write_ms.append((time.monotonic() - t0) * 1e3)
    closed[name] = closed_ns
    if i % 20 == 0:
        samples.put((name, closed_ns))
elapsed = time.monotonic() - start
for _ in threads:
    samples.put(None)

# Journal lag: the last record of each file is done when its upload finished.
db = sqlite3.connect(f"file:{dbpath}?mode=ro", uri=True, timeout=10)
deadline = time.time() + 300
while db.execute("select count(*) from records where state in ('pending','uploading') and path like 'lag/%'").fetchone()[0]:
    if time.time() > deadline:
        break
    time.sleep(0.1)
for t in threads:
    t.join()
lags, missing = [], 0
rows = db.execute("select path, max(state_ns), max(case when state='done' then 0 else 1 end) "
                  "from records where path like 'lag/%' group by path").fetchall()
done_at = {p[4:]: (ns, bad) for p, ns, bad in rows}
for name, cns in closed.items():
    ns, bad = done_at.get(name, (None, 1))
    if ns is None or bad:
        missing += 1
    else:
        lags.append((ns - cns) / 1e6)

def pct(v, p):
    v = sorted(v)
    return v[min(len(v) - 1, int(p * (len(v) - 1) + 0.5))] if v else None
out = {
    "files": n, "seconds": elapsed, "achieved_rate": n / elapsed, "writer_behind_max_s": behind,
    "write_ms": {"p50": pct(write_ms, .5), "p99": pct(write_ms, .99), "max": max(write_ms)},
    "journal_lag_ms": {"n": len(lags), "p50": pct(lags, .5), "p95": pct(lags, .95),
                       "p99": pct(lags, .99), "max": max(lags) if lags else None,
                       "min": min(lags) if lags else None},
    "not_done": missing,
    "head_lag_ms": {"n": len(head_lags), "p50": pct(head_lags, .5), "p95": pct(head_lags, .95),
                    "p99": pct(head_lags, .99), "max": max(head_lags) if head_lags else None},
    "head_errors": head_errors[:10],
}
print(json.dumps(out, indent=1))
PY
cat "$T/lag.json" >&2
R1=$(counter retries)
# Spot-check with the AWS CLI: 3 objects, ETag = MD5 of the local file.
SPOT_OK=0
NLAG=$(python3 -c "print(int($RATE * $SECONDS_LAG))")
for f in f000000 "f$(printf %06d $((NLAG / 2)))" "f$(printf %06d $((NLAG - 1)))"; do
  want=$(md5sum "$DATA/lag/$f" | cut -d' ' -f1)
  got=$(aws_ s3api head-object --bucket "$BUCKET" --key "fs/lag/$f" --query ETag --output text 2>/dev/null | tr -d '"' || true)
  if [ "$got" = "$want" ]; then SPOT_OK=$((SPOT_OK + 1)); else echo "spot check $f: ETag '$got', local MD5 $want" >&2; fi
done
echo "aws s3api head-object spot checks: $SPOT_OK/3 ok" >&2
rm -rf "$MNT/lag"
wait_uploads

# ---- 2. throughput ----------------------------------------------------------------
echo "== throughput: $NFILES x 1 MiB" >&2
python3 - "$SRC" "$NFILES" <<'PY'
import os, sys
d, n = sys.argv[1], int(sys.argv[2])
for i in range(n):
    sub = os.path.join(d, f"d{i // 100:02d}")
    os.makedirs(sub, exist_ok=True)
    with open(os.path.join(sub, f"f{i:04d}"), "wb") as f:
        f.write(os.urandom(1 << 20))
PY
sync
BYTES=$((NFILES * 1048576))
wait_uploads
START_NS=$(date +%s%N)
cp -r "$SRC" "$MNT/tp"
COPIED_NS=$(date +%s%N)
wait_uploads
END_NS=$(sqlite3 "file:$DB?mode=ro" "select max(state_ns) from records where path like 'tp/%'")
NOT_DONE=$(sqlite3 "file:$DB?mode=ro" "select count(*) from records where path like 'tp/%' and state!='done'")
LISTED=$(aws_ s3api list-objects-v2 --bucket "$BUCKET" --prefix fs/tp/ --query 'length(Contents[?Size==`1048576`])' --output text)
SCR_S=$(python3 -c "print(($END_NS - $START_NS) / 1e9)")
COPY_S=$(python3 -c "print(($COPIED_NS - $START_NS) / 1e9)")
SCR_MBS=$(python3 -c "print(round($BYTES / 1e6 / $SCR_S, 1))")
echo "scribefs: copy into the mount ${COPY_S}s, last upload done after ${SCR_S}s: $SCR_MBS MB/s; $LISTED objects listed; $NOT_DONE records not done" >&2
rm -rf "$MNT/tp"  # the uploader deletes the objects (memstore is small)
wait_uploads
radosgw-admin -c "$CONF" gc process --include-all >/dev/null 2>&1 || true
A0=$(date +%s%N)
aws_ s3 cp --recursive --only-show-errors "$SRC" "s3://$BUCKET/aws/tp/"
A1=$(date +%s%N)
AWS_S=$(python3 -c "print(($A1 - $A0) / 1e9)")
AWS_MBS=$(python3 -c "print(round($BYTES / 1e6 / $AWS_S, 1))")
RATIO=$(python3 -c "print(round($SCR_MBS / $AWS_MBS, 2))")
echo "aws s3 cp --recursive: ${AWS_S}s: $AWS_MBS MB/s; ratio scribefs/aws $RATIO" >&2
aws_ s3 rm --recursive --only-show-errors "s3://$BUCKET/aws/"
radosgw-admin -c "$CONF" gc process --include-all >/dev/null 2>&1 || true
rm -rf "$SRC"

# ---- 3. partial update ------------------------------------------------------------
echo "== partial update: 4 KiB in a 256 MiB file" >&2
head -c $((256 << 20)) /dev/urandom >"$MNT/big.bin"
wait_uploads
B0=$(counter bytes_sent)
P0=$(counter partial_uploads)
python3 -c 'import os, sys
fd = os.open(sys.argv[1], os.O_WRONLY)
os.pwrite(fd, os.urandom(4096), (128 << 20) + (3 << 20) + 123)
os.close(fd)' "$MNT/big.bin"
wait_uploads
B1=$(counter bytes_sent)
P1=$(counter partial_uploads)
SENT=$((B1 - B0))
aws_ s3 cp --only-show-errors "s3://$BUCKET/fs/big.bin" "$T/big.download"
if [ "$(sha256sum <"$T/big.download")" = "$(sha256sum <"$DATA/big.bin")" ]; then SHA=ok; else SHA=MISMATCH; fi
rm -f "$T/big.download"
echo "partial update: $SENT bytes sent ($(python3 -c "print(round($SENT / 2**20, 2))") MiB) for a $((256 << 20))-byte file; partial_uploads $P0 -> $P1; object sha256 $SHA" >&2

# ---- report --------------------------------------------------------------------------
RGW_VERSION=$(radosgw --version 2>/dev/null | head -1 | cut -d' ' -f1-3)
LOAD1=$(cut -d' ' -f1-3 /proc/loadavg)
AWS_VERSION=$("$AWS" --version 2>&1 | cut -d' ' -f1)
python3 - "$T/lag.json" <<PY
import json, platform, subprocess, sys
lag = json.load(open(sys.argv[1]))
def f(v): return "-" if v is None else f"{v:.1f}"
cpu = subprocess.run("grep -m1 'model name' /proc/cpuinfo | cut -d: -f2", shell=True,
                     capture_output=True, text=True).stdout.strip()
print(f"machine: {platform.node()}, {cpu}, $(nproc) cores, kernel {platform.release()}; "
      f"load average at start $LOAD0, at end $LOAD1 (other work on the machine skews the figures)")
print(f"daemon: $SCRIBEFS ${SCRIBEFS_OPTS:-} (async, --workers 4 unless set); RGW: $RGW_VERSION; AWS CLI: $AWS_VERSION")
print(f"command: bench/replication.sh -r $RATE -s $SECONDS_LAG -n $NFILES")
print()
print("| measure | result |")
print("| --- | --- |")
j, h = lag["journal_lag_ms"], lag["head_lag_ms"]
print(f"| writer | {lag['files']} files in {lag['seconds']:.1f} s ({lag['achieved_rate']:.1f} files/s); create+write+close p50 {f(lag['write_ms']['p50'])} ms, p99 {f(lag['write_ms']['p99'])} ms |")
print(f"| lag close -> record done (journal state_ns), all {j['n']} files | p50 {f(j['p50'])} ms, p95 {f(j['p95'])} ms, p99 {f(j['p99'])} ms, max {f(j['max'])} ms |")
print(f"| lag close -> first HEAD 200 (SigV4 poller, every 20th file, n={h['n']}) | p50 {f(h['p50'])} ms, p95 {f(h['p95'])} ms, p99 {f(h['p99'])} ms, max {f(h['max'])} ms |")
print(f"| files not done / HEAD errors | {lag['not_done']} / {len(lag['head_errors'])}; aws s3api head-object spot checks $SPOT_OK/3; uploader retries during the phase: $((R1 - R0)) |")
print(f"| throughput $NFILES x 1 MiB, scribefs (cp into mount until last upload done) | $SCR_MBS MB/s ({float('$SCR_S'):.1f} s; the cp itself {float('$COPY_S'):.1f} s) |")
print(f"| throughput, aws s3 cp --recursive of the same tree | $AWS_MBS MB/s ({float('$AWS_S'):.1f} s) |")
print(f"| ratio scribefs / aws | $RATIO |")
print(f"| partial update: 4 KiB changed in a 256 MiB file | $SENT bytes sent ({$SENT / 2**20:.2f} MiB = {100 * $SENT / (256 << 20):.2f} % of the file); partial_uploads $P0 -> $P1; sha256 $SHA |")
PY
