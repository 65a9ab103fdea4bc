#!/usr/bin/env bash
# Installs dependencies if needed, builds, and runs every test (unit tests,
# mounted integration tests, S3 tests against a throwaway Ceph RGW).
# Must run as root: the tests mount FUSE filesystems.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
bash scripts/build.sh
cd build
ctest --output-on-failure --timeout 600 -j1 "$@"
