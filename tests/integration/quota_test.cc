// Disk limits apply to users through the mount as on the disk: ext4's
// root-reserved blocks (and, where the kernel supports it, disk quotas) stop
// a user's writes through the mount where they stop natively, although the
// daemon that performs them is root. Root keeps the reserved blocks.
//
// Each test makes small ext4 images (sparse files in the test's temp dir),
// loop-mounts them and removes both in TearDown, also after a failure.
#include <fcntl.h>
#include <grp.h>
#include <linux/quota.h>
#include <sys/mount.h>
#include <sys/quota.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <string>
#include <vector>

#include "tests/integration/mount_fixture.h"

namespace scribefs::it {
namespace {

constexpr uid_t kNobody = 65534;
constexpr int64_t kMiB = 1 << 20;
// Writers stop here at the latest (the images are smaller).
constexpr int64_t kWriteCap = 160 * kMiB;

// What a writer saw (errno values, 0 = success).
struct WriteReport {
  int drop_err = -1;
  int open_err = -1;
  int write_err = 0;  // the first failed write(2)
  int fsync_err = -1;
  int close_err = -1;
  int64_t written = 0;  // bytes write(2) accepted
};

// Forks a child that (as 65534:65534 without groups when uid is kNobody,
// else as root) creates path and writes 1 MiB blocks until a write fails or
// kWriteCap, then fsyncs and closes: where a full disk shows depends on the
// page cache (natively at write, through a writeback-cache mount at fsync or
// close).
WriteReport WriteUntilFull(const std::string& path, uid_t uid) {
  WriteReport rep;
  int p[2];
  if (pipe2(p, O_CLOEXEC) != 0) return rep;
  pid_t pid = fork();
  if (pid == 0) {
    close(p[0]);
    WriteReport r;
    r.drop_err = 0;
    if (uid != 0 && (setgroups(0, nullptr) != 0 || setgid(uid) != 0 || setuid(uid) != 0))
      r.drop_err = errno;
    int fd = r.drop_err == 0 ? open(path.c_str(), O_CREAT | O_WRONLY | O_TRUNC, 0644) : -1;
    r.open_err = fd >= 0 ? 0 : errno;
    if (fd >= 0) {
      std::string block(kMiB, 'q');
      while (r.written < kWriteCap) {
        ssize_t n = write(fd, block.data(), block.size());
        if (n <= 0) {
          r.write_err = n < 0 ? errno : ENOSPC;
          break;
        }
        r.written += n;
      }
      r.fsync_err = fsync(fd) == 0 ? 0 : errno;
      r.close_err = close(fd) == 0 ? 0 : errno;
    }
    (void)!write(p[1], &r, sizeof r);
    _exit(0);
  }
  close(p[1]);
  if (pid > 0) {
    if (read(p[0], &rep, sizeof rep) != sizeof rep) rep.drop_err = -2;
    WaitChild(pid, 120);
  }
  close(p[0]);
  return rep;
}

// Bytes allocated to path on its disk (what really landed).
int64_t OnDisk(const std::string& path) {
  struct stat st;
  if (stat(path.c_str(), &st) != 0) return -1;
  return static_cast<int64_t>(st.st_blocks) * 512;
}

class ReservedBlocksTest : public MountTest {
 protected:
  void TearDown() override {
    // The scribefs mount sits inside the images' mounts: it goes first.
    if (daemon_pid() > 0) Unmount();
    for (auto it = images_.rbegin(); it != images_.rend(); ++it) {
      if (IsMounted(*it)) {
        RunResult u = RunCommand({"umount", *it}, 60);
        if (u.exit_code != 0) {
          ADD_FAILURE() << "umount " << *it << ": " << u.Describe();
          umount2(it->c_str(), MNT_DETACH);
        }
      }
      unlink((*it + ".img").c_str());
    }
    MountTest::TearDown();
  }

  // A 64 MiB ext4 image made with extra mkfs options, loop-mounted (with
  // mount options, may be empty) at root()/name; returns the mount point.
  // Fatal failure when it cannot be made.
  void MakeExt4(const std::string& name, const std::vector<std::string>& mkfs_args,
                const std::string& mount_opts, std::string* dir) {
    *dir = root() + "/" + name;
    std::string img = *dir + ".img";
    ASSERT_EQ(mkdir(dir->c_str(), 0755), 0) << strerror(errno);
    images_.push_back(*dir);
    ASSERT_EQ(RunCommand({"truncate", "-s", "64M", img}).exit_code, 0);
    std::vector<std::string> mkfs = {"mkfs.ext4", "-q", "-F"};
    mkfs.insert(mkfs.end(), mkfs_args.begin(), mkfs_args.end());
    mkfs.push_back(img);
    RunResult m = RunCommand(mkfs, 60);
    ASSERT_EQ(m.exit_code, 0) << m.Describe();
    RunResult mt = RunCommand(
        {"mount", "-o", mount_opts.empty() ? "loop" : "loop," + mount_opts, img, *dir}, 60);
    ASSERT_EQ(mt.exit_code, 0) << "mount -o loop: " << mt.Describe();
    // A directory nobody may write in.
    ASSERT_EQ(mkdir((*dir + "/u").c_str(), 0755), 0) << strerror(errno);
    ASSERT_EQ(chown((*dir + "/u").c_str(), kNobody, kNobody), 0) << strerror(errno);
  }

  // Bytes nobody (or root) can write natively on a fresh 50 %-reserved image.
  void NativeCapacity(const std::string& name, uid_t uid, int64_t* bytes) {
    std::string dir;
    ASSERT_NO_FATAL_FAILURE(MakeExt4(name, {"-m", "50"}, "", &dir));
    WriteReport r = WriteUntilFull(dir + "/u/f", uid);
    ASSERT_EQ(r.drop_err, 0) << strerror(r.drop_err);
    ASSERT_EQ(r.open_err, 0) << strerror(r.open_err);
    EXPECT_EQ(r.write_err, ENOSPC)
        << "native write did not fill the disk: " << strerror(r.write_err);
    *bytes = OnDisk(dir + "/u/f");
    ASSERT_GT(*bytes, 8 * kMiB);
  }

  // Mounts scribefs (allow_other, journal only) over the nobody directory of
  // a fresh 50 %-reserved image; uid writes through it until the disk is
  // full. Returns what landed on the disk.
  void ThroughMountCapacity(const std::string& name, uid_t uid, int64_t* bytes,
                            WriteReport* report) {
    std::string dir;
    ASSERT_NO_FATAL_FAILURE(MakeExt4(name, {"-m", "50"}, "", &dir));
    Options o;
    o.args = {"-o", "allow_other"};
    o.data_dir = dir + "/u";
    ASSERT_NO_FATAL_FAILURE(Mount(o));
    *report = WriteUntilFull(mp("f"), uid);
    ASSERT_EQ(report->drop_err, 0) << strerror(report->drop_err);
    ASSERT_EQ(report->open_err, 0) << strerror(report->open_err);
    *bytes = OnDisk(dir + "/u/f");
  }

  std::vector<std::string> images_;  // mount points, in the order made
};

// The bug: the root daemon wrote with CAP_SYS_RESOURCE and fsuid 0, so a
// user could fill the blocks ext4 reserves for root (~2x the native space).
TEST_F(ReservedBlocksTest, UserThroughMountGetsNoMoreThanNatively) {
  int64_t native = 0, mounted = 0;
  ASSERT_NO_FATAL_FAILURE(NativeCapacity("native", kNobody, &native));
  WriteReport r;
  ASSERT_NO_FATAL_FAILURE(ThroughMountCapacity("viafuse", kNobody, &mounted, &r));
  EXPECT_LE(mounted, native + 4 * kMiB)
      << "nobody wrote " << mounted / kMiB << " MiB through the mount, " << native / kMiB
      << " MiB natively: the reserved blocks were used";
  EXPECT_GE(mounted, native - 4 * kMiB) << "native " << native << ", through the mount " << mounted;
  // The full disk is reported (with the writeback cache at fsync or close).
  bool reported = r.write_err == ENOSPC || r.fsync_err == ENOSPC || r.close_err == ENOSPC;
  EXPECT_TRUE(reported) << "write " << strerror(r.write_err) << ", fsync " << strerror(r.fsync_err)
                        << ", close " << strerror(r.close_err);
  EXPECT_EQ(Unmount(), 0);
  // The journal covers what did land (failed writes count as changed).
  struct stat st;
  ASSERT_EQ(stat((root() + "/viafuse/u/f").c_str(), &st), 0) << strerror(errno);
  EXPECT_TRUE(DataCovered(Records(), "f", 0, static_cast<uint64_t>(st.st_size)))
      << "size " << st.st_size;
}

// Root through the mount keeps using the reserved blocks, as natively.
TEST_F(ReservedBlocksTest, RootThroughMountStillUsesReservedBlocks) {
  int64_t native_user = 0, native_root = 0, mounted = 0;
  ASSERT_NO_FATAL_FAILURE(NativeCapacity("native_user", kNobody, &native_user));
  ASSERT_NO_FATAL_FAILURE(NativeCapacity("native_root", 0, &native_root));
  ASSERT_GT(native_root, native_user + 16 * kMiB) << "the image reserves nothing for root";
  WriteReport r;
  ASSERT_NO_FATAL_FAILURE(ThroughMountCapacity("viafuse", 0, &mounted, &r));
  EXPECT_GE(mounted, native_root - 4 * kMiB)
      << "root wrote " << mounted / kMiB << " MiB through the mount, " << native_root / kMiB
      << " MiB natively";
  EXPECT_EQ(Unmount(), 0);
}

// What fallocate and mkdir of nobody saw (errno values, 0 = success).
struct AllocReport {
  int drop_err = -1;
  int big_fallocate_err = -1;  // 40 MiB at once: more than nobody may have
  int fill_err = -1;           // fallocate in 64 KiB steps until it fails
  int mkdir_err = -1;          // a directory once nothing is left for nobody
};

// As nobody: fallocate 40 MiB in one call (dir/<prefix>big), then fill
// what is left (dir/<prefix>fill), then mkdir mkdir_path.
AllocReport AllocateAsNobody(const std::string& dir, const std::string& prefix,
                             const std::string& mkdir_path) {
  AllocReport rep;
  int p[2];
  if (pipe2(p, O_CLOEXEC) != 0) return rep;
  pid_t pid = fork();
  if (pid == 0) {
    close(p[0]);
    AllocReport r;
    r.drop_err = 0;
    if (setgroups(0, nullptr) != 0 || setgid(kNobody) != 0 || setuid(kNobody) != 0)
      r.drop_err = errno;
    std::string big_path = dir + "/" + prefix + "big", fill_path = dir + "/" + prefix + "fill";
    int big = r.drop_err == 0 ? open(big_path.c_str(), O_CREAT | O_WRONLY, 0644) : -1;
    int fill = r.drop_err == 0 ? open(fill_path.c_str(), O_CREAT | O_WRONLY, 0644) : -1;
    if (big >= 0 && fill >= 0) {
      r.big_fallocate_err = fallocate(big, 0, 0, 40 * kMiB) == 0 ? 0 : errno;
      off_t off = 0;
      while (off < kWriteCap && fallocate(fill, 0, off, 64 << 10) == 0) off += 64 << 10;
      r.fill_err = off < kWriteCap ? errno : 0;
      r.mkdir_err = mkdir(mkdir_path.c_str(), 0755) == 0 ? 0 : errno;
    }
    if (big >= 0) close(big);
    if (fill >= 0) close(fill);
    (void)!write(p[1], &r, sizeof r);
    _exit(0);
  }
  close(p[1]);
  if (pid > 0) {
    if (read(p[0], &rep, sizeof rep) != sizeof rep) rep.drop_err = -2;
    WaitChild(pid, 120);
  }
  close(p[0]);
  return rep;
}

// fallocate and mkdir of a user stop where they stop natively: once nobody
// has filled its share of the disk natively, mkdir and fallocate through
// the mount fail with ENOSPC (the root daemon used to take the reserved
// blocks for them).
TEST_F(ReservedBlocksTest, UserFallocateAndMkdirStopWhereTheyStopNatively) {
  std::string dir;
  ASSERT_NO_FATAL_FAILURE(MakeExt4("viafuse", {"-m", "50"}, "", &dir));
  Options o;
  o.args = {"-o", "allow_other"};
  o.data_dir = dir + "/u";
  ASSERT_NO_FATAL_FAILURE(Mount(o));
  // Natively, on the backing directory; only the mkdir goes through the mount.
  AllocReport n = AllocateAsNobody(dir + "/u", "n", mp("d1"));
  ASSERT_EQ(n.drop_err, 0) << strerror(n.drop_err);
  ASSERT_EQ(n.big_fallocate_err, ENOSPC) << strerror(n.big_fallocate_err);
  ASSERT_EQ(n.fill_err, ENOSPC) << strerror(n.fill_err);
  EXPECT_EQ(n.mkdir_err, ENOSPC) << strerror(n.mkdir_err);
  // Now all through the mount: nothing more for nobody.
  AllocReport r = AllocateAsNobody(mp(), "m", mp("d2"));
  ASSERT_EQ(r.drop_err, 0) << strerror(r.drop_err);
  EXPECT_EQ(r.big_fallocate_err, ENOSPC) << strerror(r.big_fallocate_err);
  EXPECT_EQ(r.fill_err, ENOSPC) << strerror(r.fill_err);
  EXPECT_EQ(r.mkdir_err, ENOSPC) << strerror(r.mkdir_err);
  EXPECT_LE(OnDisk(dir + "/u/mbig") + OnDisk(dir + "/u/mfill"), 1 * kMiB)
      << "nobody got reserved blocks through the mount";
  EXPECT_EQ(Unmount(), 0);
}

// The device mounted at dir ("" when none), from /proc/self/mounts.
std::string DeviceOf(const std::string& dir) {
  auto mounts = ReadFile("/proc/self/mounts");
  if (!mounts) return "";
  size_t pos = 0;
  while (pos < mounts->size()) {
    size_t eol = mounts->find('\n', pos);
    if (eol == std::string::npos) eol = mounts->size();
    std::string line = mounts->substr(pos, eol - pos);
    pos = eol + 1;
    size_t sp1 = line.find(' ');
    size_t sp2 = sp1 == std::string::npos ? sp1 : line.find(' ', sp1 + 1);
    if (sp2 != std::string::npos && line.substr(sp1 + 1, sp2 - sp1 - 1) == dir)
      return line.substr(0, sp1);
  }
  return "";
}

// A user's block hard limit holds through the mount: the daemon's writes no
// longer exceed it with CAP_SYS_RESOURCE. Needs a kernel with ext4 quota
// support (CONFIG_QUOTA and CONFIG_QFMT_V2); skipped, saying so, without.
TEST_F(ReservedBlocksTest, QuotaHardLimitHoldsThroughMount) {
  const std::string dir = root() + "/quota", img = dir + ".img";
  ASSERT_EQ(mkdir(dir.c_str(), 0755), 0) << strerror(errno);
  images_.push_back(dir);
  ASSERT_EQ(RunCommand({"truncate", "-s", "64M", img}).exit_code, 0);
  RunResult m = RunCommand({"mkfs.ext4", "-q", "-F", "-O", "quota", "-m", "0", img}, 60);
  ASSERT_EQ(m.exit_code, 0) << m.Describe();
  RunResult mt = RunCommand({"mount", "-o", "loop,usrquota", img, dir}, 60);
  if (mt.exit_code != 0)
    GTEST_SKIP() << "ext4 with quota cannot be mounted here (kernel without CONFIG_QFMT_V2?): "
                 << mt.Describe();
  ASSERT_EQ(mkdir((dir + "/u").c_str(), 0755), 0) << strerror(errno);
  ASSERT_EQ(chown((dir + "/u").c_str(), kNobody, kNobody), 0) << strerror(errno);
  const int64_t limit = 8 * kMiB;
  struct if_dqblk q = {};
  q.dqb_bhardlimit = static_cast<uint64_t>(limit / 1024);  // in 1 KiB quota blocks
  q.dqb_bsoftlimit = q.dqb_bhardlimit;
  q.dqb_valid = QIF_BLIMITS;
  std::string dev = DeviceOf(dir);
  ASSERT_FALSE(dev.empty());
  ASSERT_EQ(quotactl(QCMD(Q_SETQUOTA, USRQUOTA), dev.c_str(), static_cast<int>(kNobody),
                     reinterpret_cast<caddr_t>(&q)),
            0)
      << strerror(errno);
  // Enforced natively?
  WriteReport n = WriteUntilFull(dir + "/u/native", kNobody);
  ASSERT_EQ(n.open_err, 0) << strerror(n.open_err);
  ASSERT_EQ(n.write_err, EDQUOT) << "the limit is not enforced natively";
  ASSERT_EQ(unlink((dir + "/u/native").c_str()), 0);

  Options o;
  o.args = {"-o", "allow_other"};
  o.data_dir = dir + "/u";
  ASSERT_NO_FATAL_FAILURE(Mount(o));
  WriteReport r = WriteUntilFull(mp("f"), kNobody);
  ASSERT_EQ(r.drop_err, 0) << strerror(r.drop_err);
  ASSERT_EQ(r.open_err, 0) << strerror(r.open_err);
  bool reported = r.write_err == EDQUOT || r.fsync_err == EDQUOT || r.close_err == EDQUOT;
  EXPECT_TRUE(reported) << "write " << strerror(r.write_err) << ", fsync " << strerror(r.fsync_err)
                        << ", close " << strerror(r.close_err);
  EXPECT_LE(OnDisk(dir + "/u/f"), limit) << "the file exceeds nobody's hard limit";
  EXPECT_EQ(Unmount(), 0);
}

}  // namespace
}  // namespace scribefs::it
