#!/bin/bash
# Stop or start only the S3 gateway (radosgw) of the cluster that rgw-up.sh
# started in DIR. The monitor and the OSD keep running, so the gateway comes
# back on the same port, with the same users and data, in about a second:
# an S3 server that goes away and comes back, for outage tests.
#
#   usage: rgw-gateway.sh DIR stop|start
#
# stop: SIGTERM (as an init system stops it), SIGKILL after 10 s; returns once
#   the process is gone. Only a radosgw whose command line names DIR/ceph.conf
#   is signalled (as in rgw-down.sh).
# start: starts radosgw with DIR/ceph.conf and returns once it answers on the
#   S3 port of DIR/env (exit 1 after 30 s).
set -u
if [ $# -ne 2 ] || { [ "$2" != stop ] && [ "$2" != start ]; }; then
  echo "usage: $0 DIR stop|start" >&2
  exit 2
fi
[ -f "$1/ceph.conf" ] || { echo "rgw-gateway: no cluster in $1" >&2; exit 1; }
C=$(cd "$1" && pwd)
PIDFILE=$C/run/client.rgw.gw.pid

ours() {  # ours PID: is PID a daemon started with our ceph.conf?
  [ -r "/proc/$1/cmdline" ] && tr '\0' '\n' <"/proc/$1/cmdline" | grep -qxF "$C/ceph.conf"
}

case $2 in
  stop)
    pid=$(cat "$PIDFILE" 2>/dev/null || true)
    if [ -n "$pid" ] && ours "$pid"; then
      kill "$pid" 2>/dev/null
      for _ in $(seq 1 100); do
        ours "$pid" || break
        sleep 0.1
      done
      if ours "$pid"; then kill -9 "$pid" 2>/dev/null; sleep 0.2; fi
    fi
    rm -f "$PIDFILE"
    ;;
  start)
    # shellcheck disable=SC1091
    . "$C/env"
    radosgw -c "$C/ceph.conf" -n client.rgw.gw 2>>"$C/log/setup.log" || exit 1
    for _ in $(seq 1 300); do
      if curl -s -o /dev/null "$S3_ENDPOINT/"; then exit 0; fi
      sleep 0.1
    done
    echo "rgw-gateway: radosgw did not answer on $S3_ENDPOINT" >&2
    exit 1
    ;;
esac
exit 0
