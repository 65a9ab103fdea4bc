#!/usr/bin/env bash
# scale.sh - a million files: the daemon's memory, its start-up reconciliation
# and the answer time of scribectl status, stats and journal --path.
#
# Two mounts, one after the other, each on its own MOUNTPOINT over a fresh
# DATADIR:
#   journal  a journal-only mount (no --target): every record stays pending
#   file     a file:// mount: the uploader runs; after the creates,
#            `scribectl flush` waits until everything is stored
# Through each, N files of --size bytes (default 1) are made in 1,000
# directories by bench/smallfiles.c (create + write + close each). Then:
#   RSS       the daemon's VmRSS and VmHWM (/proc/PID/status), before and after,
#             and RssAnon (VmRSS less the mapped journal and binary)
#   inodes    the inode table's size and how many of those hold open/dirty
#             state (the /metrics gauges scribefs_inode_table_inodes and
#             _active_inodes; "-" where the daemon has none)
#   B/inode   (VmRSS after - VmRSS before) / inodes added
#   journal   journal.db + WAL in bytes
#   queries   `scribectl status`, `stats`, `journal --path 'd500/*' --limit 10`:
#             3 runs each, the median in ms (each cut at --query-timeout s)
# For the file:// mount, the daemon is then stopped and started again:
#   start     exec to serving (the daemon returns once the mount serves, after
#             the start-up reconciliation) and the reconciliation's own time
#             from its log line; the queries are timed again after the start;
#             VmRSS at serving and again once history has loaded the target's
#             timeline (its log line; it loads in the background).
# The kernel keeps a cached inode referenced (and so in the daemon's table)
# until memory pressure or `echo 2 > /proc/sys/vm/drop_caches` evicts it: the
# figures are for the worst case, every created file still cached.
#
# usage: bench/scale.sh [options]
#   -n, --files N          files per mount (default 1000000)
#   -s, --size BYTES       bytes written to each file (default 1; 0 = empty)
#       --parts LIST       journal,file (default) or one of them
#       --query-timeout S  seconds before a query counts as "timeout" (default 120)
#   -w, --workdir DIR      parent of the temporary work dir (default /var/tmp)
#   -j, --json FILE        the figures as JSON lines (default ./scale.json)
#   -h, --help
# environment:
#   SCRIBEFS, SCRIBECTL  the binaries (default: build*/ next to this script, then PATH)
#   SCRIBEFS_OPTS        extra daemon options, word-split
# needs: root, fusermount3, python3, cc, curl. Takes the machine: run it alone.
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
FILES=1000000
SIZE=1
PARTS=journal,file
QTIMEOUT=120
WORKROOT=/var/tmp
JSON=$PWD/scale.json
while [ $# -gt 0 ]; do
  case "$1" in
    -n|--files) FILES=$2; shift 2 ;;
    -s|--size) SIZE=$2; shift 2 ;;
    --parts) PARTS=$2; shift 2 ;;
    --query-timeout) QTIMEOUT=$2; shift 2 ;;
    -w|--workdir) WORKROOT=$2; shift 2 ;;
    -j|--json) JSON=$2; shift 2 ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "scale.sh: unknown option $1 (try --help)" >&2; exit 2 ;;
  esac
done

find_bin() {  # find_bin NAME SUBDIR
  for b in "$ROOT"/build/"$2"/"$1" "$ROOT"/build*/"$2"/"$1"; do
    [ -x "$b" ] && { echo "$b"; return; }
  done
  command -v "$1" || { echo "scale.sh: $1 not found; build first or set it" >&2; exit 1; }
}
SCRIBEFS=${SCRIBEFS:-$(find_bin scribefs daemon)}
SCRIBECTL=${SCRIBECTL:-$(find_bin scribectl tools)}
for tool in fusermount3 python3 cc curl; do
  command -v "$tool" >/dev/null || { echo "scale.sh: $tool not found" >&2; exit 1; }
done
[ "$(id -u)" = 0 ] || { echo "scale.sh: run as root (the daemon mounts)" >&2; exit 1; }

W=$(mktemp -d "$WORKROOT/scribefs-scale-bench.XXXXXX")
MOUNTS=()
cleanup() {
  set +e
  for m in "${MOUNTS[@]}"; do
    grep -q " $m fuse" /proc/self/mounts && { fusermount3 -u "$m" || fusermount3 -uz "$m"; }
  done
  sleep 0.5
  rm -rf "$W"
}
trap cleanup EXIT

cc -O2 -o "$W/smallfiles" "$HERE/smallfiles.c"
: >"$JSON"

now_ns() { date +%s%N; }
ms() { python3 -c "print(f'{($2 - $1) / 1e6:.1f}')" "$1" "$2"; }
daemon_pid() { tr -d '\n' <"$1/lock"; }
status_kb() { awk -v k="$2:" '$1 == k {print $2}' "/proc/$1/status"; }
journal_bytes() {
  local b=0 f
  for f in "$1/journal.db" "$1/journal.db-wal"; do
    [ -f "$f" ] && b=$((b + $(stat -c %s "$f")))
  done
  echo "$b"
}
PORT=$((20000 + RANDOM % 20000))
inodes() {  # the inode-table gauges "cached active", or "- -"
  curl -s --max-time "$QTIMEOUT" "http://127.0.0.1:$1/metrics" |
    awk '$1 == "scribefs_inode_table_inodes" {c = $2}
         $1 == "scribefs_inode_table_active_inodes" {a = $2}
         END {print (c == "" ? "-" : c), (a == "" ? "-" : a)}'
}
# median_ms CMD...: three runs, the median in ms ("timeout" past --query-timeout).
median_ms() {
  local runs=() t0 t1 i
  for i in 1 2 3; do
    t0=$(now_ns)
    if ! timeout "$QTIMEOUT" "$@" >/dev/null 2>&1; then echo timeout; return; fi
    t1=$(now_ns)
    runs+=("$(ms "$t0" "$t1")")
  done
  printf '%s\n' "${runs[@]}" | sort -n | sed -n 2p
}
queries() {  # queries STATE -> "status stats journal" medians
  echo "$(median_ms "$SCRIBECTL" --state-dir "$1" status)" \
    "$(median_ms "$SCRIBECTL" --state-dir "$1" stats)" \
    "$(median_ms "$SCRIBECTL" --state-dir "$1" journal --path 'd500/*' --limit 10)"
}
stop() {  # stop STATE MNT: unmount and wait for the daemon to exit
  local pid
  pid=$(daemon_pid "$1")
  fusermount3 -u "$2"
  for _ in $(seq 1 3000); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.1; done
  echo "scale.sh: daemon $pid did not exit" >&2
  exit 1
}
start() {  # start STATE DATA MNT PORT [ARGS...]: prints ns from exec to serving
  local state=$1 data=$2 mnt=$3 port=$4 t0 t1
  shift 4
  t0=$(now_ns)
  # shellcheck disable=SC2086
  "$SCRIBEFS" --state-dir "$state" --metrics-listen "127.0.0.1:$port" ${SCRIBEFS_OPTS:-} "$@" \
    "$data" "$mnt" >&2
  t1=$(now_ns)
  echo $((t1 - t0))
}
emit() { echo "$1" >>"$JSON"; echo "$1"; }

run_part() {  # run_part journal|file
  local kind=$1 d=$W/$1-data m=$W/$1-mnt s=$W/$1-state port=$((PORT + ${#MOUNTS[@]}))
  local args=() pid rss0 ino0 made rss hwm ino active jb flush_ms serve recon q1 q2 q3
  mkdir -p "$d" "$m"
  MOUNTS+=("$m")
  [ "$kind" = file ] && args=(--target "file://$W/file-target")
  start "$s" "$d" "$m" "$port" "${args[@]}" >/dev/null
  pid=$(daemon_pid "$s")
  rss0=$(status_kb "$pid" VmRSS)
  read -r ino0 _ < <(inodes "$port")
  echo "$kind: creating $FILES files through the mount ..." >&2
  made=$("$W/smallfiles" create "$m" "$FILES" 1000 "$SIZE")
  echo "  $made" >&2
  flush_ms=null
  if [ "$kind" = file ]; then
    local t0 t1
    t0=$(now_ns)
    "$SCRIBECTL" --state-dir "$s" flush --timeout 7200 >/dev/null
    t1=$(now_ns)
    flush_ms=$(ms "$t0" "$t1")
  fi
  rss=$(status_kb "$pid" VmRSS)
  hwm=$(status_kb "$pid" VmHWM)
  read -r ino active < <(inodes "$port")
  jb=$(journal_bytes "$s")
  read -r q1 q2 q3 < <(queries "$s")
  local per=null
  if [ "$ino" != - ] && [ "$ino0" != - ] && [ "$ino" -gt "$ino0" ]; then
    per=$(((rss - rss0) * 1024 / (ino - ino0)))
  fi
  emit "{\"part\":\"$kind\",\"files\":$FILES,\"create\":\"$made\",\"flush_ms\":$flush_ms,\"rss_kb_before\":$rss0,\"rss_kb\":$rss,\"rss_anon_kb\":$(status_kb "$pid" RssAnon),\"hwm_kb\":$hwm,\"inodes\":\"$ino\",\"active_inodes\":\"$active\",\"bytes_per_inode\":$per,\"journal_bytes\":$jb,\"status_ms\":\"$q1\",\"stats_ms\":\"$q2\",\"journal_path_ms\":\"$q3\"}"
  if [ "$kind" = file ]; then
    stop "$s" "$m"
    sync
    echo "$kind: starting again (start-up reconciliation) ..." >&2
    local loads0
    loads0=$(grep -c 'history: timeline loaded' "$s/scribefs.log" || true)
    serve=$(start "$s" "$d" "$m" "$port" "${args[@]}")
    recon=$(grep -o 'start-up reconciliation.*entries in [0-9.]* s' "$s/scribefs.log" | tail -1 |
      sed -E 's/.*: ([0-9]+) entries in ([0-9.]+) s/\1 \2/')
    pid=$(daemon_pid "$s")
    rss=$(status_kb "$pid" VmRSS)
    read -r q1 q2 q3 < <(queries "$s")
    # History loads the stored timeline (every stored path) in the
    # background after serving starts: its RSS once that is done.
    local loaded_ms=null t2
    t2=$(now_ns)
    for _ in $(seq 1 6000); do
      if [ "$(grep -c 'history: timeline loaded' "$s/scribefs.log" || true)" -gt "$loads0" ]; then
        loaded_ms=$(ms "$t2" "$(now_ns)")
        break
      fi
      sleep 0.1
    done
    emit "{\"part\":\"file-restart\",\"files\":$FILES,\"serving_ms\":$(ms 0 "$serve"),\"reconciled\":\"${recon% *}\",\"reconcile_s\":\"${recon#* }\",\"rss_kb\":$rss,\"history_loaded_after_queries_ms\":$loaded_ms,\"rss_kb_history_loaded\":$(status_kb "$pid" VmRSS),\"rss_anon_kb\":$(status_kb "$pid" RssAnon),\"hwm_kb\":$(status_kb "$pid" VmHWM),\"status_ms\":\"$q1\",\"stats_ms\":\"$q2\",\"journal_path_ms\":\"$q3\"}"
  fi
  stop "$s" "$m"
}

for part in ${PARTS//,/ }; do
  case "$part" in
    journal|file) run_part "$part" ;;
    *) echo "scale.sh: --parts journal,file" >&2; exit 2 ;;
  esac
done
