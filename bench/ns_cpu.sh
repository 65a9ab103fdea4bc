#!/usr/bin/env bash
# ns_cpu.sh - daemon CPU per 1,000 namespace operations (create + 4 KiB + close,
# and unlink), A/B between scribefs binaries, interleaved (A, B, A, B, ...).
#
# usage: bench/ns_cpu.sh [-n FILES] [-r ROUNDS] [-w WORKDIR] LABEL=BINARY [LABEL=BINARY...]
#   e.g. bench/ns_cpu.sh -n 5000 -r 3 old=/work/wt/perf-old/build/fs/scribefs \
#                                       new=build/daemon/scribefs
#
# Why CPU and not files/s: on a shared machine the wall clock measures the
# neighbours; the CPU time the daemon spends (utime + stime of all its threads,
# from /proc/PID/stat) for a fixed workload does not depend much on them.
# Each round mounts every binary afresh, journal-only (no --target: the
# uploader costs nothing), in a fresh DATADIR and state dir, then runs
# bench/smallfiles.c's create phase (FILES files of 4 KiB in 10 directories)
# and its delete phase (unlink every file, rmdir every directory) and reads the
# daemon's CPU before and after each phase (after a 0.3 s pause, so that the
# deferred close records are committed inside the figure). The order of the
# binaries rotates each round.
#
# Prints one line per (round, binary) with the daemon's CPU per 1,000 files and
# its context switches per 1,000 creates, then the median CPU per binary:
#   LABEL create_ms_per_1k=...  delete_ms_per_1k=...
# Extra daemon options: SCRIBEFS_OPTS="--xattr on". Needs root, fusermount3, cc.
set -euo pipefail

NFILES=5000
ROUNDS=3
WORK_PARENT=/var/tmp
die() { echo "ns_cpu: $*" >&2; exit 2; }
while [[ $# -gt 0 ]]; do
  case $1 in
    -n) NFILES=${2:?}; shift 2 ;;
    -r) ROUNDS=${2:?}; shift 2 ;;
    -w) WORK_PARENT=${2:?}; shift 2 ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'; exit 0 ;;
    *=*) break ;;
    *) die "unknown argument: $1" ;;
  esac
done
[[ $# -ge 1 ]] || die "give at least one LABEL=BINARY"
[[ $(id -u) -eq 0 ]] || die "run as root"
LABELS=() BINS=()
for a in "$@"; do
  LABELS+=("${a%%=*}")
  b=$(realpath "${a#*=}") || die "no binary ${a#*=}"
  [[ -x $b ]] || die "not executable: $b"
  BINS+=("$b")
done
read -r -a OPTS <<<"${SCRIBEFS_OPTS:-}"

T=$(mktemp -d "$WORK_PARENT/ns_cpu.XXXXXX")
MNT=""
cleanup() {
  [[ -n $MNT ]] && { fusermount3 -u "$MNT" 2>/dev/null || umount -l "$MNT" 2>/dev/null || true; }
  rm -rf "$T"
}
trap cleanup EXIT
cc -O2 -o "$T/smallfiles" "$(dirname "$0")/smallfiles.c"
HZ=$(getconf CLK_TCK)
cpu_s() { awk -v hz="$HZ" '{ sub(/.*\) /, ""); printf "%.3f\n", ($12 + $13) / hz }' "/proc/$1/stat"; }
# Context switches of the daemon's live threads so far (voluntary + not):
# less sensitive to the load than CPU time (a wake-up is one whatever the
# load). Threads that exit take their counts with them (libfuse ends idle
# workers, mostly after the create phase), so only the create phase's figure
# is printed.
ctx() { cat /proc/"$1"/task/*/status 2>/dev/null | awk '/ctxt_switches/ { n += $2 } END { print n + 0 }'; }
per_1k() { awk -v a="$1" -v b="$2" -v n="$NFILES" 'BEGIN { printf "%.1f", (b - a) * 1e6 / n }'; }

RESULTS=$T/results
: >"$RESULTS"
n=${#BINS[@]}
for ((r = 0; r < ROUNDS; r++)); do
  for ((k = 0; k < n; k++)); do
    i=$(((k + r) % n))
    d=$T/r$r-$i
    mkdir -p "$d/data" "$d/mnt" "$d/state"
    MNT=$d/mnt
    "${BINS[$i]}" "${OPTS[@]}" --state-dir "$d/state" "$d/data" "$MNT"
    pid=$(tr -d '[:space:]' <"$d/state/lock")
    sleep 0.3
    c0=$(cpu_s "$pid") x0=$(ctx "$pid")
    mkdir "$MNT/t"
    "$T/smallfiles" create "$MNT/t" "$NFILES" 10 >/dev/null
    sleep 0.3
    c1=$(cpu_s "$pid") x1=$(ctx "$pid")
    "$T/smallfiles" delete "$MNT/t" "$NFILES" 10 >/dev/null
    sleep 0.3
    c2=$(cpu_s "$pid")
    fusermount3 -u "$MNT"
    MNT=""
    while kill -0 "$pid" 2>/dev/null; do sleep 0.1; done
    cr=$(per_1k "$c0" "$c1") de=$(per_1k "$c1" "$c2")
    xc=$(((x1 - x0) * 1000 / NFILES))
    echo "round=$r label=${LABELS[$i]} create_ms_per_1k=$cr delete_ms_per_1k=$de" \
      "create_ctxsw_per_1k=$xc load1=$(cut -d' ' -f1 /proc/loadavg)"
    echo "${LABELS[$i]} $cr $de" >>"$RESULTS"
    rm -rf "$d"
  done
done
echo "medians over $ROUNDS rounds, $NFILES files (daemon CPU ms per 1,000 files):"
for l in "${LABELS[@]}"; do
  awk -v l="$l" '$1 == l { c[++n] = $2; d[n] = $3 }
    function med(a, n,   i, j, t) { for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++)
        if (a[j] < a[i]) { t = a[i]; a[i] = a[j]; a[j] = t }
      return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2 }
    END { printf "%s create_ms_per_1k=%.1f delete_ms_per_1k=%.1f\n", l, med(c, n), med(d, n) }' "$RESULTS"
done
