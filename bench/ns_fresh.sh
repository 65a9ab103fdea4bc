#!/usr/bin/env bash
# ns_fresh.sh - namespace operations per second, each run on a fresh filesystem.
#
# usage: bench/ns_fresh.sh [-n FILES] [-r ROUNDS] [-w WORKDIR] LABEL=SIDE [LABEL=SIDE...]
#   SIDE is one of
#     native               the bare directory
#     php:BINARY           libfuse's passthrough_hp (bench/build_passthrough_hp.sh)
#     BINARY [OPTIONS]     a scribefs daemon; the word TARGET in OPTIONS becomes a
#                          file:// target beside the data, e.g. "new=build/daemon/scribefs
#                          --target TARGET" (quote the whole LABEL=SIDE); TARGET2 a
#                          second one ("--target TARGET --target TARGET2": two targets);
#                          MIXED a --config of two targets, TARGET in sync mode and
#                          TARGET2 async (a local copy the writer waits for, and one
#                          it does not); S3 an s3:// target on the RGW of
#                          $S3_ENDPOINT (a bucket per run; credentials from AWS_*,
#                          e.g. the env file of tests/testbed/rgw-up.sh), with
#                          --endpoint/--region; MIXEDS3 a --config of TARGET in sync
#                          mode and the S3 bucket async (a local copy and an off-site
#                          one); MIXEDS3DOWN the same with the off-site endpoint
#                          refusing connections (127.0.0.1:9): the local copy while the
#                          remote is down
#   e.g. bench/ns_fresh.sh -n 18000 -r 3 native=native php=php:/tmp/php/passthrough_hp \
#          old=/tmp/scribefs.old new=build/daemon/scribefs
#
# Each run gets a 2 GiB ext4 of its own, made with mkfs.ext4 and loop-mounted
# under WORKDIR (default /var/tmp), holding DATADIR, the state dir and the
# target. That is the point of this script: on a filesystem where files were
# just deleted (the previous run's delete phase), ext4's inode allocator scans
# the recently freed inodes and a create phase measures that instead (54 % of
# the daemon's samples in recently_deleted/find_inode_bit in one such run; in
# bench/fs_overhead.sh the native side's create swung from 4,208 to 18,066
# files/s between runs of one session). Then bench/smallfiles.c creates FILES
# files (open O_CREAT + write 4 KiB + close) in 100 directories, and after a
# sync and 1 s deletes them (unlink each, rmdir each directory). The sides
# run interleaved, in an order rotated per round.
#
# passthrough_hp keeps a descriptor per inode it knows: FILES + 300 must be
# below the hard RLIMIT_NOFILE (ulimit -Hn), or it fails.
#
# Prints one line per run and then the medians per side:
#   LABEL create_per_s=... delete_per_s=... [daemon_cpu_ms_per_1k_create=...]
# and appends JSON lines to ns_fresh.jsonl in the current directory.
# Needs root (mount, mkfs.ext4, losetup), fusermount3, cc.
set -euo pipefail

NFILES=18000
ROUNDS=3
WORK_PARENT=/var/tmp
die() { echo "ns_fresh: $*" >&2; exit 2; }
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
[[ $# -ge 1 ]] || die "give at least one LABEL=SIDE (see --help)"
[[ $(id -u) -eq 0 ]] || die "run as root (mkfs and mount)"
for t in mkfs.ext4 fusermount3 cc findmnt; do command -v $t >/dev/null || die "$t not found"; done
LABELS=() SIDES=()
for a in "$@"; do LABELS+=("${a%%=*}"); SIDES+=("${a#*=}"); done
for s in "${SIDES[@]}"; do
  case $s in
    native) ;;
    php:*) [[ -x ${s#php:} ]] || die "not executable: ${s#php:}"
      (( NFILES + 300 <= $(ulimit -Hn) )) ||
        die "passthrough_hp needs ~$((NFILES + 300)) descriptors; the hard limit is $(ulimit -Hn): lower -n" ;;
    *) read -r b _ <<<"$s"; [[ -x $b ]] || die "not executable: $b" ;;
  esac
done

BENCH_DIR=$(cd "$(dirname "$0")" && pwd)
T=$(mktemp -d "$WORK_PARENT/ns_fresh.XXXXXX")
W=""
cleanup() {
  if [[ -n $W ]]; then
    fusermount3 -u "$W/mnt" 2>/dev/null || true
    sleep 0.3
    umount "$W/fs" 2>/dev/null || umount -l "$W/fs" 2>/dev/null || true
  fi
  rm -rf "$T"
}
trap cleanup EXIT
cc -O2 -o "$T/smallfiles" "$BENCH_DIR/smallfiles.c"
HZ=$(getconf CLK_TCK)
cpu_ticks() { awk '{ sub(/.*\) /, ""); print $12 + $13 }' "/proc/$1/stat"; }
rate() { sed -n 's/.*files_per_s=\([0-9]*\).*/\1/p'; }
REV=$(git -C "$BENCH_DIR" rev-parse --short HEAD 2>/dev/null || echo unknown)

run_one() {  # label side round
  local label=$1 side=$2 round=$3 dir pid="" c d c0 c1 cpu=""
  W=$T/run
  mkdir -p "$W/fs" "$W/mnt"
  truncate -s 2G "$W/img"
  mkfs.ext4 -q -F "$W/img"
  mount -o loop "$W/img" "$W/fs"
  mkdir "$W/fs/data" "$W/fs/state" "$W/fs/target"
  case $side in
    native) dir=$W/fs/data ;;
    php:*)
      (ulimit -Sn "$(ulimit -Hn)" && exec "${side#php:}" --foreground "$W/fs/data" "$W/mnt") \
        </dev/null >"$T/php.log" 2>&1 &
      pid=$!
      for _ in $(seq 50); do findmnt -n "$W/mnt" >/dev/null && break; sleep 0.1; done
      findmnt -n "$W/mnt" >/dev/null || die "passthrough_hp did not mount: $(tail -3 "$T/php.log")"
      dir=$W/mnt ;;
    *)
      local -a cmd
      read -r -a cmd <<<"$side"
      printf '[target local]\nurl = file://%s\nmode = sync\n[target remote]\nurl = file://%s\nmode = async\n' \
        "$W/fs/target" "$W/fs/target2" >"$W/fs/mixed.conf"
      printf '[target local]\nurl = file://%s\nmode = sync\n[target offsite]\nurl = s3://nsfresh-down\nendpoint = http://127.0.0.1:9\nmode = async\n' \
        "$W/fs/target" >"$W/fs/mixeds3down.conf"
      cmd=("${cmd[@]//MIXEDS3DOWN/--config=$W/fs/mixeds3down.conf}")
      if [[ " ${cmd[*]} " == *" S3 "* || " ${cmd[*]} " == *" MIXEDS3 "* ]]; then
        [[ -n ${S3_ENDPOINT:-} ]] || die "S3/MIXEDS3 need S3_ENDPOINT (and AWS_* credentials)"
        local bucket=nsfresh-$round-$RANDOM$RANDOM
        aws --endpoint-url "$S3_ENDPOINT" --region "${S3_REGION:-us-east-1}" s3api create-bucket \
          --bucket "$bucket" >/dev/null
        printf '[target local]\nurl = file://%s\nmode = sync\n[target offsite]\nurl = s3://%s\nendpoint = %s\nregion = %s\nmode = async\n' \
          "$W/fs/target" "$bucket" "$S3_ENDPOINT" "${S3_REGION:-us-east-1}" >"$W/fs/mixeds3.conf"
        cmd=("${cmd[@]//MIXEDS3/--config=$W/fs/mixeds3.conf}")
        local -a s3=(--target "s3://$bucket" --endpoint "$S3_ENDPOINT" --region "${S3_REGION:-us-east-1}")
        local -a c2=()
        for w in "${cmd[@]}"; do if [[ $w == S3 ]]; then c2+=("${s3[@]:1}"); else c2+=("$w"); fi; done
        cmd=("${c2[@]}")
      fi
      cmd=("${cmd[@]//MIXED/--config=$W/fs/mixed.conf}")
      cmd=("${cmd[@]//TARGET2/file://$W/fs/target2}")
      cmd=("${cmd[@]//TARGET/file://$W/fs/target}")
      "${cmd[0]}" "${cmd[@]:1}" --state-dir "$W/fs/state" "$W/fs/data" "$W/mnt" >&2
      pid=$(tr -d '[:space:]' <"$W/fs/state/lock")
      dir=$W/mnt ;;
  esac
  mkdir "$dir/t"
  sync
  [[ -n $pid ]] && c0=$(cpu_ticks "$pid")
  c=$("$T/smallfiles" create "$dir/t" "$NFILES" 100 | rate)
  [[ -n $pid ]] && c1=$(cpu_ticks "$pid") &&
    cpu=$(awk -v a="$c0" -v b="$c1" -v hz="$HZ" -v n="$NFILES" 'BEGIN { printf "%.0f", (b - a) * 1e6 / hz / n }')
  sync
  sleep 1
  d=$("$T/smallfiles" delete "$dir/t" "$NFILES" 100 | rate)
  [[ -n $c && -n $d ]] || die "$label: smallfiles failed"
  if [[ $dir == "$W/mnt" ]]; then fusermount3 -u "$W/mnt"; fi
  [[ -n $pid ]] && while kill -0 "$pid" 2>/dev/null; do sleep 0.1; done
  umount "$W/fs"
  rm -rf "$W"
  W=""
  echo "round=$round $label create_per_s=$c delete_per_s=$d${cpu:+ daemon_cpu_ms_per_1k_create=$cpu}"
  printf '{"rev":"%s","label":"%s","side":"%s","round":%d,"files":%d,"create_per_s":%s,"delete_per_s":%s,"daemon_cpu_ms_per_1k_create":%s}\n' \
    "$REV" "$label" "$side" "$round" "$NFILES" "$c" "$d" "${cpu:-null}" >>ns_fresh.jsonl
  echo "$label $c $d" >>"$T/results"
}

n=${#SIDES[@]}
for ((r = 0; r < ROUNDS; r++)); do
  for ((k = 0; k < n; k++)); do
    i=$(((k + r) % n))
    run_one "${LABELS[$i]}" "${SIDES[$i]}" "$r"
  done
done
echo "medians over $ROUNDS rounds, $NFILES files, a fresh ext4 per run (files/s):"
for l in "${LABELS[@]}"; do
  awk -v l="$l" '$1 == l { c[++n] = $2; d[n] = $3 }
    function med(a, n,   i, j, t) { for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++)
        if (a[j] < a[i]) { t = a[i]; a[i] = a[j]; a[j] = t }
      return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2 }
    END { printf "%s create_per_s=%.0f delete_per_s=%.0f\n", l, med(c, n), med(d, n) }' "$T/results"
done
