// Hardening of the FUSE layer (issue 10): access control and POSIX corner
// cases, each compared with what the same calls do on the backing ext4.
// Every test runs the real daemon on a real mount; the ones about other users
// fork a child that becomes nobody (65534:65534, no supplementary groups) and
// reports the errno of each call it made.
#include <dirent.h>
#include <fcntl.h>
#include <grp.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "common/unique_fd.h"
#include "tests/integration/mount_fixture.h"

namespace scribefs::it {
namespace {

constexpr uid_t kNobody = 65534;

// What the unprivileged child saw: errno per step (0 = success, -1 = not run).
struct ChildReport {
  int drop_err = -1;
  int err[16];
  char text[512] = {};
  ChildReport() { std::fill(std::begin(err), std::end(err), -1); }
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

int Errno(bool ok) { return ok ? 0 : errno; }

// Runs setfacl/getfacl (package `acl`, see scripts/install-deps.sh).
RunResult Acl(const std::vector<std::string>& argv) {
  RunResult r = RunCommand(argv);
  if (r.exit_code != 0)
    ADD_FAILURE() << argv[0] << " failed (is the acl package installed?): " << r.Describe();
  return r;
}

// Creates `path` with open(O_CREAT, mode) under `mask` as the process umask.
int CreateWithUmask(const std::string& path, mode_t mode, mode_t mask) {
  mode_t old = umask(mask);
  int fd = open(path.c_str(), O_CREAT | O_WRONLY | O_EXCL, mode);
  int e = errno;
  umask(old);
  if (fd < 0) return e;
  close(fd);
  return 0;
}

mode_t ModeOf(const std::string& path) {
  struct stat st;
  if (lstat(path.c_str(), &st) != 0) return 0;
  return st.st_mode & 07777;
}

using HardeningTest = MountTest;

// Item 1: an ACL on the disk is enforced through an allow_other mount, ACLs
// can be set through the mount, and a directory's default ACL is inherited
// (with the umask ignored, as POSIX says) exactly as on the disk itself.
TEST_F(HardeningTest, AclsAreEnforcedThroughAllowOtherMount) {
  ASSERT_EQ(mkdir(data("pub").c_str(), 0755), 0);
  ASSERT_EQ(chmod(data("pub").c_str(), 0755), 0);
  ASSERT_TRUE(WriteFile(data("pub/denied"), "secret", 0644));
  ASSERT_EQ(chmod(data("pub/denied").c_str(), 0644), 0);
  Acl({"setfacl", "-m", "u:nobody:---", data("pub/denied")});
  Options o;
  o.args = {"-o", "allow_other"};  // and --xattr off, the default
  ASSERT_NO_FATAL_FAILURE(Mount(o));

  // A 0600 file that an ACL entry set through the mount lets nobody read.
  ASSERT_TRUE(WriteFile(mp("pub/granted"), "for nobody", 0600));
  ASSERT_EQ(chmod(mp("pub/granted").c_str(), 0600), 0);
  Acl({"setfacl", "-m", "u:nobody:r--", mp("pub/granted")});
  // A directory whose default ACL gives nobody rw- on new files; a file
  // created in it through the mount and, for comparison, one on the disk.
  ASSERT_EQ(mkdir(mp("pub/shared").c_str(), 0755), 0);
  Acl({"setfacl", "-d", "-m", "u:nobody:rw-", mp("pub/shared")});
  ASSERT_EQ(CreateWithUmask(mp("pub/shared/new"), 0666, 022), 0);
  ASSERT_EQ(CreateWithUmask(data("pub/shared/native"), 0666, 022), 0);
  // Without a default ACL the umask still applies.
  ASSERT_EQ(CreateWithUmask(mp("pub/plain"), 0666, 027), 0);
  ASSERT_EQ(mkdir(mp("pub/plaindir").c_str(), 0777), 0);
  // xattrs other than ACLs stay unsupported with --xattr off.
  errno = 0;
  EXPECT_NE(setxattr(mp("pub/granted").c_str(), "user.x", "1", 1, 0), 0);
  EXPECT_EQ(errno, ENOTSUP) << strerror(errno);

  const std::string pub = mp("pub");
  ChildReport r = RunAsNobody([&](ChildReport& r) {
    int fd = open((pub + "/denied").c_str(), O_RDONLY);
    r.err[0] = Errno(fd >= 0);
    if (fd >= 0) close(fd);
    fd = open((pub + "/granted").c_str(), O_RDONLY);
    r.err[1] = Errno(fd >= 0);
    if (fd >= 0) {
      (void)!read(fd, r.text, sizeof r.text - 1);
      close(fd);
    }
    fd = open((pub + "/granted").c_str(), O_WRONLY);
    r.err[2] = Errno(fd >= 0);
    if (fd >= 0) close(fd);
    fd = open((pub + "/shared/new").c_str(), O_RDWR);
    r.err[3] = Errno(fd >= 0);
    if (fd >= 0) {
      r.err[4] = Errno(write(fd, "by nobody", 9) == 9);
      close(fd);
    }
  });
  ASSERT_EQ(r.drop_err, 0) << "could not become 65534:65534: " << strerror(r.drop_err);
  EXPECT_EQ(r.err[0], EACCES) << "u:nobody:--- on a 0644 file: " << strerror(r.err[0]);
  EXPECT_EQ(r.err[1], 0) << "u:nobody:r-- on a 0600 file: " << strerror(r.err[1]);
  EXPECT_STREQ(r.text, "for nobody");
  EXPECT_EQ(r.err[2], EACCES) << "u:nobody:r-- grants no write: " << strerror(r.err[2]);
  EXPECT_EQ(r.err[3], 0) << "inherited d:u:nobody:rw-: " << strerror(r.err[3]);
  EXPECT_EQ(r.err[4], 0) << strerror(r.err[4]);

  // On the disk: what was set through the mount, and the same modes as the
  // backing filesystem gives natively.
  RunResult g = Acl({"getfacl", "-cp", data("pub/granted")});
  EXPECT_NE(g.out.find("user:nobody:r--"), std::string::npos) << g.out;
  g = Acl({"getfacl", "-cp", data("pub/shared/new")});
  // Not "user:nobody:rw-\t#effective:r--": a mask narrowed by the umask.
  EXPECT_NE(g.out.find("user:nobody:rw-\n"), std::string::npos) << g.out;
  EXPECT_EQ(ModeOf(data("pub/shared/new")), ModeOf(data("pub/shared/native")));
  EXPECT_EQ(ModeOf(data("pub/shared/new")), 0664u);
  EXPECT_EQ(ModeOf(data("pub/plain")), 0640u);
  EXPECT_EQ(ModeOf(data("pub/plaindir")), 0777u & ~022u) << "the test process's umask";
  EXPECT_EQ(Unmount(), 0);
  auto rs = Records();
  EXPECT_FALSE(Find(rs, Op::kSetxattr, "pub/granted").empty()) << "setfacl is journaled";
  EXPECT_FALSE(Find(rs, Op::kSetxattr, "pub/shared").empty()) << "setfacl -d is journaled";
}

// Item 12: a file that is open and then unlinked keeps working through its
// descriptor: fstat (st_nlink 0), I/O, fchmod, ftruncate.
TEST_F(HardeningTest, OpenUnlinkedFileKeepsWorking) {
  Options o;
  o.args = {"--cache-timeout", "0"};  // every fstat asks the daemon
  ASSERT_NO_FATAL_FAILURE(Mount(o));
  UniqueFd fd(open(mp("gone").c_str(), O_CREAT | O_RDWR, 0644));
  ASSERT_TRUE(fd) << strerror(errno);
  ASSERT_EQ(write(fd.get(), "hello", 5), 5);
  ASSERT_EQ(unlink(mp("gone").c_str()), 0);
  struct stat st;
  ASSERT_EQ(fstat(fd.get(), &st), 0) << strerror(errno);
  EXPECT_EQ(st.st_nlink, 0u);
  EXPECT_EQ(st.st_size, 5);
  EXPECT_EQ(pwrite(fd.get(), " world", 6, 5), 6) << strerror(errno);
  char buf[32] = {};
  EXPECT_EQ(pread(fd.get(), buf, sizeof buf, 0), 11) << strerror(errno);
  EXPECT_STREQ(buf, "hello world");
  EXPECT_EQ(fchmod(fd.get(), 0600), 0) << strerror(errno);
  EXPECT_EQ(ftruncate(fd.get(), 4), 0) << strerror(errno);
  ASSERT_EQ(fstat(fd.get(), &st), 0) << strerror(errno);
  EXPECT_EQ(st.st_nlink, 0u);
  EXPECT_EQ(st.st_size, 4);
  EXPECT_EQ(st.st_mode, S_IFREG | 0600u);
  fd.Reset();
  EXPECT_EQ(lstat(data("gone").c_str(), &st), -1);
  EXPECT_EQ(Unmount(), 0);
}

// Item 13: O_DIRECT I/O through the mount, on a new and on an existing file.
TEST_F(HardeningTest, ODirectAlignedIoWorks) {
  ASSERT_NO_FATAL_FAILURE(Mount());
  constexpr size_t kBlock = 4096;
  std::string want = Pattern(3 * kBlock, 13);
  std::memset(want.data() + kBlock, 0, kBlock);  // the hole between the writes
  void* raw = nullptr;
  ASSERT_EQ(posix_memalign(&raw, kBlock, 3 * kBlock), 0);
  std::unique_ptr<char, decltype(&free)> buf(static_cast<char*>(raw), &free);
  memcpy(buf.get(), want.data(), want.size());
  {
    UniqueFd fd(open(mp("direct.img").c_str(), O_CREAT | O_RDWR | O_DIRECT, 0644));
    ASSERT_TRUE(fd) << strerror(errno);
    EXPECT_EQ(pwrite(fd.get(), buf.get(), kBlock, 0), ssize_t(kBlock)) << strerror(errno);
    EXPECT_EQ(fdatasync(fd.get()), 0) << strerror(errno);
  }
  {
    UniqueFd fd(open(mp("direct.img").c_str(), O_RDWR | O_DIRECT));
    ASSERT_TRUE(fd) << strerror(errno);
    EXPECT_EQ(pwrite(fd.get(), buf.get() + 2 * kBlock, kBlock, 2 * kBlock), ssize_t(kBlock))
        << strerror(errno);
    void* rraw = nullptr;
    ASSERT_EQ(posix_memalign(&rraw, kBlock, kBlock), 0);
    std::unique_ptr<char, decltype(&free)> rbuf(static_cast<char*>(rraw), &free);
    EXPECT_EQ(pread(fd.get(), rbuf.get(), kBlock, 0), ssize_t(kBlock)) << strerror(errno);
    EXPECT_EQ(memcmp(rbuf.get(), want.data(), kBlock), 0);
  }
  EXPECT_EQ(ReadFile(data("direct.img")).value_or("") == want, true);
  EXPECT_EQ(Unmount(), 0);
  auto rs = Records();
  EXPECT_TRUE(DataCovered(rs, "direct.img", 0, 3 * kBlock));
}

// Item 11: deep trees on the disk, of components of 255 bytes. Each call
// names one component relative to a directory descriptor, as ext4 allows;
// the daemon must not need the whole path in one system call.
class DeepTreeTest : public MountTest {
 protected:
  int depth_ = 17;
  static std::string Component(int i) { return std::string(255, static_cast<char>('a' + i)); }
  std::string RelDir() const {
    std::string rel;
    for (int i = 0; i < depth_; ++i) rel += (i ? "/" : "") + Component(i);
    return rel;
  }
  // Opens the deepest directory below base, one component at a time.
  UniqueFd Walk(const std::string& base) const {
    UniqueFd fd(open(base.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    for (int i = 0; fd && i < depth_; ++i)
      fd = UniqueFd(openat(fd.get(), Component(i).c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    return fd;
  }
  void BuildOnDisk() {
    UniqueFd fd(open(data().c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    for (int i = 0; fd && i < depth_; ++i) {
      ASSERT_EQ(mkdirat(fd.get(), Component(i).c_str(), 0755), 0) << strerror(errno);
      fd = UniqueFd(openat(fd.get(), Component(i).c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    }
    ASSERT_TRUE(fd);
    UniqueFd f(openat(fd.get(), "f", O_CREAT | O_WRONLY | O_CLOEXEC, 0644));
    ASSERT_TRUE(f);
    ASSERT_EQ(write(f.get(), "0123456789", 10), 10);
    ASSERT_EQ(symlinkat("f", fd.get(), "l"), 0);
  }
  // chmod, chown, lchown, truncate, link, mkdir, readdir in the deepest
  // directory, then the same on the disk and in the journal.
  void CheckOperations() {
    ASSERT_NO_FATAL_FAILURE(BuildOnDisk());
    ASSERT_NO_FATAL_FAILURE(Mount());
    UniqueFd d = Walk(mp());
    ASSERT_TRUE(d) << "lookup through the mount: " << strerror(errno);
    EXPECT_EQ(fchmodat(d.get(), "f", 0600, 0), 0) << "chmod: " << strerror(errno);
    EXPECT_EQ(fchownat(d.get(), "f", kNobody, kNobody, 0), 0) << "chown: " << strerror(errno);
    EXPECT_EQ(fchownat(d.get(), "l", kNobody, kNobody, AT_SYMLINK_NOFOLLOW), 0)
        << "lchown: " << strerror(errno);
    UniqueFd cwd(open(".", O_PATH | O_DIRECTORY | O_CLOEXEC));
    ASSERT_TRUE(cwd);
    ASSERT_EQ(fchdir(d.get()), 0);
    int trunc_err = Errno(truncate("f", 3) == 0);
    ASSERT_EQ(fchdir(cwd.get()), 0);
    EXPECT_EQ(trunc_err, 0) << "truncate: " << strerror(trunc_err);
    EXPECT_EQ(linkat(d.get(), "f", d.get(), "f2", 0), 0) << "link: " << strerror(errno);
    struct stat st;
    EXPECT_EQ(fstatat(d.get(), "f", &st, 0), 0) << "the link source: " << strerror(errno);
    ASSERT_EQ(fstatat(d.get(), "f2", &st, 0), 0) << strerror(errno);
    EXPECT_EQ(st.st_nlink, 2u);
    EXPECT_EQ(st.st_mode, S_IFREG | 0600u);
    EXPECT_EQ(st.st_uid, kNobody);
    EXPECT_EQ(st.st_size, 3);
    EXPECT_EQ(mkdirat(d.get(), "sub", 0755), 0) << "mkdir: " << strerror(errno);
    // readdir of the deep directory.
    std::set<std::string> names;
    if (DIR* dir = fdopendir(dup(d.get()))) {
      while (dirent* e = readdir(dir)) names.insert(e->d_name);
      closedir(dir);
    }
    EXPECT_EQ(names, (std::set<std::string>{".", "..", "f", "f2", "l", "sub"}));

    // The backing directory agrees.
    UniqueFd b = Walk(data());
    ASSERT_TRUE(b);
    ASSERT_EQ(fstatat(b.get(), "f", &st, AT_SYMLINK_NOFOLLOW), 0);
    EXPECT_EQ(st.st_mode, S_IFREG | 0600u);
    EXPECT_EQ(st.st_uid, kNobody);
    EXPECT_EQ(st.st_size, 3);
    EXPECT_EQ(st.st_nlink, 2u);
    ASSERT_EQ(fstatat(b.get(), "l", &st, AT_SYMLINK_NOFOLLOW), 0);
    EXPECT_EQ(st.st_uid, kNobody);
    d.Reset();  // the mount must not be busy
    EXPECT_EQ(Unmount(), 0);
    auto rs = Records();
    std::string f = RelDir() + "/f";
    EXPECT_GE(Find(rs, Op::kSetattr, f).size(), 2u);  // chmod, chown (+ truncate's times)
    EXPECT_EQ(Find(rs, Op::kTruncate, f).size(), 1u);
    EXPECT_EQ(Find(rs, Op::kLink, f, RelDir() + "/f2").size(), 1u);
  }
};

// 17 levels: 4,351 bytes, deeper than PATH_MAX.
TEST_F(DeepTreeTest, OperationsBeyondPathMaxWork) {
  depth_ = 17;
  CheckOperations();
}

// 16 levels: the directory's path is 4,095 bytes, its entries' 4,097 (the
// report: lookup works, chmod/chown/truncate/link failed with ENAMETOOLONG).
TEST_F(DeepTreeTest, OperationsOnPathsCloseToPathMaxWork) {
  depth_ = 16;
  CheckOperations();
}

// Item 4: listxattr does not show trusted.* names to callers without
// CAP_SYS_ADMIN (the kernel hides them on ext4 too).
TEST_F(HardeningTest, TrustedXattrNamesAreHiddenFromUsers) {
  Options o;
  o.args = {"--xattr", "on", "-o", "allow_other"};
  ASSERT_NO_FATAL_FAILURE(Mount(o));
  ASSERT_TRUE(WriteFile(mp("f"), "x", 0644));
  ASSERT_EQ(setxattr(mp("f").c_str(), "trusted.secret", "1", 1, 0), 0) << strerror(errno);
  ASSERT_EQ(setxattr(mp("f").c_str(), "user.pub", "2", 1, 0), 0) << strerror(errno);
  auto names = [](const char* buf, ssize_t n) {
    std::set<std::string> s;
    for (ssize_t i = 0; i < n; i += strlen(buf + i) + 1) s.insert(buf + i);
    return s;
  };
  char buf[512];
  ssize_t n = listxattr(mp("f").c_str(), buf, sizeof buf);
  ASSERT_GT(n, 0) << strerror(errno);
  EXPECT_EQ(names(buf, n), (std::set<std::string>{"trusted.secret", "user.pub"}));

  const std::string f = mp("f");
  ChildReport r = RunAsNobody([&](ChildReport& r) {
    ssize_t probe = listxattr(f.c_str(), nullptr, 0);
    r.err[0] = Errno(probe >= 0);
    ssize_t got = listxattr(f.c_str(), r.text, sizeof r.text);
    r.err[1] = Errno(got >= 0);
    r.err[2] = probe == got ? 0 : 1;  // the size probe agrees with the list
  });
  ASSERT_EQ(r.drop_err, 0) << strerror(r.drop_err);
  EXPECT_EQ(r.err[0], 0) << strerror(r.err[0]);
  EXPECT_EQ(r.err[1], 0) << strerror(r.err[1]);
  EXPECT_EQ(r.err[2], 0) << "listxattr size probe and list differ";
  size_t len = 0;
  while (len + 1 < sizeof r.text && (r.text[len] || r.text[len + 1])) ++len;
  EXPECT_EQ(names(r.text, len ? len + 1 : 0), (std::set<std::string>{"user.pub"}));
  EXPECT_EQ(Unmount(), 0);
}

// Item 14: a change through one hard link is journaled under every name the
// daemon knows, so that the target's copies of all names are refreshed.
TEST_F(HardeningTest, WriteThroughOneHardLinkCoversEveryName) {
  ASSERT_NO_FATAL_FAILURE(Mount());
  ASSERT_TRUE(WriteFile(mp("h1"), "a", 0644));
  ASSERT_EQ(link(mp("h1").c_str(), mp("h2").c_str()), 0) << strerror(errno);
  {
    UniqueFd fd(open(mp("h1").c_str(), O_WRONLY | O_APPEND));
    ASSERT_TRUE(fd) << strerror(errno);
    ASSERT_EQ(write(fd.get(), "b", 1), 1);
  }
  {
    // Through the other name, in place (no O_TRUNC, no create).
    UniqueFd fd(open(mp("h2").c_str(), O_WRONLY));
    ASSERT_TRUE(fd) << strerror(errno);
    ASSERT_EQ(pwrite(fd.get(), "c", 1, 2), 1);
  }
  ASSERT_EQ(truncate(mp("h1").c_str(), 2), 0);
  EXPECT_EQ(ReadFile(data("h2")).value_or(""), "ab");
  EXPECT_EQ(Unmount(), 0);
  auto rs = Records();
  std::string all;
  for (const auto& r : rs) all += "\n  " + Dump(r);
  EXPECT_TRUE(DataCovered(rs, "h2", 1, 1)) << "the append through h1:" << all;
  EXPECT_TRUE(DataCovered(rs, "h1", 2, 1)) << "the write through h2:" << all;
  EXPECT_FALSE(Find(rs, Op::kClose, "h2").empty()) << all;
  EXPECT_EQ(Find(rs, Op::kTruncate, "h2").size(), 1u) << all;
}

}  // namespace
}  // namespace scribefs::it
