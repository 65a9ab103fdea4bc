#!/bin/sh
# The .deb end to end: cpack builds it, its Depends name the runtime
# libraries, dpkg -i installs it, the INSTALLED /usr/bin/scribefs mounts a
# temp dir, a write shows in `scribectl journal`, the mount stops, and
# dpkg -r removes the package again. Needs root (dpkg, FUSE). CI is a
# throwaway machine; locally the package is removed afterwards.
#   deb_test.sh BUILD_DIR
set -eu
build=$1
fail() { echo "FAIL: $*" >&2; exit 1; }
if [ "$(id -u)" -ne 0 ]; then
  [ "${CI:-}" = true ] && fail "needs root"
  echo "SKIP: needs root"; exit 77
fi
if dpkg-query -W -f='${Status}' scribefs 2>/dev/null | grep -q "install ok installed"; then
  fail "a scribefs package is installed already; not touching it (dpkg -r scribefs first)"
fi
tmp=$(mktemp -d /tmp/scribefs-deb-XXXXXX)
installed=""
cleanup() {
  if mountpoint -q "$tmp/mnt" 2>/dev/null; then fusermount3 -u "$tmp/mnt" || umount -l "$tmp/mnt"; fi
  [ -n "$installed" ] && dpkg -r scribefs >/dev/null 2>&1
  rm -rf "$tmp"
}
trap cleanup EXIT

cmake --build "$build" -j2 --target scribefs scribectl docs >"$tmp/build.log" 2>&1 ||
  { tail -30 "$tmp/build.log"; fail "building the packaged targets"; }
(cd "$build" && cpack -G DEB -B "$tmp/pkg" >"$tmp/cpack.log" 2>&1) || { cat "$tmp/cpack.log"; fail "cpack"; }
deb=$(ls "$tmp"/pkg/scribefs_*.deb)
depends=$(dpkg-deb -f "$deb" Depends)
echo "Depends: $depends"
for lib in fuse3 libfuse3-3 libsqlite3-0 libcurl4 libssl3; do
  echo "$depends" | grep -q "$lib" || fail "Depends lacks $lib"
done
contents=$(dpkg-deb -c "$deb")
for f in ./usr/bin/scribefs ./usr/bin/scribectl ./usr/share/man/man8/scribefs.8 \
         ./usr/share/man/man8/scribectl.8 ./usr/share/bash-completion/completions/scribectl; do
  echo "$contents" | grep -q " $f" || fail "the package lacks $f"
done

dpkg -i "$deb" >"$tmp/dpkg.log" 2>&1 || { cat "$tmp/dpkg.log"; fail "dpkg -i"; }
installed=1
mkdir "$tmp/data" "$tmp/mnt"
/usr/bin/scribefs --state-dir "$tmp/state" "$tmp/data" "$tmp/mnt" || fail "the installed scribefs did not mount"
echo hello >"$tmp/mnt/hello.txt"
/usr/bin/scribectl --state-dir "$tmp/state" journal --path hello.txt >"$tmp/journal.txt"
grep -q "hello.txt" "$tmp/journal.txt" || { cat "$tmp/journal.txt"; fail "scribectl journal does not show the write"; }
[ "$(cat "$tmp/data/hello.txt")" = hello ] || fail "the write did not reach DATADIR"
pid=$(cat "$tmp/state/lock" 2>/dev/null | tr -dc 0-9)
fusermount3 -u "$tmp/mnt"
# The daemon finishes after the unmount returns; wait for it before removing.
for _ in $(seq 100); do [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
man -w scribectl >/dev/null 2>&1 || [ -f /usr/share/man/man8/scribectl.8.gz ] || [ -f /usr/share/man/man8/scribectl.8 ] ||
  fail "man page not installed"
dpkg -r scribefs >/dev/null
installed=""
[ ! -e /usr/bin/scribefs ] || fail "dpkg -r left /usr/bin/scribefs"
echo "deb ok"
