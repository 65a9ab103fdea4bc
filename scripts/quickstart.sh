#!/usr/bin/env bash
# Quick start: installs dependencies, builds, mounts scribefs over ./demo/data,
# makes a few changes through the mount and shows the journal they produced.
# The mount stays up for you to try; `bash scripts/quickstart.sh --stop` unmounts.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
DATA=$ROOT/demo/data
TARGET=$ROOT/demo/target
SCRIBEFS=$ROOT/build/daemon/scribefs
SCRIBECTL=$ROOT/build/tools/scribectl

if [ "${1:-}" = "--stop" ]; then
  fusermount3 -u "$DATA" && echo "unmounted $DATA"
  exit 0
fi
[ "$(id -u)" -eq 0 ] || { echo "quickstart: run as root (FUSE mounts)"; exit 1; }

bash scripts/install-deps.sh --base   # no Ceph: the demo replicates to a local directory
bash scripts/build.sh

mkdir -p "$DATA"
[ -e "$DATA/README.txt" ] || echo "files here existed before scribefs was mounted" > "$DATA/README.txt"
if grep -qs " $DATA fuse.scribefs " /proc/mounts; then
  echo "quickstart: $DATA is already mounted"
else
  # Over-mount: DATADIR itself becomes the mount; its state dir is derived from its path.
  # Replicate to a local directory (the embedded default target; s3:// works the same).
  mkdir -p "$TARGET"
  "$SCRIBEFS" "$DATA" --target "file://$TARGET"
  echo "quickstart: mounted scribefs over $DATA, replicating to file://$TARGET"
fi

# An application at work: create, append, rename, overwrite a block, delete.
cd "$DATA"
mkdir -p notes
echo "hello, scribefs" > notes/hello.txt
echo "a second line" >> notes/hello.txt
mv notes/hello.txt notes/greeting.txt
dd if=/dev/urandom of=blob.bin bs=64K count=16 status=none
dd if=/dev/zero of=blob.bin bs=4K count=1 seek=100 conv=notrunc status=none
ln -sf notes/greeting.txt latest
touch scratch && rm scratch
cd "$ROOT"
sleep 1  # uploads run behind, in the background

echo
echo "== scribectl -m $DATA journal --limit 25"
"$SCRIBECTL" -m "$DATA" journal --limit 25
echo
echo "== scribectl -m $DATA stats"
"$SCRIBECTL" -m "$DATA" stats
echo
echo "== the replica in $TARGET"
(cd "$TARGET" && find . -path ./.scribefs-local -prune -o -print | sort)
cat <<EOT

$DATA is mounted: everything you change there is journaled first.
  watch the journal:   $SCRIBECTL -m $DATA journal --follow
  the replica:         ls -lR $TARGET
  as JSON:             $SCRIBECTL -m $DATA --json journal --op write
  with sqlite3:        sqlite3 -readonly /var/lib/scribefs/data-*/journal.db 'select * from records'
  unmount:             bash scripts/quickstart.sh --stop
EOT
