#!/usr/bin/env bash
# Installs everything scribefs needs to build and test, from Debian 12's archive.
# Idempotent: does nothing when every package is already installed.
#   install-deps.sh          build + test dependencies, including a Ceph RGW for the S3 tests
#   install-deps.sh --base   only what building and running scribefs needs (the quick start:
#                            no Ceph, no Prometheus)
set -euo pipefail
WANT_S3=1
case "${1:-}" in
  --base) WANT_S3=0 ;;
  "") ;;
  *) echo "usage: $0 [--base]" >&2; exit 2 ;;
esac

PACKAGES=(
  # build
  build-essential cmake pkg-config
  libfuse3-dev fuse3 libsqlite3-dev libcurl4-openssl-dev libssl-dev
  libcli11-dev nlohmann-json3-dev libspdlog-dev libfmt-dev libexpat1-dev
  libsystemd-dev  # sd_notify: systemd Type=notify (daemon/service_notify.h)
  libzstd-dev  # timeline segments (history/segment.cc)
  # tests and tools
  googletest libgtest-dev libgmock-dev sqlite3 attr acl util-linux psmisc procps fio
  help2man  # man pages from --help (docs/)
)
# Only for the tests: promtool checks the metrics, man and groff render the man
# pages, dpkg-dev and fakeroot build the .deb that a test installs.
TEST_PACKAGES=(prometheus man-db groff dpkg-dev fakeroot file)
# Real S3 for the uploader tests: a throwaway Ceph RADOS Gateway, and the AWS CLI
# to look at what landed.
S3_PACKAGES=(ceph-mon ceph-osd radosgw ceph-common uuid-runtime awscli curl)

WANTED=("${PACKAGES[@]}")
[ "$WANT_S3" -eq 0 ] || WANTED+=("${TEST_PACKAGES[@]}" "${S3_PACKAGES[@]}")
missing=()
for p in "${WANTED[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "install-deps: all packages present"
  exit 0
fi
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
echo "install-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
echo "install-deps: done"
