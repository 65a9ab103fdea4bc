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

#include <cstdint>
#include <string>

#include "common/status.h"

namespace scribefs {

// The "MAJOR:MINOR" of the mount at `mountpoint` (from /proc/self/mountinfo,
// without touching the mount itself), or an error.
Result<std::string> MountDevice(const std::string& mountpoint);

// Writes /sys/class/bdi/DEV/max_ratio and read_ahead_kb (0: leave as is).
Status TuneBdi(const std::string& device, int max_ratio, int read_ahead_kb);

// --max-pending with the writeback cache: the bytes the kernel may hold dirty
// (or under writeback) for the mount, which the daemon has not seen and so
// cannot count: a quarter of the bound (at least 256 KiB).
uint64_t KernelDirtyShare(uint64_t max_pending_bytes);

// Caps the mount's dirty page cache at about `bytes`: writes
// /sys/class/bdi/DEV/max_bytes (Linux >= 6.2; the kernel keeps it as a
// fraction of the machine's dirty threshold, rounded to 1/1,000,000 of it,
// and FUSE mounts have a strict per-device limit, so a writer blocks in
// write() once the mount holds that much). Older kernels have only whole
// percents: there it writes max_ratio 1, the kernel's default for FUSE.
// Returns what it set, as the log shows it ("max_bytes 2.0 MiB").
Result<std::string> LimitBdiDirtyBytes(const std::string& device, uint64_t bytes);

}  // namespace scribefs
