#!/usr/bin/env bash
# fs_overhead.sh - what scribefs costs compared with the bare directory.
#
# Runs the workloads of bench/workloads/*.fio and bench/smallfiles.c on a native
# directory and through scribefs (scribefs DATADIR MOUNTPOINT, DATADIR beside the
# native directory on the same filesystem) in the same run, takes the median of
# --runs runs of each, and prints a Markdown table of scribefs/native ratios
# (throughput; files/s for the small-file phases) with the machine facts and
# the exact command. The raw figures of every run go to a JSON file.
#
# With --passthrough-hp BINARY, libfuse 3.14's example/passthrough_hp (build it
# with bench/build_passthrough_hp.sh) is a third side in the same run: mounted
# as BINARY --foreground [PASSTHROUGH_HP_OPTS] SOURCE MOUNTPOINT, SOURCE beside
# the others, it runs every workload as the scribefs side does, and the report
# adds its ratio to native and whether scribefs is at or above it. Without it
# the run is the same as before and a note on stderr says how to add it.
#
# usage: bench/fs_overhead.sh [options]
#   -n, --runs N        runs per workload and side (default 3; the median is reported)
#   -w, --workdir DIR   parent of the temporary work dir (default /var/tmp); the native
#                       dir, scribefs' DATADIR, MOUNTPOINT and state dir all live under it
#   -j, --json FILE     raw figures (default ./fs_overhead.json)
#       --xattr-both    run the scribefs side twice: --xattr on and --xattr off
#       --cold          add the cold sequential read (drops the page cache of the whole
#                       machine before each run: echo 3 > /proc/sys/vm/drop_caches)
#       --only LIST     comma list of workloads (default: all):
#                       seqwrite,seqwrite-cached,randwrite,seqread-warm,create,stat,delete
#                       (create, stat and delete are the three phases of one smallfiles run)
#       --files N       small files (default 20000, in 100 dirs; with --passthrough-hp at
#                       most the hard open-file limit - 300, see below)
#       --keep          keep the work dir (for inspection; it holds ~3.5 GiB per side)
#       --passthrough-hp BINARY
#                       add the passthrough_hp side (default: $PASSTHROUGH_HP, else none)
#   -h, --help
# environment:
#   SCRIBEFS       the daemon binary (default: build*/daemon/scribefs next to this script, then PATH)
#   SCRIBEFS_OPTS  extra daemon options, word-split, e.g. SCRIBEFS_OPTS="--xattr off"
#   SCRIBEFS_REVISION  what to report as the daemon's revision (default: git describe
#                  of this checkout, right only if SCRIBEFS was built from it as it is)
#   PASSTHROUGH_HP the passthrough_hp binary, as --passthrough-hp
#   PASSTHROUGH_HP_OPTS  extra passthrough_hp options, word-split (default none: its own
#                  defaults, i.e. writeback cache, splice, 1-day entry/attr timeouts)
#   FIO            fio binary (default fio);  CC  C compiler for smallfiles.c (default cc)
# needs: root (the daemon mounts; --cold writes drop_caches), fio, fusermount3, python3, cc.
#
# The fio usage notes are followed exactly: files are laid out untimed with
# --create_only=1 (through the mount for scribefs, so it is journaled like any
# other write); 'sync' before every timed fio run and every smallfiles create
# (the seqwrite-cached note asks for it; for the others it keeps one run's
# writeback out of the next); the warm read
# warms the *backing* file (native: the file itself; scribefs: DATADIR/seqread.dat)
# with cat and runs natively with --invalidate=0; the cold read drops caches first.
# Sides run interleaved within each workload, in an order rotated per run, so
# drift on a shared machine hits every side alike.
#
# ext4 note: the native dir and every DATADIR get the ext4 "top directory"
# flag (chattr +T), so each smallfiles tree is placed in fresh block groups.
# Without it, on ext4 mounted without a journal (as on the machine of
# bench/README.md), a create run that lands in groups where files were deleted
# up to minutes before (the previous side's delete phase) scans past every
# recently freed inode: 4,000 instead of 70,000 files/s natively, and the
# same penalty through scribefs, which turns the ratio into noise.
#
# passthrough_hp daemonizes before it mounts, so it runs with --foreground in
# the background (its pid is the process whose CPU time is counted) and the
# script waits until findmnt shows its mount (fstype fuse, source hpps).
#
# passthrough_hp's file descriptor limit: libfuse 3.14's passthrough_hp keeps
# one open descriptor (O_PATH) per inode the kernel knows, and the kernel keeps
# every file of a smallfiles run in its cache until the delete phase, so that
# workload needs --files + 100 dirs + a margin of 200 (the fio files, the
# daemon's own) descriptors at once. passthrough_hp is started with its soft
# RLIMIT_NOFILE raised to the hard one (ulimit -Sn "$(ulimit -Hn)"; it does the
# same itself), but no higher: where the hard limit is below the need (e.g.
# 20000 in a container, where prlimit fails with EPERM), the default --files
# 20000 would fail in the create phase with EMFILE, so the script refuses to
# start and names the largest --files that fits (hard limit - 300), or raise
# the hard limit as root outside a container. Not checked when --only leaves
# out create, stat and delete. A smallfiles or fio failure on the passthrough_hp
# side, or an ERROR line in its log after a smallfiles phase, ends the run with
# its open descriptor count, its limit and the tail of its log in the message.
#
# scribefs and passthrough_hp are always unmounted on exit (trap), and the
# script fails if a mount is left behind.
set -euo pipefail

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_DIR=$(cd "$BENCH_DIR/.." && pwd)
WL_DIR=$BENCH_DIR/workloads
ORIG_CMD=$(printf '%q ' "$0" "$@")
ORIG_CMD=${ORIG_CMD% }

RUNS=3
WORK_PARENT=/var/tmp
JSON_OUT=$PWD/fs_overhead.json
XATTR_BOTH=0
COLD=0
KEEP=0
NFILES=20000
NDIRS=100
PHP=${PASSTHROUGH_HP:-}
PHP_FD_MARGIN=200   # descriptors passthrough_hp needs beyond files + dirs
PHP_FD_NEED=0       # set below when passthrough_hp runs smallfiles
ALL_WORKLOADS="seqwrite,seqwrite-cached,randwrite,seqread-warm,create,stat,delete"
ONLY=$ALL_WORKLOADS

die() { echo "fs_overhead: $*" >&2; exit 2; }
log() { echo "[$(date +%T)] $*" >&2; }
usage() { sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d' | sed 's/^# \{0,1\}//'; }

while [[ $# -gt 0 ]]; do
  case $1 in
    -n|--runs) RUNS=${2:?}; shift 2 ;;
    -w|--workdir) WORK_PARENT=${2:?}; shift 2 ;;
    -j|--json) JSON_OUT=${2:?}; shift 2 ;;
    --xattr-both) XATTR_BOTH=1; shift ;;
    --cold) COLD=1; shift ;;
    --only) ONLY=${2:?}; shift 2 ;;
    --files) NFILES=${2:?}; shift 2 ;;
    --keep) KEEP=1; shift ;;
    --passthrough-hp) PHP=${2:?}; shift 2 ;;
    -h|--help) usage; exit 0 ;;
    *) usage >&2; die "unknown argument: $1" ;;
  esac
done
[[ $RUNS =~ ^[1-9][0-9]*$ ]] || die "--runs must be a positive integer"
[[ $NFILES =~ ^[1-9][0-9]*$ ]] || die "--files must be a positive integer"
[[ $JSON_OUT = /* ]] || JSON_OUT=$PWD/$JSON_OUT
IFS=, read -r -a WANT <<<"$ONLY"
for w in "${WANT[@]}"; do
  [[ ",$ALL_WORKLOADS,seqread-cold," == *",$w,"* ]] || die "unknown workload in --only: $w"
done
((COLD)) && WANT+=(seqread-cold)
wants() { local w; for w in "${WANT[@]}"; do [[ $w == "$1" ]] && return 0; done; return 1; }

[[ $(id -u) -eq 0 ]] || die "run as root (the daemon mounts with allow_other semantics; --cold drops caches)"
FIO=${FIO:-fio}
CC=${CC:-cc}
command -v "$FIO" >/dev/null || die "fio not found (apt-get install -y fio)"
command -v fusermount3 >/dev/null || die "fusermount3 not found (apt-get install -y fuse3)"
command -v python3 >/dev/null || die "python3 not found"
if [[ -z ${SCRIBEFS:-} ]]; then
  for c in "$REPO_DIR"/build/daemon/scribefs "$REPO_DIR"/build*/daemon/scribefs; do
    [[ -x $c ]] && { SCRIBEFS=$c; break; }
  done
  [[ -n ${SCRIBEFS:-} ]] || SCRIBEFS=$(command -v scribefs || true)
fi
[[ -n ${SCRIBEFS:-} && -x $SCRIBEFS ]] ||
  die "scribefs binary not found: build it (cmake -S . -B build && make -C build scribefs) or set SCRIBEFS"
SCRIBEFS=$(realpath "$SCRIBEFS")
read -r -a BASE_OPTS <<<"${SCRIBEFS_OPTS:-}"
if [[ -n $PHP ]]; then
  [[ -x $PHP && -f $PHP ]] || die "passthrough_hp binary not found or not executable: $PHP"
  PHP=$(realpath "$PHP")
  read -r -a PHP_OPTS <<<"${PASSTHROUGH_HP_OPTS:-}"
  # Descriptors passthrough_hp needs (see the header note); checked before
  # anything is mounted or run.
  if wants create || wants stat || wants delete; then
    PHP_FD_NEED=$((NFILES + NDIRS + PHP_FD_MARGIN))
    PHP_FD_HARD=$(ulimit -Hn)
    if [[ $PHP_FD_HARD != unlimited ]] && ((PHP_FD_NEED > PHP_FD_HARD)); then
      die "passthrough_hp keeps one open file descriptor per inode the kernel knows: the smallfiles \
workload (create,stat,delete) needs about $PHP_FD_NEED ($NFILES files + $NDIRS dirs + $PHP_FD_MARGIN for the fio \
files and its own), but the hard limit on open files (ulimit -Hn) is $PHP_FD_HARD, and passthrough_hp's soft \
limit can only be raised up to it. Use --files N with N <= $((PHP_FD_HARD - NDIRS - PHP_FD_MARGIN)), or raise the \
hard limit as root outside a container (e.g. ulimit -Hn $PHP_FD_NEED in the shell that starts this script; in a \
container that and prlimit fail with EPERM), or leave create,stat,delete out of --only."
    fi
  fi
else
  echo "fs_overhead: note: the passthrough_hp reference was not run; to add it: bench/build_passthrough_hp.sh LIBFUSE_SRC /tmp/php/passthrough_hp, then --passthrough-hp /tmp/php/passthrough_hp" >&2
fi

# ---- sides -----------------------------------------------------------------
# native + one scribefs variant (or two with --xattr-both), each with its own
# DATADIR/MOUNTPOINT/state dir, + passthrough_hp if asked for (its SOURCE is
# DATA[passthrough_hp]), all mounted for the whole run.
SIDES=(native)
declare -A SIDE_OPTS=()
if ((XATTR_BOTH)); then
  SIDES+=(xattr-on xattr-off)
  SIDE_OPTS[xattr-on]="--xattr on"
  SIDE_OPTS[xattr-off]="--xattr off"
else
  SIDES+=(scribefs)
  SIDE_OPTS[scribefs]=""
fi
SCRIBEFS_SIDES=("${SIDES[@]:1}")
[[ -n $PHP ]] && SIDES+=(passthrough_hp)

mkdir -p "$WORK_PARENT"
T=$(mktemp -d "$(realpath "$WORK_PARENT")/scribefs-bench.XXXXXX")
RAW=$T/raw.jsonl
: >"$RAW"
declare -A DIR=() DATA=() STATE=() PID=()
MOUNTED=()

is_mounted() { findmnt -n -M "$1" >/dev/null 2>&1; }

# True once process $1 is gone (or a zombie: it is a child of this shell).
pid_gone() { [[ ! -r /proc/$1/stat ]] || [[ $(sed 's/.*) //' "/proc/$1/stat" 2>/dev/null | cut -d' ' -f1) == Z ]]; }

unmount_side() {  # side
  local s=$1 mnt=${DIR[$1]} i
  if is_mounted "$mnt"; then
    for i in $(seq 1 20); do
      fusermount3 -u "$mnt" 2>/dev/null && break
      sleep 0.5
    done
    if is_mounted "$mnt"; then
      echo "fs_overhead: $mnt still busy; SIGTERM to the daemon (pid ${PID[$s]:-?})" >&2
      [[ -n ${PID[$s]:-} ]] && kill -TERM "${PID[$s]}" 2>/dev/null || true
      sleep 2
      is_mounted "$mnt" && { umount -l "$mnt" 2>/dev/null || true; }
    fi
  fi
  if [[ $s == passthrough_hp ]]; then
    # Its loop ends with the unmount, and the process with it.
    [[ -n ${PID[$s]:-} ]] || return 0
    for i in $(seq 1 120); do
      pid_gone "${PID[$s]}" && { wait "${PID[$s]}" 2>/dev/null || true; return 0; }
      ((i == 60)) && { kill -TERM "${PID[$s]}" 2>/dev/null || true; }
      sleep 0.5
    done
    echo "fs_overhead: passthrough_hp (pid ${PID[$s]}) did not exit" >&2
    return 1
  fi
  # The daemon holds STATE/lock until its journal is closed.
  for i in $(seq 1 120); do
    flock -n "${STATE[$s]}/lock" true 2>/dev/null && return 0
    sleep 0.5
  done
  echo "fs_overhead: the daemon of $s (pid ${PID[$s]:-?}) did not exit" >&2
  return 1
}

cleanup() {
  local rc=$? s leftover=0
  trap - EXIT INT TERM
  cd /
  for s in "${MOUNTED[@]}"; do unmount_side "$s" || true; done
  for s in "${MOUNTED[@]}"; do
    if is_mounted "${DIR[$s]}"; then
      echo "fs_overhead: BUG: ${DIR[$s]} is still mounted" >&2
      leftover=1
    fi
  done
  if ((KEEP)) || ((leftover)); then
    echo "fs_overhead: work dir kept: $T" >&2
  else
    rm -rf "$T"
  fi
  ((leftover)) && rc=1
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# Free space: ~2.3 GiB of laid-out files per side, plus the 1 GiB seqwrite file.
need_kb=$(( ${#SIDES[@]} * 3500 * 1024 ))
avail_kb=$(df -Pk "$T" | awk 'NR==2 {print $4}')
((avail_kb > need_kb)) || die "not enough space in $T: ${avail_kb} KiB free, ~${need_kb} KiB needed"

LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
log "work dir $T (runs=$RUNS, sides: ${SIDES[*]}, load average $LOAD_START)"
"$CC" -O2 -o "$T/smallfiles" "$BENCH_DIR/smallfiles.c"

# chattr +T: see the ext4 note at the top. Harmless where unsupported.
TOPDIR=no
topdir() { chattr +T "$1" 2>/dev/null && TOPDIR=yes || true; }
DIR[native]=$T/native
mkdir -p "${DIR[native]}"
topdir "${DIR[native]}"
for s in "${SCRIBEFS_SIDES[@]}"; do
  DATA[$s]=$T/data-$s
  DIR[$s]=$T/mnt-$s
  STATE[$s]=$T/state-$s   # outside DATADIR, as the daemon requires
  mkdir -p "${DATA[$s]}" "${DIR[$s]}"
  topdir "${DATA[$s]}"
  read -r -a extra <<<"${SIDE_OPTS[$s]}"
  log "mount $s: $SCRIBEFS ${BASE_OPTS[*]} ${extra[*]} --state-dir ${STATE[$s]} ${DATA[$s]} ${DIR[$s]}"
  MOUNTED+=("$s")  # before mounting: a half-started daemon is cleaned up too
  # Without -f the daemon forks and returns once the mount serves. Its
  # "scribefs: mounted ..." line goes to stderr with the progress, not into the
  # report on stdout (the daemon points its own stdout at /dev/null once up).
  "$SCRIBEFS" "${BASE_OPTS[@]}" "${extra[@]}" --state-dir "${STATE[$s]}" "${DATA[$s]}" "${DIR[$s]}" >&2
  PID[$s]=$(tr -d '[:space:]' <"${STATE[$s]}/lock")
  [[ $(findmnt -n -o FSTYPE -M "${DIR[$s]}") == fuse.scribefs ]] || die "$s: no scribefs mount on ${DIR[$s]}"
done
if [[ -n $PHP ]]; then
  s=passthrough_hp
  DATA[$s]=$T/data-$s   # its SOURCE, beside the native dir and the DATADIRs
  DIR[$s]=$T/mnt-$s
  mkdir -p "${DATA[$s]}" "${DIR[$s]}"
  topdir "${DATA[$s]}"
  log "mount $s: $PHP --foreground ${PHP_OPTS[*]} ${DATA[$s]} ${DIR[$s]}"
  MOUNTED+=("$s")
  # Without --foreground it forks before it mounts (fuse_daemonize), leaving no
  # pid to wait for or to count CPU time of: keep it as a child instead. The
  # subshell raises the soft limit on open files to the hard one (see the
  # header note) and execs it, so $! is passthrough_hp's own pid.
  (ulimit -Sn "$(ulimit -Hn)" && exec "$PHP" --foreground "${PHP_OPTS[@]}" "${DATA[$s]}" "${DIR[$s]}") \
    </dev/null >"$T/passthrough_hp.log" 2>&1 &
  PID[$s]=$!
  for i in $(seq 1 100); do
    is_mounted "${DIR[$s]}" && break
    pid_gone "${PID[$s]}" && { cat "$T/passthrough_hp.log" >&2; die "passthrough_hp exited before it mounted"; }
    sleep 0.1
  done
  [[ $(findmnt -n -r -o FSTYPE,SOURCE -M "${DIR[$s]}") == "fuse hpps" ]] ||
    { cat "$T/passthrough_hp.log" >&2; die "$s: no passthrough_hp mount on ${DIR[$s]} after 10 s"; }
  PHP_FD_SOFT=$(awk '/^Max open files/ {print $4}' "/proc/${PID[$s]}/limits")
  log "$s: pid ${PID[$s]}, open file limit $PHP_FD_SOFT$( ((PHP_FD_NEED)) && echo " (smallfiles needs about $PHP_FD_NEED)")"
  [[ $PHP_FD_SOFT == unlimited ]] || ((PHP_FD_SOFT >= PHP_FD_NEED)) ||
    die "$s: its open file limit is $PHP_FD_SOFT, below the $PHP_FD_NEED descriptors smallfiles needs (see --help)"
fi

# die; when the failure is on passthrough_hp's side, with its descriptor count
# and the end of its log. Running out of descriptors need not be logged: its
# flush is close(dup(fh)), so at the limit the application's close() fails
# with EBADF ("close: Bad file descriptor") and the log stays empty.
die_side() {  # side message
  local s=$1 pid state fds lim tail_
  shift
  [[ $s == passthrough_hp ]] || die "$*"
  pid=${PID[$s]}
  if pid_gone "$pid"; then
    state="pid $pid, exited"
  else
    fds=$(find "/proc/$pid/fd" -mindepth 1 -maxdepth 1 2>/dev/null | wc -l)
    lim=$(awk '/^Max open files/ {print $4}' "/proc/$pid/limits" 2>/dev/null)
    state="pid $pid, $fds open file descriptors, limit $lim"
    [[ $lim =~ ^[0-9]+$ ]] && ((fds + 50 >= lim)) &&
      state="$state: out of descriptors, see the note on its descriptor limit in --help"
  fi
  tail_=$(tail -n 20 "$T/passthrough_hp.log" 2>/dev/null | sed 's/^/  | /')
  die "$* ($state); its log, last 20 lines:
${tail_:-  (empty)}"
}

# Where a side's files really live (the warm read warms this file).
backing() { if [[ $1 == native ]]; then echo "${DIR[native]}"; else echo "${DATA[$1]}"; fi; }

# Daemon CPU seconds so far (all threads); 0 for native.
daemon_cpu() {
  local s=$1
  [[ $s == native ]] && { echo 0; return; }
  awk -v hz="$(getconf CLK_TCK)" '{ sub(/.*\) /, ""); printf "%.3f\n", ($12 + $13) / hz }' \
    "/proc/${PID[$s]}/stat"
}

cpu_diff() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", b - a }'; }

sync2() { sync; sync; }  # twice: FUSE writeback reaches the backing fs during the first

# Sides in the order for run r (rotated, so no side always goes first).
order() {
  local r=$1 n=${#SIDES[@]} i
  for ((i = 0; i < n; i++)); do echo "${SIDES[$(((i + r) % n))]}"; done
}

record() {  # workload side run value extra-json-fields
  printf '{"workload":"%s","side":"%s","run":%s,"value":%s,"load1":%s%s}\n' "$1" "$2" "$3" "$4" \
    "$(cut -d' ' -f1 /proc/loadavg)" "${5:+,$5}" >>"$RAW"
}

# run_fio workload side run job-file metric(bw|iops) ddir(read|write) [fio args...]
run_fio() {
  local wl=$1 s=$2 r=$3 job=$4 metric=$5 ddir=$6
  shift 6
  local out=$T/fio-$wl-$s-$r.json c0 c1 v
  c0=$(daemon_cpu "$s")
  if ! DIR=${DIR[$s]} "$FIO" --output-format=json --output="$out" "$@" "$WL_DIR/$job"; then
    cat "$out" >&2 || true
    die_side "$s" "fio $job failed on $s"
  fi
  c1=$(daemon_cpu "$s")
  v=$(python3 - "$out" "$metric" "$ddir" <<'PY'
import json, sys
j = json.load(open(sys.argv[1]))
job = j["jobs"][0]
if job.get("error"):
    sys.exit("fio job error %s" % job["error"])
d = job[sys.argv[3]]
if sys.argv[2] == "iops":
    print("%.1f %d %d %.1f" % (d["iops"], d["io_bytes"], d["runtime"], d["bw_bytes"] / 1048576))
else:
    print("%.2f %d %d %.1f" % (d["bw_bytes"] / 1048576, d["io_bytes"], d["runtime"], d["iops"]))
PY
  )
  read -r value io_bytes runtime_ms other <<<"$v"
  record "$wl" "$s" "$r" "$value" \
    "\"io_bytes\":$io_bytes,\"runtime_ms\":$runtime_ms,\"daemon_cpu_s\":$(cpu_diff "$c0" "$c1")"
  log "  $wl $s run $r: $value"
}

layout() {  # job-file: lay the file out untimed on every side
  local s
  for s in "${SIDES[@]}"; do
    DIR=${DIR[$s]} "$FIO" --output-format=json --output="$T/layout.json" --create_only=1 "$WL_DIR/$1" ||
      die_side "$s" "layout of $1 failed on $s"
  done
}

# ---- workloads ---------------------------------------------------------------
if wants seqwrite; then
  log "seqwrite: 1 GiB, 1 MiB blocks, fsync at end"
  for ((r = 1; r <= RUNS; r++)); do
    for s in $(order "$r"); do
      sync2
      run_fio seqwrite "$s" "$r" seqwrite.fio bw write
    done
  done
fi

if wants seqwrite-cached; then
  log "seqwrite-cached: 10 s overwrite of a 1 GiB file in page cache"
  layout seqwrite-cached.fio
  for ((r = 1; r <= RUNS; r++)); do
    for s in $(order "$r"); do
      sync2
      run_fio seqwrite-cached "$s" "$r" seqwrite-cached.fio bw write
    done
  done
  sync2
  for s in "${SIDES[@]}"; do rm -f "${DIR[$s]}/overwrite.dat"; done
fi

if wants randwrite; then
  log "randwrite: 15 s of 4 KiB random buffered writes into 256 MiB"
  layout randwrite.fio
  for ((r = 1; r <= RUNS; r++)); do
    for s in $(order "$r"); do
      sync2
      run_fio randwrite "$s" "$r" randwrite.fio iops write
    done
  done
  sync2
  for s in "${SIDES[@]}"; do rm -f "${DIR[$s]}/randwrite.dat"; done
fi

if wants seqread-warm || wants seqread-cold; then
  layout seqread.fio
fi

if wants seqread-warm; then
  log "seqread-warm: 10 s of 1 MiB sequential reads, backing file in page cache"
  for ((r = 1; r <= RUNS; r++)); do
    for s in $(order "$r"); do
      sync2
      cat "$(backing "$s")/seqread.dat" >/dev/null
      if [[ $s == native ]]; then
        run_fio seqread-warm "$s" "$r" seqread-warm.fio bw read --invalidate=0
      else
        run_fio seqread-warm "$s" "$r" seqread-warm.fio bw read
      fi
    done
  done
fi

if wants seqread-cold; then
  log "seqread-cold: one pass over 1 GiB after drop_caches"
  for ((r = 1; r <= RUNS; r++)); do
    for s in $(order "$r"); do
      sync2
      echo 3 >/proc/sys/vm/drop_caches
      run_fio seqread-cold "$s" "$r" seqread.fio bw read
    done
  done
fi
if wants seqread-warm || wants seqread-cold; then
  for s in "${SIDES[@]}"; do rm -f "${DIR[$s]}/seqread.dat"; done
fi

if wants create || wants stat || wants delete; then
  log "smallfiles: create + write 4 KiB + close $NFILES files in $NDIRS dirs, stat all, delete all"
  for ((r = 1; r <= RUNS; r++)); do
    for s in $(order "$r"); do
      d=${DIR[$s]}/smallfiles-$r
      mkdir "$d"
      sync2
      # The three phases back to back, as smallfiles.c describes them.
      for phase in create stat delete; do
        c0=$(daemon_cpu "$s")
        line=$("$T/smallfiles" "$phase" "$d" "$NFILES" "$NDIRS") ||
          die_side "$s" "smallfiles $phase ($NFILES files) failed on $s"
        c1=$(daemon_cpu "$s")
        # An error passthrough_hp logged (e.g. "ERROR: Reached maximum number
        # of file descriptors.") makes the phase's figure worthless even when
        # smallfiles itself did not fail.
        if [[ $s == passthrough_hp ]] && grep -q ERROR "$T/passthrough_hp.log"; then
          die_side "$s" "passthrough_hp logged an error during smallfiles $phase"
        fi
        # phase=create files=20000 secs=0.9465 files_per_s=21131 app_cpu_s=0.323
        declare -A kv=()
        for f in $line; do kv[${f%%=*}]=${f#*=}; done
        if wants "$phase"; then
          record "$phase" "$s" "$r" "${kv[files_per_s]}" \
            "\"files\":${kv[files]},\"secs\":${kv[secs]},\"app_cpu_s\":${kv[app_cpu_s]},\"daemon_cpu_s\":$(cpu_diff "$c0" "$c1")"
        fi
        log "  $phase $s run $r: ${kv[files_per_s]} files/s"
        unset kv
      done
      rmdir "$d"
    done
  done
fi

# ---- report ------------------------------------------------------------------
sync2
LOAD_END=$(cut -d' ' -f1-3 /proc/loadavg)
{
  echo "nproc=$(nproc)"
  echo "cpu=$(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo)"
  echo "memory=$(awk '/^MemTotal/ {printf "%.1f GiB", $2 / 1048576}' /proc/meminfo)"
  echo "kernel=$(uname -sr)"
  echo "os=$( (. /etc/os-release && echo "$PRETTY_NAME") 2>/dev/null || echo unknown)"
  echo "workdir=$T"
  fsdesc=$(findmnt -n -o FSTYPE,SOURCE,OPTIONS -T "$T" | awk '{print $1" on "$2" ("$3")"}')
  # ext4 mounted without a journal behaves differently (inode reuse, see above).
  src=$(findmnt -n -o SOURCE -T "$T")
  jt=/sys/fs/ext4/$(basename "$src")/journal_task
  [[ -r $jt && $(cat "$jt") == "<none>" ]] && fsdesc="$fsdesc, no journal"
  echo "workdir_fs=$fsdesc"
  echo "topdir_flag=$TOPDIR (chattr +T on the native dir and DATADIRs)"
  echo "fio=$("$FIO" --version)"
  echo "libfuse=$(pkg-config --modversion fuse3 2>/dev/null || dpkg-query -W -f='${Version}' libfuse3-3 2>/dev/null || fusermount3 -V)"
  echo "fusermount3=$(fusermount3 -V 2>&1 | awk '{print $NF}')"
  echo "scribefs_binary=$SCRIBEFS"
  echo "scribefs_revision=${SCRIBEFS_REVISION:-$(git -C "$REPO_DIR" describe --always --dirty 2>/dev/null || echo unknown) (checkout at run time)}"
  echo "scribefs_binary_mtime=$(date -u -r "$SCRIBEFS" +%Y-%m-%dT%H:%M:%SZ)"
  echo "scribefs_opts=${SCRIBEFS_OPTS:-}"
  if [[ -n $PHP ]]; then
    echo "passthrough_hp_binary=$PHP"
    echo "passthrough_hp_binary_mtime=$(date -u -r "$PHP" +%Y-%m-%dT%H:%M:%SZ)"
    if [[ -r $PHP.build-info ]]; then
      echo "passthrough_hp_build=$(sed -n 's/^source=//p' "$PHP.build-info"); $(grep -E '^(xattr|defines)=' "$PHP.build-info" | paste -sd';' | sed 's/;/; /g')"
    else
      echo "passthrough_hp_build=unknown (no $PHP.build-info)"
    fi
    # The kernel's per-mount limits: scribefs raises its own (--read-ahead-kb,
    # --max-dirty-ratio), passthrough_hp leaves the kernel's FUSE defaults.
    for s in "${SIDES[@]:1}"; do
      bdi=/sys/class/bdi/$(findmnt -n -o MAJ:MIN -M "${DIR[$s]}" | tr -d '[:space:]')
      echo "bdi_$s=read_ahead_kb $(cat "$bdi/read_ahead_kb" 2>/dev/null || echo ?), max_ratio $(cat "$bdi/max_ratio" 2>/dev/null || echo ?)"
    done
  fi
  echo "loadavg_start=$LOAD_START"
  echo "loadavg_end=$LOAD_END"
  echo "date=$(date -u +%Y-%m-%dT%H:%M:%SZ)"
} >"$T/machine.txt"

CMD_LINE="$ORIG_CMD"
[[ -n ${SCRIBEFS_OPTS:-} ]] && CMD_LINE="SCRIBEFS_OPTS=$(printf '%q' "$SCRIBEFS_OPTS") $CMD_LINE"
CMD_LINE="SCRIBEFS=$(printf '%q' "$SCRIBEFS") $CMD_LINE"
[[ -n ${PASSTHROUGH_HP_OPTS:-} && -n $PHP ]] && CMD_LINE="PASSTHROUGH_HP_OPTS=$(printf '%q' "$PASSTHROUGH_HP_OPTS") $CMD_LINE"
[[ -n ${PASSTHROUGH_HP:-} && -n $PHP && $ORIG_CMD != *--passthrough-hp* ]] && CMD_LINE="PASSTHROUGH_HP=$(printf '%q' "$PASSTHROUGH_HP") $CMD_LINE"
[[ -n ${SCRIBEFS_REVISION:-} ]] && CMD_LINE="SCRIBEFS_REVISION=$(printf '%q' "$SCRIBEFS_REVISION") $CMD_LINE"

python3 "$BENCH_DIR/fs_overhead_report.py" --raw "$RAW" --machine "$T/machine.txt" \
  --sides "$(IFS=,; echo "${SIDES[*]}")" --runs "$RUNS" --command "$CMD_LINE" \
  --side-opts "$(for s in "${SCRIBEFS_SIDES[@]}"; do printf '%s=%s %s;' "$s" "${SCRIBEFS_OPTS:-}" "${SIDE_OPTS[$s]}"; done
                 if [[ -n $PHP ]]; then printf 'passthrough_hp=--foreground %s;' "${PASSTHROUGH_HP_OPTS:-}"; fi)" \
  --json "$JSON_OUT"
log "raw figures: $JSON_OUT"
