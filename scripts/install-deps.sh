#!/usr/bin/env bash
# Installs everything scribefs needs to build and test, from Debian 12's archive.
# Idempotent: does nothing when every package is already installed.
set -euo pipefail

PACKAGES=(
  # build
  build-essential cmake pkg-config
  libfuse3-dev fuse3 libsqlite3-dev libcurl4-openssl-dev libssl-dev
  libcli11-dev nlohmann-json3-dev libspdlog-dev libfmt-dev libexpat1-dev
  libsystemd-dev  # sd_notify: systemd Type=notify (daemon/service_notify.h)
  # tests and tools
  googletest libgtest-dev libgmock-dev sqlite3 attr acl util-linux psmisc procps fio
)
# Real S3 for the uploader tests: a throwaway Ceph RADOS Gateway, and the AWS CLI
# to look at what landed.
S3_PACKAGES=(ceph-mon ceph-osd radosgw ceph-common uuid-runtime awscli curl)

missing=()
for p in "${PACKAGES[@]}" "${S3_PACKAGES[@]}"; do
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
