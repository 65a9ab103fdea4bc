// Ownership and permissions on a mount made by root with -o allow_other: new
// files belong to the calling user, the kernel enforces permissions
// (default_permissions), and the journal records who did what.
#include <fcntl.h>
#include <grp.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>

#include "common/unique_fd.h"
#include "tests/integration/mount_fixture.h"

namespace scribefs::it {
namespace {

constexpr uid_t kNobody = 65534;

// What the unprivileged child saw (errno values, 0 = success).
struct ChildReport {
  int drop_err = -1;
  pid_t pid = 0;
  int create_err = -1;
  int mkdir_err = -1;
  int write_root_file_err = -1;
  int read_root_file_err = -1;
  char root_file_head[32] = {};
  int create_in_root_dir_err = -1;
  int stat_err = -1;
};

// Forks a child that becomes 65534:65534 (no supplementary groups) and runs
// body(report); returns the report once the child has exited.
template <typename Body>
ChildReport RunAsNobody(Body body) {
  ChildReport rep;
  int p[2];
  if (pipe2(p, O_CLOEXEC) != 0) return rep;
  pid_t pid = fork();
  if (pid == 0) {
    close(p[0]);
    ChildReport r;
    r.pid = getpid();
    r.drop_err = 0;
    if (setgroups(0, nullptr) != 0 || setgid(kNobody) != 0 || setuid(kNobody) != 0)
      r.drop_err = errno;
    else
      body(r);
    (void)!write(p[1], &r, sizeof r);
    _exit(0);
  }
  close(p[1]);
  if (pid > 0) {
    if (read(p[0], &rep, sizeof rep) != sizeof rep) rep.drop_err = -2;
    WaitChild(pid, 30);
  }
  close(p[0]);
  return rep;
}

int Errno(int rc) { return rc == 0 ? 0 : errno; }

using PermissionsTest = MountTest;

TEST_F(PermissionsTest, AllowOtherNewFilesBelongToCallerKernelEnforcesModes) {
  Options o;
  o.args = {"-o", "allow_other"};
  ASSERT_NO_FATAL_FAILURE(Mount(o));
  ASSERT_EQ(mkdir(mp("pub").c_str(), 0777), 0);
  ASSERT_EQ(chmod(mp("pub").c_str(), 0777), 0);
  ASSERT_TRUE(WriteFile(mp("pub/rootfile"), "root data", 0644));
  const std::string pub = mp("pub"), root_dir = mp();

  ChildReport r = RunAsNobody([&](ChildReport& r) {
    umask(022);
    int fd = open((pub + "/ufile").c_str(), O_CREAT | O_WRONLY | O_EXCL, 0644);
    r.create_err = fd >= 0 ? 0 : errno;
    if (fd >= 0) {
      if (write(fd, "user data", 9) != 9 || close(fd) != 0) r.create_err = errno;
    }
    r.mkdir_err = Errno(mkdir((pub + "/udir").c_str(), 0755));
    fd = open((pub + "/rootfile").c_str(), O_WRONLY);
    r.write_root_file_err = fd >= 0 ? 0 : errno;
    if (fd >= 0) close(fd);
    fd = open((pub + "/rootfile").c_str(), O_RDONLY);
    r.read_root_file_err = fd >= 0 ? 0 : errno;
    if (fd >= 0) {
      (void)!read(fd, r.root_file_head, sizeof r.root_file_head - 1);
      close(fd);
    }
    fd = open((root_dir + "/denied").c_str(), O_CREAT | O_WRONLY, 0644);
    r.create_in_root_dir_err = fd >= 0 ? 0 : errno;
    if (fd >= 0) close(fd);
  });
  ASSERT_EQ(r.drop_err, 0) << "could not become 65534:65534: " << strerror(r.drop_err);
  EXPECT_EQ(r.create_err, 0) << strerror(r.create_err);
  EXPECT_EQ(r.mkdir_err, 0) << strerror(r.mkdir_err);
  EXPECT_EQ(r.write_root_file_err, EACCES) << strerror(r.write_root_file_err);
  EXPECT_EQ(r.read_root_file_err, 0) << strerror(r.read_root_file_err);
  EXPECT_STREQ(r.root_file_head, "root data");
  EXPECT_EQ(r.create_in_root_dir_err, EACCES) << strerror(r.create_in_root_dir_err);

  struct stat st;
  ASSERT_EQ(stat(data("pub/ufile").c_str(), &st), 0);
  EXPECT_EQ(st.st_uid, kNobody);
  EXPECT_EQ(st.st_gid, kNobody);
  EXPECT_EQ(st.st_mode, S_IFREG | 0644u);
  EXPECT_EQ(ReadFile(data("pub/ufile")).value_or(""), "user data");
  ASSERT_EQ(stat(data("pub/udir").c_str(), &st), 0);
  EXPECT_EQ(st.st_uid, kNobody);
  EXPECT_EQ(st.st_gid, kNobody);
  EXPECT_EQ(st.st_mode, S_IFDIR | 0755u);
  ASSERT_EQ(stat(data("pub/rootfile").c_str(), &st), 0);
  EXPECT_EQ(st.st_uid, 0u);
  EXPECT_EQ(ReadFile(data("pub/rootfile")).value_or(""), "root data");
  EXPECT_NE(stat(data("denied").c_str(), &st), 0);
  // The mount shows the same owners.
  ASSERT_EQ(stat(mp("pub/ufile").c_str(), &st), 0);
  EXPECT_EQ(st.st_uid, kNobody);
  EXPECT_EQ(st.st_gid, kNobody);
  EXPECT_EQ(Unmount(), 0);

  auto rs = Records();
  auto creates = Find(rs, Op::kCreate, "pub/ufile");
  ASSERT_EQ(creates.size(), 1u);
  EXPECT_EQ(creates[0].uid, kNobody) << Dump(creates[0]);
  EXPECT_EQ(creates[0].gid, kNobody) << Dump(creates[0]);
  EXPECT_EQ(creates[0].pid, r.pid) << Dump(creates[0]);
  auto mkdirs = Find(rs, Op::kMkdir, "pub/udir");
  ASSERT_EQ(mkdirs.size(), 1u);
  EXPECT_EQ(mkdirs[0].uid, kNobody) << Dump(mkdirs[0]);
  EXPECT_EQ(mkdirs[0].gid, kNobody) << Dump(mkdirs[0]);
  EXPECT_EQ(mkdirs[0].pid, r.pid) << Dump(mkdirs[0]);
  // The root-owned file got no record from the refused attempt.
  for (const auto& rec : Naming(rs, "pub/rootfile")) EXPECT_EQ(rec.uid, 0u) << Dump(rec);
  EXPECT_TRUE(Naming(rs, "denied").empty());
}

// Without allow_other, FUSE keeps other users out of a root mount entirely.
TEST_F(PermissionsTest, WithoutAllowOtherOtherUsersAreKeptOut) {
  ASSERT_NO_FATAL_FAILURE(Mount());
  ASSERT_EQ(chmod(mp().c_str(), 0777), 0);
  const std::string root_dir = mp();
  ChildReport r = RunAsNobody([&](ChildReport& r) {
    struct stat st;
    r.stat_err = Errno(stat((root_dir + "/x").c_str(), &st));
    int fd = open((root_dir + "/x").c_str(), O_CREAT | O_WRONLY, 0644);
    r.create_err = fd >= 0 ? 0 : errno;
    if (fd >= 0) close(fd);
  });
  ASSERT_EQ(r.drop_err, 0) << strerror(r.drop_err);
  EXPECT_EQ(r.stat_err, EACCES) << strerror(r.stat_err);
  EXPECT_EQ(r.create_err, EACCES) << strerror(r.create_err);
  struct stat st;
  EXPECT_NE(stat(data("x").c_str(), &st), 0);
  EXPECT_EQ(Unmount(), 0);
}

}  // namespace
}  // namespace scribefs::it
