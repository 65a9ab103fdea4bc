// syncfs(2) on the mount under unlink, rename and rmdir (writeback cache on,
// the default). syncfs reports the superblock's writeback error, which the
// kernel sets when a request it sends on its own fails: the WRITE of cached
// pages, and the SETATTR of the cached times it sends right after every
// unlink, rename and rmdir (fuse_update_ctime) for the inode whose name went,
// even when that was its last name. A daemon that answers any of these with
// an error makes every later syncfs on the mount fail (and `scribectl pause`
// warn), where a native filesystem never does; a failed WRITE also drops the
// cached data. Each test opens the mount for syncfs before the operations, as
// an application would, and expects syncfs to return 0 and the data to be
// where a native filesystem keeps it.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <string>
#include <vector>

#include "common/unique_fd.h"
#include "tests/integration/mount_fixture.h"

namespace scribefs::it {
namespace {

class SyncfsTest : public MountTest {
 protected:
  void SetUp() override {
    MountTest::SetUp();
    if (HasFatalFailure()) return;
    Mount();
    if (HasFatalFailure()) return;
    mount_fd_ = UniqueFd(open(mp().c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    ASSERT_TRUE(mount_fd_) << strerror(errno);
    // Nothing failed before the test's own operations.
    ASSERT_EQ(syncfs(mount_fd_.get()), 0) << strerror(errno);
  }

  void TearDown() override {
    mount_fd_.Reset();  // an open directory would keep the mount busy
    MountTest::TearDown();
  }

  // syncfs on the mount; "" when it returned 0, else its error.
  std::string Syncfs() {
    if (syncfs(mount_fd_.get()) == 0) return "";
    return strerror(errno);
  }

  // Writes content into a new file through the page cache and closes it.
  void Put(const std::string& rel, const std::string& content) {
    ASSERT_TRUE(WriteFile(mp(rel), content)) << rel << ": " << strerror(errno);
  }

  UniqueFd mount_fd_;
};

TEST_F(SyncfsTest, AfterUnlinkOfAClosedFile) {
  Put("f", Pattern(10000, 1));
  ASSERT_EQ(unlink(mp("f").c_str()), 0) << strerror(errno);
  EXPECT_EQ(Syncfs(), "");
  EXPECT_FALSE(ReadFile(data("f")));
}

TEST_F(SyncfsTest, AfterRenameOverAnExistingFile) {
  const std::string a = Pattern(7000, 2);
  Put("a", a);
  Put("b", Pattern(3000, 3));
  ASSERT_EQ(rename(mp("a").c_str(), mp("b").c_str()), 0) << strerror(errno);
  EXPECT_EQ(Syncfs(), "");
  EXPECT_EQ(ReadFile(data("b")), a);
}

TEST_F(SyncfsTest, AfterRmdirAndRemovingATree) {
  ASSERT_EQ(mkdir(mp("d").c_str(), 0755), 0) << strerror(errno);
  ASSERT_EQ(mkdir(mp("t").c_str(), 0755), 0) << strerror(errno);
  ASSERT_EQ(mkdir(mp("t/sub").c_str(), 0755), 0) << strerror(errno);
  Put("t/sub/x", Pattern(5000, 4));
  ASSERT_EQ(symlink("x", mp("t/sub/l").c_str()), 0) << strerror(errno);
  ASSERT_EQ(rmdir(mp("d").c_str()), 0) << strerror(errno);
  EXPECT_EQ(Syncfs(), "") << "after rmdir";
  RemoveTree(mp("t"));
  EXPECT_EQ(Syncfs(), "") << "after removing a tree";
  EXPECT_TRUE(ListDir(data()).empty());
}

// An inode that is unlinked while open stays writable (POSIX): cached
// writes before and after the unlink reach the open file, and neither the
// kernel's writeback nor syncfs fails.
TEST_F(SyncfsTest, OpenUnlinkedFileStaysWritable) {
  const std::string before = Pattern(20000, 5), after = Pattern(9000, 6);
  UniqueFd fd(open(mp("u").c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0644));
  ASSERT_TRUE(fd) << strerror(errno);
  ASSERT_EQ(pwrite(fd.get(), before.data(), before.size(), 0), ssize_t(before.size()));
  ASSERT_EQ(unlink(mp("u").c_str()), 0) << strerror(errno);
  EXPECT_EQ(Syncfs(), "");
  ASSERT_EQ(pwrite(fd.get(), after.data(), after.size(), before.size()), ssize_t(after.size()));
  EXPECT_EQ(Syncfs(), "");
  EXPECT_EQ(fsync(fd.get()), 0) << strerror(errno);
  struct stat st;
  ASSERT_EQ(fstat(fd.get(), &st), 0) << strerror(errno);
  EXPECT_EQ(st.st_nlink, 0u);
  EXPECT_EQ(st.st_size, off_t(before.size() + after.size()));
  // Past the kernel's cache: drop it, then read what the daemon's file holds.
  ASSERT_EQ(posix_fadvise(fd.get(), 0, 0, POSIX_FADV_DONTNEED), 0);
  std::string back(before.size() + after.size(), '\0');
  ASSERT_EQ(pread(fd.get(), back.data(), back.size(), 0), ssize_t(back.size()));
  EXPECT_TRUE(back == before + after) << "the open unlinked file lost data";
  fd.Reset();
  EXPECT_EQ(Syncfs(), "");
  EXPECT_FALSE(ReadFile(data("u")));
}

// A file renamed (and its directory renamed) while open: cached data
// written before and after reaches DATADIR under the new name, and the
// journal covers it there.
TEST_F(SyncfsTest, OpenFileRenamedKeepsItsData) {
  const std::string before = Pattern(12000, 7), after = Pattern(4000, 8);
  ASSERT_EQ(mkdir(mp("d").c_str(), 0755), 0) << strerror(errno);
  UniqueFd fd(open(mp("d/r").c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644));
  ASSERT_TRUE(fd) << strerror(errno);
  ASSERT_EQ(write(fd.get(), before.data(), before.size()), ssize_t(before.size()));
  ASSERT_EQ(rename(mp("d/r").c_str(), mp("d/s").c_str()), 0) << strerror(errno);
  ASSERT_EQ(rename(mp("d").c_str(), mp("e").c_str()), 0) << strerror(errno);
  EXPECT_EQ(Syncfs(), "");
  ASSERT_EQ(write(fd.get(), after.data(), after.size()), ssize_t(after.size()));
  fd.Reset();
  EXPECT_EQ(Syncfs(), "");
  EXPECT_EQ(ReadFile(data("e/s")), before + after);
  mount_fd_.Reset();
  ASSERT_EQ(Unmount(), 0);
  // The journal: the create, both renames, and a close under the new name
  // that names the whole size (the replay uploads e/s as it is then).
  std::vector<Record> rs = Records();
  EXPECT_EQ(Find(rs, Op::kCreate, "d/r").size(), 1u);
  EXPECT_EQ(Find(rs, Op::kRename, "d/r", "d/s").size(), 1u);
  EXPECT_EQ(Find(rs, Op::kRename, "d", "e").size(), 1u);
  auto closes = Find(rs, Op::kClose, "e/s");
  ASSERT_FALSE(closes.empty());
  EXPECT_EQ(closes.back().size, int64_t(before.size() + after.size()));
}

}  // namespace
}  // namespace scribefs::it
