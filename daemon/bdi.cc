#include "daemon/bdi.h"

#include <fcntl.h>
#include <unistd.h>

#include <fstream>
#include <sstream>

#include "common/mountinfo.h"
#include "common/unique_fd.h"

namespace scribefs {
namespace {

Status WriteSysfs(const std::string& path, int value) {
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

}  // namespace scribefs
