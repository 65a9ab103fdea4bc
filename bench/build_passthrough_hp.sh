#!/usr/bin/env bash
# build_passthrough_hp.sh - builds libfuse's example/passthrough_hp, the reference
# side of bench/fs_overhead.sh (--passthrough-hp), against the system's libfuse3.
#
# usage: bench/build_passthrough_hp.sh [--xattr on|off] LIBFUSE_SRC OUT_BINARY
#   LIBFUSE_SRC   a libfuse checkout at tag fuse-3.14.0 (its example/passthrough_hp.cc
#                 and example/cxxopts.hpp are used as they are), or a git directory
#                 holding that tag (bare or not, no work tree needed): the two files
#                 are then taken with git --git-dir=LIBFUSE_SRC show fuse-3.14.0:PATH
#   OUT_BINARY    where to write the binary; OUT_BINARY.build-info records the tag,
#                 the commit, the defines and the exact compile command, and
#                 fs_overhead.sh prints it with its report
#   --xattr on|off  off (default): built without HAVE_SETXATTR, so passthrough_hp has
#                 no xattr handlers, as scribefs with its default --xattr off;
#                 on: with them, as scribefs --xattr on (see "defines" below)
#   -h, --help
# environment:
#   LIBFUSE_TAG   the tag to take from a git directory (default fuse-3.14.0)
#   CXX           C++ compiler (default g++)
# needs: g++, pkg-config, libfuse3-dev (Debian 12: 3.14.0, the same release as the tag).
#
# How it is compiled, and why:
#   g++ -std=c++17 -O2 -D_REENTRANT -D_GNU_SOURCE -fno-strict-aliasing
#       -DHAVE_UTIMENSAT=1 -DHAVE_POSIX_FALLOCATE=1 [-DHAVE_SETXATTR=1]
#       $(pkg-config --cflags) passthrough_hp.cc $(pkg-config --libs fuse3) -pthread
# - FUSE_USE_VERSION needs no -D: passthrough_hp.cc defines it itself
#   (FUSE_MAKE_VERSION(3, 12)) before it includes <fuse_lowlevel.h>.
# - cxxopts.hpp is included as "cxxopts.hpp": it is taken from the same tag's
#   example/ and put beside the .cc (the system has no cxxopts, and a newer one
#   would not be the tag's code).
# - -D_REENTRANT -D_GNU_SOURCE -fno-strict-aliasing are libfuse's own C++ flags
#   (meson.build, add_project_arguments for 'cpp'); -O2 as its default
#   buildtype (debugoptimized) has, without -g.
# - defines: passthrough_hp.cc tests three configure results of libfuse's
#   build: HAVE_UTIMENSAT (setattr of times on an inode with no open file: the
#   kernel's writeback of a cached mtime; without it that SETATTR fails with
#   EOPNOTSUPP and the mtime is lost), HAVE_POSIX_FALLOCATE (fallocate; without it
#   ENOSYS) and HAVE_SETXATTR (the xattr handlers). They live in libfuse's private
#   build-time fuse_config.h, which is not installed (Debian's libfuse3-dev has
#   only libfuse_config.h) and which <fuse_common.h> includes only under
#   -DHAVE_LIBFUSE_PRIVATE_CONFIG_H. libfuse 3.14.0's own build did not pass that
#   define to C++ files, so its passthrough_hp had none of the three (libfuse
#   issue #734, fixed in 3.14.1 by "Change define for C++ too"). Here they are
#   given by hand with the values configure finds on glibc/Linux, as 3.14.1 does:
#   HAVE_UTIMENSAT and HAVE_POSIX_FALLOCATE always, so the reference does the work
#   scribefs does (mtime writeback, fallocate); HAVE_SETXATTR per --xattr, because
#   with xattr handlers the kernel asks for security.capability before every
#   write (scribefs' --xattr on pays that too; its default, off, registers no
#   handlers, like passthrough_hp without HAVE_SETXATTR).
set -euo pipefail

die() { echo "build_passthrough_hp: $*" >&2; exit 2; }
usage() { sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d' | sed 's/^# \{0,1\}//'; }

XATTR=off
ARGS=()
while [[ $# -gt 0 ]]; do
  case $1 in
    --xattr) XATTR=${2:?}; shift 2 ;;
    -h|--help) usage; exit 0 ;;
    -*) usage >&2; die "unknown option: $1" ;;
    *) ARGS+=("$1"); shift ;;
  esac
done
[[ ${#ARGS[@]} -eq 2 ]] || { usage >&2; die "need LIBFUSE_SRC and OUT_BINARY"; }
[[ $XATTR == on || $XATTR == off ]] || die "--xattr must be on or off"
SRC=${ARGS[0]}
OUT=${ARGS[1]}
TAG=${LIBFUSE_TAG:-fuse-3.14.0}
CXX=${CXX:-g++}
command -v "$CXX" >/dev/null || die "$CXX not found (apt-get install -y g++)"
command -v pkg-config >/dev/null || die "pkg-config not found (apt-get install -y pkg-config)"
pkg-config --exists fuse3 || die "fuse3 development files not found (apt-get install -y libfuse3-dev)"
[[ -d $SRC ]] || die "no such directory: $SRC"

WORK=$(mktemp -d "${TMPDIR:-/tmp}/passthrough_hp-build.XXXXXX")
trap 'rm -rf "$WORK"' EXIT

# ---- sources -------------------------------------------------------------------
if [[ -f $SRC/example/passthrough_hp.cc ]]; then
  # A checkout: use its files as they are, and say what it is checked out at.
  cp "$SRC/example/passthrough_hp.cc" "$SRC/example/cxxopts.hpp" "$WORK/"
  FROM="checkout $(realpath "$SRC")"
  if [[ $(git -C "$SRC" rev-parse --show-toplevel 2>/dev/null) == "$(realpath "$SRC")" ]] &&
     rev=$(git -C "$SRC" describe --tags --always --dirty 2>/dev/null); then
    FROM="$FROM at $rev ($(git -C "$SRC" rev-parse HEAD))"
    [[ $rev == "$TAG" ]] || echo "build_passthrough_hp: warning: $SRC is at $rev, not $TAG" >&2
  fi
elif commit=$(git --git-dir="$SRC" rev-parse --verify --quiet "$TAG^{commit}"); then
  for f in passthrough_hp.cc cxxopts.hpp; do
    git --git-dir="$SRC" show "$TAG:example/$f" >"$WORK/$f" ||
      die "$TAG has no example/$f in $SRC"
  done
  FROM="git dir $(realpath "$SRC"), tag $TAG ($commit)"
else
  die "$SRC is neither a libfuse checkout (example/passthrough_hp.cc) nor a git dir with tag $TAG"
fi

SYS_VERSION=$(pkg-config --modversion fuse3)
[[ fuse-$SYS_VERSION == "$TAG" ]] ||
  echo "build_passthrough_hp: warning: the system's libfuse3 is $SYS_VERSION, the source is $TAG" >&2

# ---- compile -------------------------------------------------------------------
DEFS=(-DHAVE_UTIMENSAT=1 -DHAVE_POSIX_FALLOCATE=1)
[[ $XATTR == on ]] && DEFS+=(-DHAVE_SETXATTR=1)
read -r -a FUSE_CFLAGS <<<"$(pkg-config --cflags fuse3)"
read -r -a FUSE_LIBS <<<"$(pkg-config --libs fuse3)"
mkdir -p "$(dirname "$OUT")"
OUT=$(realpath -m "$OUT")
CMD=("$CXX" -std=c++17 -O2 -D_REENTRANT -D_GNU_SOURCE -fno-strict-aliasing "${DEFS[@]}"
     "${FUSE_CFLAGS[@]}" -o "$OUT.tmp" "$WORK/passthrough_hp.cc" "${FUSE_LIBS[@]}" -pthread)
echo "build_passthrough_hp: ${CMD[*]}" >&2
"${CMD[@]}"
mv "$OUT.tmp" "$OUT"

{
  echo "source=$FROM"
  echo "passthrough_hp.cc_sha256=$(sha256sum "$WORK/passthrough_hp.cc" | cut -d' ' -f1)"
  echo "system_libfuse3=$SYS_VERSION"
  echo "xattr=$XATTR"
  echo "defines=${DEFS[*]}"
  echo "compiler=$("$CXX" --version | head -n1)"
  echo "command=$(printf '%q ' "${CMD[@]}" | sed "s|$WORK/||g; s|$OUT.tmp|$OUT|; s/ $//")"
  echo "built=$(date -u +%Y-%m-%dT%H:%M:%SZ)"
} >"$OUT.build-info"
echo "build_passthrough_hp: built $OUT (xattr $XATTR; from $FROM)" >&2
