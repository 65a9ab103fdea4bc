#!/bin/bash
# Start a throwaway single-node Ceph cluster with an S3 gateway on 127.0.0.1:
# one monitor, one memstore OSD, one radosgw (no manager: RGW does not need one).
#
#   usage: rgw-up.sh DIR [PORT]     stop with rgw-down.sh DIR
#
# Environment (optional): RGW_MEMSTORE_BYTES, the OSD's in-memory store
# (default 2 GiB); RGW_EXTRA_CONF, lines appended to the gateway's section of
# ceph.conf (e.g. "rgw enable usage log = true" for benchmarks that count
# requests per bucket).
#
# DIR is created afresh (anything in it is removed). PORT is the S3 port; 0 or
# absent picks a free one. The monitor ports are always picked free, so several
# clusters (or a system Ceph) can run side by side. On success DIR/env holds
#   S3_ENDPOINT=http://127.0.0.1:PORT  S3_REGION=us-east-1
#   AWS_ACCESS_KEY_ID=...  AWS_SECRET_ACCESS_KEY=...
# in shell syntax. On failure every daemon already started is stopped again and
# the script exits non-zero after printing the tail of the daemon logs.
#
# Needs (Debian 12): ceph-mon ceph-osd radosgw ceph-common uuid-runtime python3
# (python3 comes with ceph-common).
set -euo pipefail

if [ $# -lt 1 ]; then
  echo "usage: $0 DIR [PORT]" >&2
  exit 2
fi
C=$1
PORT=${2:-0}
AK=${RGW_ACCESS_KEY:-scribefstestak}
SK=${RGW_SECRET_KEY:-scribefstestsecretkey0123456789}
HERE=$(cd "$(dirname "$0")" && pwd)

for tool in ceph-mon ceph-osd radosgw radosgw-admin ceph ceph-authtool monmaptool uuidgen python3 curl; do
  if ! command -v "$tool" >/dev/null 2>&1; then
    echo "rgw-up: $tool not found; install: apt-get install -y --no-install-recommends" \
      "ceph-mon ceph-osd radosgw ceph-common uuid-runtime curl" >&2
    exit 1
  fi
done

# Stop anything a previous run left in DIR before wiping it.
"$HERE/rgw-down.sh" "$C" >/dev/null 2>&1 || true
mkdir -p "$C"
C=$(cd "$C" && pwd)
mkdir -p "$C"/{mon/a,osd/0,rgw,run,log}

free_port() {
  python3 -c 'import socket
s = socket.socket()
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])'
}
MON_V2=$(free_port)
MON_V1=$(free_port)
while [ "$MON_V1" = "$MON_V2" ]; do MON_V1=$(free_port); done
if [ "$PORT" = 0 ]; then
  PORT=$(free_port)
  while [ "$PORT" = "$MON_V1" ] || [ "$PORT" = "$MON_V2" ]; do PORT=$(free_port); done
fi

fail() {
  echo "rgw-up: $*" >&2
  for f in "$C"/log/*.log; do
    [ -f "$f" ] || continue
    echo "---- tail of $f" >&2
    tail -n 20 "$f" >&2
  done
  "$HERE/rgw-down.sh" "$C" --keep >&2 || true
  exit 1
}
trap 'fail "command failed at line $LINENO"' ERR

FSID=$(uuidgen)
CONF=$C/ceph.conf
cat >"$CONF" <<CONF
[global]
fsid = $FSID
mon host = [v2:127.0.0.1:$MON_V2,v1:127.0.0.1:$MON_V1]
public addr = 127.0.0.1
cluster addr = 127.0.0.1
auth cluster required = none
auth service required = none
auth client required = none
# Without this radosgw hangs for 300 s fetching its config from the monitor.
ms mon client mode = crc secure
run dir = $C/run
pid file = $C/run/\$name.pid
admin socket = $C/run/\$name.asok
log file = $C/log/\$name.log
keyring = $C/keyring
osd pool default size = 1
osd pool default min size = 1
osd pool default pg num = 8
osd pool default pgp num = 8
osd pool default pg autoscale mode = off
osd crush chooseleaf type = 0
mon allow pool size one = true
mon allow pool delete = true
mon warn on pool no redundancy = false
mon max pg per osd = 1000
mon data avail warn = 1
mon data avail crit = 1
osd objectstore = memstore
[mon.a]
mon data = $C/mon/a
[osd.0]
osd data = $C/osd/0
memstore device bytes = ${RGW_MEMSTORE_BYTES:-2147483648}
osd memory target = 939524096
[client.rgw.gw]
rgw frontends = beast endpoint=127.0.0.1:$PORT
rgw data = $C/rgw
rgw dns name = 127.0.0.1
rgw thread pool size = 64
${RGW_EXTRA_CONF:-}
CONF
export CEPH_CONF=$CONF
ARGS=(-c "$CONF")  # also on every daemon's command line: rgw-down.sh checks it

ceph-authtool --create-keyring "$C/keyring" --gen-key -n mon. --cap mon 'allow *' >/dev/null
ceph-authtool "$C/keyring" --gen-key -n client.admin --cap mon 'allow *' --cap osd 'allow *' \
  --cap mgr 'allow *' >/dev/null
monmaptool --create --addv a "[v2:127.0.0.1:$MON_V2,v1:127.0.0.1:$MON_V1]" --fsid "$FSID" \
  "$C/monmap" >/dev/null
ceph-mon "${ARGS[@]}" --mkfs -i a --monmap "$C/monmap" --keyring "$C/keyring" 2>>"$C/log/setup.log"
ceph-mon "${ARGS[@]}" -i a 2>>"$C/log/setup.log"
timeout 60 ceph "${ARGS[@]}" -s --connect-timeout 30 >/dev/null 2>>"$C/log/setup.log" ||
  fail "monitor did not answer"

OSD_UUID=$(uuidgen)
ID=$(timeout 60 ceph "${ARGS[@]}" osd new "$OSD_UUID" 2>>"$C/log/setup.log")
ceph-osd "${ARGS[@]}" -i "$ID" --mkfs --osd-uuid "$OSD_UUID" >>"$C/log/setup.log" 2>&1
ceph-osd "${ARGS[@]}" -i "$ID" 2>>"$C/log/setup.log"
up=0
for _ in $(seq 1 120); do
  if timeout 20 ceph "${ARGS[@]}" osd stat 2>/dev/null | grep -q '1 up'; then up=1; break; fi
  sleep 0.5
done
[ $up = 1 ] || fail "OSD did not come up"

radosgw "${ARGS[@]}" -n client.rgw.gw 2>>"$C/log/setup.log"
up=0
for _ in $(seq 1 240); do
  if curl -s -o /dev/null "http://127.0.0.1:$PORT/"; then up=1; break; fi
  if [ -f "$C/run/client.rgw.gw.pid" ] && ! kill -0 "$(cat "$C/run/client.rgw.gw.pid")" 2>/dev/null; then
    fail "radosgw exited"
  fi
  sleep 0.5
done
[ $up = 1 ] || fail "radosgw did not answer on port $PORT"
timeout 120 radosgw-admin "${ARGS[@]}" user create --uid=scribefs-test --display-name=scribefs-test \
  --access-key="$AK" --secret-key="$SK" >/dev/null 2>>"$C/log/setup.log" ||
  fail "could not create the S3 user"

cat >"$C/env.tmp" <<ENV
S3_ENDPOINT=http://127.0.0.1:$PORT
S3_REGION=us-east-1
AWS_ACCESS_KEY_ID=$AK
AWS_SECRET_ACCESS_KEY=$SK
ENV
mv "$C/env.tmp" "$C/env"
trap - ERR
echo "rgw up: http://127.0.0.1:$PORT (env in $C/env)"
