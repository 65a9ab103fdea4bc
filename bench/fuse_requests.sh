#!/usr/bin/env bash
# fuse_requests.sh - which FUSE requests a command sends to one mount, and how
# long each kind takes (send -> reply, as the kernel sees it).
#
# usage: bench/fuse_requests.sh MOUNTPOINT [--per N] -- COMMAND [ARGS...]
#   --per N   also print requests per unit of work (e.g. --per 20000 for 20,000 files)
# example (the profile in bench/README.md):
#   bench/fuse_requests.sh /mnt/x --per 20000 -- ./smallfiles create /mnt/x/t
#
# Uses the kernel's fuse:fuse_request_send / fuse:fuse_request_end tracepoints
# through perf (root; Debian: apt-get install -y linux-perf), system-wide but
# filtered to MOUNTPOINT's connection, so background writeback requests count
# too. Prints one line per opcode: count, count per unit, mean and median
# latency in microseconds, and the total time requests of that kind were
# outstanding.
set -euo pipefail

die() { echo "fuse_requests: $*" >&2; exit 2; }
[[ $# -ge 3 ]] || die "usage: $0 MOUNTPOINT [--per N] -- COMMAND [ARGS...]"
MNT=$1
shift
PER=1
if [[ $1 == --per ]]; then PER=${2:?}; shift 2; fi
[[ $1 == -- ]] || die "expected -- before the command"
shift
command -v perf >/dev/null || die "perf not found (apt-get install -y linux-perf)"
[[ $(findmnt -n -o FSTYPE -M "$MNT") == fuse* ]] || die "$MNT is not a FUSE mount"
DEV=$(stat -c %d "$MNT")  # FUSE connections are anonymous devices: major 0, so st_dev == minor

TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
perf record -q -a -o "$TMP/perf.data" \
  -e fuse:fuse_request_send --filter "connection == $DEV" \
  -e fuse:fuse_request_end --filter "connection == $DEV" \
  -- "$@"
perf script -i "$TMP/perf.data" 2>/dev/null | python3 -c '
import collections, re, sys
per = float(sys.argv[1])
pat = re.compile(r"\s(\d+\.\d+):\s+fuse:(fuse_request_send|fuse_request_end):\s+connection \d+ req (\d+)(.*)")
sent, count, lat = {}, collections.Counter(), collections.defaultdict(list)
for line in sys.stdin:
    m = pat.search(line)
    if not m:
        continue
    t, ev, req, rest = float(m.group(1)), m.group(2), m.group(3), m.group(4)
    if ev == "fuse_request_send":
        op = re.search(r"\((\w+)\)", rest)
        op = op.group(1) if op else "?"
        sent[req] = (t, op)
        count[op] += 1
    elif req in sent:
        t0, op = sent.pop(req)
        lat[op].append(t - t0)
print("%-18s %9s %9s %9s %9s %8s" % ("opcode", "count", "per unit", "mean us", "median us", "total s"))
for op, n in sorted(count.items(), key=lambda kv: (-sum(lat[kv[0]]), -kv[1])):
    l = sorted(lat[op])   # FORGET gets no reply: no latency
    mean = "%.1f" % (sum(l) / len(l) * 1e6) if l else "-"
    med = "%.1f" % (l[len(l) // 2] * 1e6) if l else "-"
    print("%-18s %9d %9.2f %9s %9s %8.3f" % (op, n, n / per, mean, med, sum(l)))
print("%-18s %9d %9.2f" % ("all", sum(count.values()), sum(count.values()) / per))
' "$PER"
