#include "daemon/bdi.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <fstream>
#include <sstream>

#include "common/mountinfo.h"
#include "common/unique_fd.h"

namespace scribefs {
namespace {

Status WriteSysfs(const std::string& path, uint64_t value) {
  UniqueFd fd(open(path.c_str(), O_WRONLY | O_CLOEXEC));
  if (!fd) return PosixError(path, errno);
  std::string v = std::to_string(value) + "\n";
  if (write(fd.get(), v.data(), v.size()) < 0) return PosixError(path, errno);
  return Status::Ok();
}

}  // namespace

Result<std::string> MountDevice(const std::string& mountpoint) {
  std::vector<MountEntry> mounts = ReadMountInfo();
  const MountEntry* top = ScribefsMountAt(mounts, mountpoint);
  if (!top) return Status::Error(ENOENT, "no scribefs mount at " + mountpoint);
  return top->majmin;
}

Status TuneBdi(const std::string& device, int max_ratio, int read_ahead_kb) {
  std::string dir = "/sys/class/bdi/" + device + "/";
  if (max_ratio > 0) SCRIBEFS_RETURN_IF_ERROR(WriteSysfs(dir + "max_ratio", max_ratio));
  if (read_ahead_kb > 0) SCRIBEFS_RETURN_IF_ERROR(WriteSysfs(dir + "read_ahead_kb", read_ahead_kb));
  return Status::Ok();
}

uint64_t KernelDirtyShare(uint64_t max_pending_bytes) {
  return std::max<uint64_t>(max_pending_bytes / 4, 256 * 1024);
}

Result<std::string> LimitBdiDirtyBytes(const std::string& device, uint64_t bytes) {
  std::string dir = "/sys/class/bdi/" + device + "/";
  if (access((dir + "max_bytes").c_str(), F_OK) != 0) {
    SCRIBEFS_RETURN_IF_ERROR(WriteSysfs(dir + "max_ratio", 1));
    return std::string("max_ratio 1 % (this kernel has no max_bytes)");
  }
  SCRIBEFS_RETURN_IF_ERROR(WriteSysfs(dir + "max_bytes", bytes));
  // What the kernel made of it (rounded to its ratio's granularity).
  std::ifstream in(dir + "max_bytes");
  uint64_t now = 0;
  if (!(in >> now)) now = bytes;
  return "max_bytes " + std::to_string(now);
}

}  // namespace scribefs
