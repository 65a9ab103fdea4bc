#!/bin/bash
# Stop the cluster that rgw-up.sh started in DIR and remove DIR.
#
#   usage: rgw-down.sh DIR [--keep]     (--keep leaves DIR, e.g. its logs, in place)
#
# Only processes named in DIR/run/*.pid whose command line names DIR/ceph.conf
# are signalled, so a reused pid is never hit. Safe to run any number of times.
set -u
if [ $# -lt 1 ]; then
  echo "usage: $0 DIR [--keep]" >&2
  exit 2
fi
C=$1
KEEP=${2:-}
[ -d "$C" ] || exit 0
C=$(cd "$C" && pwd)

ours() {  # ours PID: is PID a daemon started with our ceph.conf?
  [ -r "/proc/$1/cmdline" ] && tr '\0' '\n' <"/proc/$1/cmdline" | grep -qxF "$C/ceph.conf"
}

# The gateway first, the monitor last, as a cluster is shut down.
for name in client.rgw.gw osd.0 mon.a; do
  f=$C/run/$name.pid
  [ -f "$f" ] || continue
  pid=$(cat "$f" 2>/dev/null || true)
  if [ -n "$pid" ] && ours "$pid"; then
    kill "$pid" 2>/dev/null
    for _ in $(seq 1 50); do
      ours "$pid" || break
      sleep 0.2
    done
    if ours "$pid"; then kill -9 "$pid" 2>/dev/null; sleep 0.2; fi
  fi
  rm -f "$f"
done
if [ "$KEEP" != --keep ]; then
  rm -rf "$C"
fi
exit 0
