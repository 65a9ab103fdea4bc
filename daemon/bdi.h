// Kernel writeback settings of the mount's backing-device-info ("bdi").
//
// The kernel gives every FUSE mount a strict dirty-page limit of 1% of the
// dirty threshold and 128 KiB of read-ahead, because an untrusted daemon must
// not be able to pin the machine's memory. Measured here, that limit sends
// 0.72 WRITE requests to the daemon per 4 KiB write() (random writes: 57k
// IOPS; with max_ratio 40: 191k). scribefs is a trusted root daemon, and the
// journal covers data when it reaches the daemon, not when it is cached, so
// it raises both for its own mount.
#pragma once

#include <string>

#include "common/status.h"

namespace scribefs {

// The "MAJOR:MINOR" of the mount at `mountpoint` (from /proc/self/mountinfo,
// without touching the mount itself), or an error.
Result<std::string> MountDevice(const std::string& mountpoint);

// Writes /sys/class/bdi/DEV/max_ratio and read_ahead_kb (0: leave as is).
Status TuneBdi(const std::string& device, int max_ratio, int read_ahead_kb);

}  // namespace scribefs
