// MountTest: a GoogleTest fixture that runs the real scribefs daemon on a real
// FUSE mount in a private temp dir, plus the helpers the integration tests
// share (running commands, reading trees, the journal, /proc/mounts).
//
// Each test gets /tmp/scribefs-it-<test pid>-XXXXXX with data/ and mnt/
// created and state/ left for the daemon to create. Mount() starts the daemon
// in background mode (it returns once the mount serves) and reads its pid from
// state/lock. This process is made a child subreaper, so the daemonized
// scribefs becomes our child and TearDown can reap it and learn its exit
// status.
//
// TearDown always, even after failed assertions: unmounts every daemon this
// test started (fusermount3 -u, wait for the daemon to exit, and on timeout
// kill -9 and fusermount3 -uz), detaches anything else still mounted below
// the temp dir (dead mounts, tmpfs the test made), fails the test if it had
// to do so for a mount the test should have cleaned up itself, and removes
// the temp dir without crossing into mounts.
//
// When a test fails, TearDown prints the end of each daemon's log
// (STATE/scribefs.log). $SCRIBEFS_IT_BIN runs the suite against another
// scribefs binary (e.g. a build with a deliberate bug, to see tests fail).
//
// Not thread-safe: call fixture methods from the test's main thread; helpers
// in the namespace are safe from any thread unless noted.
#pragma once

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <sys/types.h>

#include <cstdint>
#include <deque>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "journal/record.h"

namespace scribefs::it {

// The daemon under test: the build's scribefs, or $SCRIBEFS_IT_BIN when set
// (to run the suite against another build).
std::string ScribefsBin();
// Every temp dir starts with this, followed by the owning test process's pid.
inline constexpr const char* kTempPrefix = "/tmp/scribefs-it-";

struct RunResult {
  int exit_code = -1;      // exit status, or 128+signal, or -1 when it could not run
  bool timed_out = false;  // killed after the timeout
  std::string out, err;
  std::string Describe() const;  // "exit 2, stderr: ..." for failure messages
};

// Runs argv[0] (a path, or a name looked up in PATH) with stdout/stderr on
// pipes; kills it with SIGKILL after timeout_s. Returns once the process has
// exited (output a background child keeps writing is not waited for).
RunResult RunCommand(const std::vector<std::string>& argv, double timeout_s = 30);

// Mount points currently listed in /proc/self/mounts that are `dir` or below it.
std::vector<std::string> MountsUnder(const std::string& dir);
bool IsMounted(const std::string& path);
// The filesystem type of the mount at exactly `path` ("" when not a mount point).
std::string MountType(const std::string& path);

// Whole-file helpers; nullopt / false with errno set on failure.
std::optional<std::string> ReadFile(const std::string& path);
bool WriteFile(const std::string& path, const std::string& content, mode_t mode = 0644);

// Every entry below root (relative paths, root itself excluded), lstat'ed,
// without following symlinks or crossing into other mounts.
std::map<std::string, struct stat> ListTree(const std::string& root);
// Names in one directory, without "." and "..".
std::set<std::string> ListDir(const std::string& dir);

// Removes a tree without following symlinks or crossing into mounts.
void RemoveTree(const std::string& root);

int CountOpenFds(pid_t pid);
// The open fds of a process: number -> what it points to (for messages).
std::map<std::string, std::string> OpenFds(pid_t pid);
bool ProcessAlive(pid_t pid);
// waitpid(pid) for at most timeout_s; returns the status (WEXITSTATUS, or
// 128+signal) or nullopt on timeout. pid must be our child.
std::optional<int> WaitChild(pid_t pid, double timeout_s);

int64_t MtimeNs(const struct stat& st);

// Deterministic bytes for content checks.
std::string Pattern(size_t n, uint32_t seed);

// Byte ranges of all `write` records for path (state != skipped), merged.
std::vector<ByteRange> WrittenRanges(const std::vector<Record>& records, const std::string& path);
// True when the merged ranges cover [offset, offset+length).
bool Covers(const std::vector<ByteRange>& merged, uint64_t offset, uint64_t length);

// True when the journal covers bytes [offset, offset+length) of path: the
// ranges of its write records do, or a create / truncate-to-0 record began a
// session that covers every byte of the file (scribefs then need not record
// ranges) and a later close record of path reports size >= offset+length.
bool DataCovered(const std::vector<Record>& records, const std::string& path, uint64_t offset,
                 uint64_t length);

// Records matching op and path (and new_path when given).
std::vector<Record> Find(const std::vector<Record>& records, Op op, const std::string& path,
                         std::optional<std::string> new_path = std::nullopt);
// Every record whose path or new_path is `path`.
std::vector<Record> Naming(const std::vector<Record>& records, const std::string& path);
std::string Dump(const Record& r);  // one line, for failure messages

class MountTest : public ::testing::Test {
 protected:
  struct Options {
    bool over_mount = false;        // mount over DATADIR (no MOUNTPOINT argument)
    std::vector<std::string> args;  // extra daemon options, e.g. {"-o", "allow_other"}
    std::string data_dir;           // default: data()
    std::string state_dir;          // default: state()
    std::string mountpoint;         // default: mnt(), or DATADIR with over_mount
  };

  void SetUp() override;
  void TearDown() override;

  // Runs `scribefs [args] --state-dir S DATADIR [MOUNTPOINT]` (background
  // mode). On exit 0 the daemon is tracked: pid from S/lock, reaped in
  // TearDown.
  RunResult StartDaemon(const Options& options);
  // StartDaemon that must succeed (fatal assertion otherwise); sets mp().
  void Mount(const Options& options);
  void Mount();
  // fusermount3 -u of the current daemon's mount, then reaps the daemon.
  // Returns its exit status (-1 when it had to be killed). Also used after
  // KillDaemon to unmount the dead mount (then returns the kill status).
  int Unmount();
  // SIGKILL the current daemon and reap it; its mount stays (dead, ENOTCONN).
  void KillDaemon();

  // All journal records of state_dir (default state()), oldest first.
  std::vector<Record> Records(const std::string& state_dir = "");

  // Mounts a tmpfs at path (created) with the given options; TearDown unmounts it.
  void MountTmpfs(const std::string& path, const std::string& options);

  pid_t daemon_pid() const { return daemon_ ? daemon_->pid : -1; }
  const std::string& root() const { return root_; }
  std::string data(const std::string& rel = "") const { return Sub(data_, rel); }
  std::string state(const std::string& rel = "") const { return Sub(state_, rel); }
  std::string mnt(const std::string& rel = "") const { return Sub(mnt_, rel); }
  // The path applications use: the mount point of the current daemon.
  std::string mp(const std::string& rel = "") const { return Sub(mp_, rel); }

 private:
  struct Daemon {
    pid_t pid = -1;
    std::string mountpoint;
    bool killed = false;
  };
  static std::string Sub(const std::string& base, const std::string& rel) {
    return rel.empty() ? base : base + "/" + rel;
  }
  // Unmounts and reaps d; returns the exit status or -1.
  int StopDaemon(Daemon& d);

  std::string root_, data_, state_, mnt_, mp_;
  std::deque<Daemon> daemons_;  // every daemon started by this test (stable addresses)
  Daemon* daemon_ = nullptr;    // the current one (last started)
  std::vector<std::string> tmpfs_;
  std::vector<std::string> log_paths_;  // daemon logs, shown when a test failed
};

}  // namespace scribefs::it
