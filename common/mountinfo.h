// The one reader of /proc/self/mountinfo: the daemon (stale-mount check,
// "already mounted", the FUSE bdi to tune) and scribectl (-m MOUNTPOINT,
// restore's guard against writing into a live mount) all ask it, so that the
// format's rules (the " - " separator after optional fields, the \ooo
// escapes of space, tab, newline and backslash) live in one place.
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace scribefs {

// The filesystem type scribefs mounts show.
inline constexpr std::string_view kScribefsFsType = "fuse.scribefs";

// One line of mountinfo (proc(5)), the fields scribefs uses, unescaped.
struct MountEntry {
  std::string majmin;      // "0:52": the device, names the bdi in /sys/class/bdi
  std::string root;        // the mount's root within its filesystem
  std::string mountpoint;  // where it is mounted
  std::string fstype;      // "fuse.scribefs", "ext4", ...
  std::string source;      // the source ("fsname"; scribefs names it after DATADIR)
};

// Parses mountinfo text; lines that do not follow the format are skipped.
// Entries in file order: a later entry at the same mount point is on top.
std::vector<MountEntry> ParseMountInfo(std::string_view text);

// ParseMountInfo of this process's /proc/self/mountinfo (empty if unreadable).
std::vector<MountEntry> ReadMountInfo();

// The scribefs mounts among `mounts`, in order.
std::vector<MountEntry> ScribefsMounts(const std::vector<MountEntry>& mounts);

// The topmost scribefs mount at exactly `mountpoint`, or nullptr.
const MountEntry* ScribefsMountAt(const std::vector<MountEntry>& mounts,
                                  std::string_view mountpoint);

}  // namespace scribefs
