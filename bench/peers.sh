#!/usr/bin/env bash
# peers.sh - scribefs against the tools people run today to keep a directory
# in S3, in one run, on one throwaway Ceph RGW, with the same data.
#
# Sides (-t, comma separated; each gets its own bucket and directory):
#   scribefs     a scribefs mount, async (defaults: history on), over the directory
#   lsyncd15     lsyncd 2.2 (inotify) running `rclone sync DIR rgw:BUCKET` per batch,
#                lsyncd's default delay of 15 s
#   lsyncd1      the same with delay = 1 s (tuned)
#   rclone       `rclone sync DIR rgw:BUCKET` in a loop (1 s between passes)
#   restic       snapshot-style backup: `restic backup DIR` after each workload
# Workloads (-w, comma separated):
#   a  untar of a -n file source tree (default 20,000 files, ~130 MB): time from the
#      start of the untar until the bucket equals the directory (radosgw-admin's
#      listing: every file, same size and MD5, or multipart ETag), S3 requests (RGW's
#      usage log, per bucket), MB it received (the same log) and MB sent to it on the
#      wire (an nftables counter on its port, headers included, when nft is
#      installed: what the clients sent, whatever RGW's accounting); restic: untar
#      + one backup
#   b  a 4 KiB change in the middle of a 1 GiB file: bytes sent to RGW for it
#   c  -o creates/renames/deletes (default 100,000) by 2 writers while the side is
#      busy, then up to 300 s to settle: paths missing, stale or extra in the bucket
#      when it settled or gave up (restic: one backup after, its time)
#   d  restore of one file as it was before its last change (an instant a few seconds
#      back, as "5 minutes ago" would be): who can, and how long it takes
# Prints a Markdown table per workload and the raw figures as JSON lines.
#
# usage: bench/peers.sh [options]
#   -t, --sides LIST      default scribefs,lsyncd15,lsyncd1,rclone,restic
#   -w, --workloads LIST  default a,b,c,d
#   -n, --files N         files of the source tree (default 20000)
#   -o, --ops N           operations of workload c (default 100000)
#   -d, --workdir DIR     parent of the temporary work dir (default /var/tmp)
#   -j, --json FILE       raw figures (default ./peers.jsonl)
#   -h, --help
# environment: SCRIBEFS, SCRIBECTL (default: build*/ next to this script, then PATH),
#   SCRIBEFS_OPTS (extra daemon options, word-split)
# needs: root, fusermount3, python3, rclone, lsyncd, restic, and what
#   tests/testbed/rgw-up.sh needs (ceph-mon ceph-osd radosgw ceph-common uuid-runtime curl).
#   apt-get install -y rclone lsyncd restic (and nftables for the bytes on the wire)
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
SIDES=scribefs,lsyncd15,lsyncd1,rclone,restic
WORKLOADS=a,b,c,d
NFILES=20000
OPS=100000
WORKROOT=/var/tmp
JSON=$PWD/peers.jsonl
while [ $# -gt 0 ]; do
  case "$1" in
    -t|--sides) SIDES=$2; shift 2 ;;
    -w|--workloads) WORKLOADS=$2; shift 2 ;;
    -n|--files) NFILES=$2; shift 2 ;;
    -o|--ops) OPS=$2; shift 2 ;;
    -d|--workdir) WORKROOT=$2; shift 2 ;;
    -j|--json) JSON=$2; shift 2 ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "peers.sh: unknown option $1 (try --help)" >&2; exit 2 ;;
  esac
done

find_bin() {  # find_bin NAME SUBDIR
  for b in "$ROOT"/build/"$2"/"$1" "$ROOT"/build*/"$2"/"$1"; do
    [ -x "$b" ] && { echo "$b"; return; }
  done
  command -v "$1" || { echo "peers.sh: $1 not found; build first or set it" >&2; exit 1; }
}
SCRIBEFS=${SCRIBEFS:-$(find_bin scribefs daemon)}
SCRIBECTL=${SCRIBECTL:-$(find_bin scribectl tools)}
for tool in fusermount3 python3 rclone lsyncd restic radosgw-admin; do
  command -v "$tool" >/dev/null || { echo "peers.sh: $tool not found (apt-get install -y rclone lsyncd restic)" >&2; exit 1; }
done
[ "$(id -u)" = 0 ] || { echo "peers.sh: run as root (scribefs mounts)" >&2; exit 1; }
LIB="python3 $HERE/peers_lib.py"

W=$(mktemp -d "$WORKROOT/scribefs-peers.XXXXXX")
RGW=$W/rgw
BG_PID=
NFT_TABLE=scribefs_peers_$$
cleanup() {
  set +e
  command -v nft >/dev/null && nft delete table inet "$NFT_TABLE" 2>/dev/null
  [ -z "$BG_PID" ] || kill "$BG_PID" 2>/dev/null
  for m in "$W"/mnt-*; do
    if grep -q " $m fuse.scribefs " /proc/self/mounts; then fusermount3 -u "$m"; fi
  done
  sleep 1
  "$ROOT/tests/testbed/rgw-down.sh" "$RGW" >/dev/null 2>&1
  rm -rf "$W"
}
trap cleanup EXIT

echo "starting RGW (usage log on, 8 GiB memstore) ..." >&2
RGW_MEMSTORE_BYTES=$((8 << 30)) \
  RGW_EXTRA_CONF=$'rgw enable usage log = true\nrgw usage log tick interval = 1\nrgw usage log flush threshold = 1' \
  "$ROOT/tests/testbed/rgw-up.sh" "$RGW" 0 >&2
set -a
# shellcheck disable=SC1091
. "$RGW/env"
set +a
CONF=$RGW/ceph.conf
# Bytes on the wire to RGW: a counter on its port (loopback's input hook sees
# each packet from a client to the gateway once, headers included).
RGW_PORT=${S3_ENDPOINT##*:}
RGW_PORT=${RGW_PORT%%/*}
if command -v nft >/dev/null; then
  nft add table inet "$NFT_TABLE"
  nft add chain inet "$NFT_TABLE" in '{ type filter hook input priority 0; policy accept; }'
  nft add rule inet "$NFT_TABLE" in tcp dport "$RGW_PORT" counter
else
  echo "peers.sh: nft not found: no bytes on the wire (apt-get install -y nftables)" >&2
fi
# The endpoint is plain HTTP; rclone refuses to start with AWS_CA_BUNDLE set.
unset AWS_CA_BUNDLE
export RCLONE_CONFIG_RGW_TYPE=s3 RCLONE_CONFIG_RGW_PROVIDER=Ceph \
  RCLONE_CONFIG_RGW_ENDPOINT=$S3_ENDPOINT RCLONE_CONFIG_RGW_ACCESS_KEY_ID=$AWS_ACCESS_KEY_ID \
  RCLONE_CONFIG_RGW_SECRET_ACCESS_KEY=$AWS_SECRET_ACCESS_KEY RESTIC_PASSWORD=peers-bench

echo "making the source tree ($NFILES files) ..." >&2
mkdir -p "$W/src"
$LIB tree "$W/src" "$NFILES"
tar -C "$W/src" -cf "$W/src.tar" .
rm -rf "$W/src"
head -c $((1 << 30)) /dev/urandom >"$W/big.src"

now() { date +%s%N; }
ms_since() { echo $(( ($(now) - $1) / 1000000 )); }
wire_bytes() {  # bytes sent to RGW so far, or -1 without nft
  if command -v nft >/dev/null; then
    nft -j list chain inet "$NFT_TABLE" in | python3 -c 'import json,sys
print(sum(x["counter"]["bytes"] for o in json.load(sys.stdin)["nftables"] if "rule" in o
          for x in o["rule"]["expr"] if "counter" in x))'
  else
    echo -1
  fi
}
usage_of() {  # S3 requests and bytes by RGW's usage log, and bytes on the wire
  local u w
  u=$($LIB usage "$CONF" "$1")
  w=$(wire_bytes)
  echo "${u%\}},\"wire_bytes\":$w}"
}
record() {  # record JSON: one line of raw figures
  echo "$1" | tee -a "$JSON" >&2
}
delta() {  # delta BEFORE_JSON AFTER_JSON -> {"requests":..,"bytes_received":..}
  python3 -c 'import json,sys; a,b=json.loads(sys.argv[1]),json.loads(sys.argv[2])
w = b["wire_bytes"]-a["wire_bytes"] if a["wire_bytes"] >= 0 else None
print(json.dumps({"requests": b["ops"]-a["ops"], "bytes_received": b["bytes_received"]-a["bytes_received"],
                  "wire_bytes": w}))' "$1" "$2"
}

# ---- one side: start / stop / settle -------------------------------------
# Each side watches DIR (the directory the workload writes into) and keeps
# BUCKET equal to it.
side_start() {  # side_start SIDE -> sets DIR BUCKET
  local side=$1
  BUCKET=peers-$side-$RANDOM
  rclone mkdir "rgw:$BUCKET"
  DIR=$W/dir-$side
  rm -rf "$DIR"
  mkdir -p "$DIR"
  case $side in
    scribefs)
      local data=$W/data-$side
      rm -rf "$data" "$W/state-$side"
      mkdir -p "$data" "$W/mnt-$side"
      # shellcheck disable=SC2086
      "$SCRIBEFS" --state-dir "$W/state-$side" --target "s3://$BUCKET" --endpoint "$S3_ENDPOINT" \
        --region "$S3_REGION" ${SCRIBEFS_OPTS:-} "$data" "$W/mnt-$side"
      DIR=$W/mnt-$side
      ;;
    lsyncd15|lsyncd1)
      local delay=${side#lsyncd}
      cat >"$W/lsyncd-$side.lua" <<LUA
settings { logfile = "$W/lsyncd-$side.log", nodaemon = true }
local rclone_sync = {
  delay = $delay,
  maxProcesses = 1,
  action = function(inlet)
    local events = inlet.getEvents()
    spawn(events, "/usr/bin/rclone", "sync", "$DIR", "rgw:$BUCKET")
  end,
  init = function(event)
    spawn(event, "/usr/bin/rclone", "sync", "$DIR", "rgw:$BUCKET")
  end,
}
sync { rclone_sync, source = "$DIR" }
LUA
      lsyncd "$W/lsyncd-$side.lua" >/dev/null 2>&1 &
      BG_PID=$!
      ;;
    rclone)
      (while :; do rclone sync "$DIR" "rgw:$BUCKET" 2>/dev/null || true; sleep 1; done) &
      BG_PID=$!
      ;;
    restic)
      restic -q -r "s3:$S3_ENDPOINT/$BUCKET" init >/dev/null
      ;;
  esac
}
side_stop() {  # side_stop SIDE
  case $1 in
    scribefs) fusermount3 -u "$W/mnt-$1"; for _ in $(seq 1 300); do [ -e "$W/state-$1/control.sock" ] || break; sleep 0.1; done ;;
    *) if [ -n "$BG_PID" ]; then kill "$BG_PID" 2>/dev/null || true; wait "$BG_PID" 2>/dev/null || true; BG_PID=; fi
       pkill -f "rclone sync $DIR " 2>/dev/null || true ;;
  esac
  rclone purge "rgw:$BUCKET" >/dev/null 2>&1 || true
  radosgw-admin -c "$CONF" gc process --include-all >/dev/null 2>&1 || true
}
# Until the bucket equals DIR (restic: one backup). Prints the compare JSON.
side_settle() {  # side_settle SIDE TIMEOUT_S
  if [ "$1" = restic ]; then
    restic -q -r "s3:$S3_ENDPOINT/$BUCKET" backup "$DIR" >/dev/null
    echo '{"equal":true,"note":"one restic backup"}'
  else
    $LIB wait "$CONF" "$BUCKET" "${COMPARE_DIR:-$DIR}" "$2"
  fi
}
# scribefs also stores history (chunks and timeline segments under .scribefs/)
# after the bucket's copy equals the directory: wait for that too before the
# bytes are counted, so that one workload's tail is not counted in the next.
side_flush() {  # side_flush SIDE
  if [ "$1" = scribefs ]; then
    "$SCRIBECTL" --state-dir "$W/state-$1" flush --timeout 1800 >/dev/null
  fi
}
data_of() {  # the directory to compare with: scribefs's DATADIR (outside the mount)
  if [ "$1" = scribefs ]; then echo "$W/data-$1"; else echo "$DIR"; fi
}

IFS=, read -r -a SIDE_LIST <<<"$SIDES"
: >"$JSON"
for side in "${SIDE_LIST[@]}"; do
  echo "== $side" >&2
  side_start "$side"
  export COMPARE_DIR
  COMPARE_DIR=$(data_of "$side")
  if [[ ,$WORKLOADS, == *,a,* ]]; then
    u0=$(usage_of "$BUCKET"); t0=$(now)
    tar -C "$DIR" -xf "$W/src.tar"
    untar_ms=$(ms_since "$t0")
    c=$(side_settle "$side" 1800)
    total_ms=$(ms_since "$t0")
    side_flush "$side"
    sleep 2  # the usage log's tick
    record "{\"side\":\"$side\",\"workload\":\"a\",\"untar_ms\":$untar_ms,\"until_equal_ms\":$total_ms,\"settle\":$c,\"usage\":$(delta "$u0" "$(usage_of "$BUCKET")")}"
  fi
  if [[ ,$WORKLOADS, == *,d,* ]] && [[ ,$WORKLOADS, == *,a,* ]]; then
    f=pkg00/mod00/f00000.c
    before=$(md5sum <"$DIR/$f" | cut -d' ' -f1)
    at=$(date +%s.%N)
    sleep 2
    echo "changed $(date)" >>"$DIR/$f"
    side_settle "$side" 600 >/dev/null
    t0=$(now)
    got=none
    case $side in
      scribefs)
        "$SCRIBECTL" --state-dir "$W/state-$side" restore --at "@$at" --path "$f" --to "$W/restored" >/dev/null 2>&1 &&
          got=$(md5sum <"$W/restored/$f" | cut -d' ' -f1) ;;
      restic)
        restic -q -r "s3:$S3_ENDPOINT/$BUCKET" snapshots --json >"$W/snaps.json"
        snap=$(python3 -c 'import json,sys; s=json.load(open(sys.argv[1])); print(s[-2]["short_id"] if len(s) > 1 else "")' "$W/snaps.json")
        if [ -n "$snap" ]; then
          restic -q -r "s3:$S3_ENDPOINT/$BUCKET" restore "$snap" --include "$DIR/$f" --target "$W/restored" >/dev/null 2>&1 &&
            got=$(md5sum <"$W/restored/$DIR/$f" | cut -d' ' -f1)
        fi ;;
    esac
    ok=false
    [ "$got" != "$before" ] || ok=true
    record "{\"side\":\"$side\",\"workload\":\"d\",\"restored_previous_version\":$ok,\"ms\":$(ms_since "$t0")}"
    rm -rf "$W/restored"
  fi
  if [[ ,$WORKLOADS, == *,b,* ]]; then
    cp "$W/big.src" "$DIR/big.bin"
    side_settle "$side" 1800 >/dev/null
    side_flush "$side"
    sleep 2
    u0=$(usage_of "$BUCKET")
    head -c 4096 /dev/urandom | dd of="$DIR/big.bin" bs=4096 seek=$((1 << 17)) conv=notrunc status=none
    t0=$(now)
    c=$(side_settle "$side" 1800)
    side_flush "$side"
    sleep 2
    record "{\"side\":\"$side\",\"workload\":\"b\",\"settle_ms\":$(ms_since "$t0"),\"settle\":$c,\"usage\":$(delta "$u0" "$(usage_of "$BUCKET")")}"
    rm -f "$DIR/big.bin"
    side_settle "$side" 1800 >/dev/null
  fi
  if [[ ,$WORKLOADS, == *,c,* ]]; then
    u0=$(usage_of "$BUCKET"); t0=$(now)
    $LIB churn "$DIR" "$OPS" 2
    churn_ms=$(ms_since "$t0")
    t1=$(now)
    c=$(side_settle "$side" 300)
    sleep 2
    record "{\"side\":\"$side\",\"workload\":\"c\",\"churn_ms\":$churn_ms,\"settle_ms\":$(ms_since "$t1"),\"settle\":$c,\"usage\":$(delta "$u0" "$(usage_of "$BUCKET")")}"
  fi
  side_stop "$side"
done

$LIB report "$JSON"
echo "raw figures: $JSON" >&2
