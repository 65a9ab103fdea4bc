// OpenLocalForRead: what an upload worker opens is the regular file it
// looked at, never a FIFO that blocks it forever.
#include "uploader/local_open.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <future>

#include "tests/uploader/test_util.h"

namespace scribefs {
namespace {

using testing_util::TempDir;

class LocalOpenTest : public ::testing::Test {
 protected:
  void SetUp() override {
    root_ = UniqueFd(open(dir_.path().c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    ASSERT_TRUE(root_.valid());
  }
  std::string P(const std::string& rel) { return dir_.path() + "/" + rel; }

  TempDir dir_;
  UniqueFd root_;
};

TEST_F(LocalOpenTest, RegularFileOpensWithItsOwnStat) {
  ASSERT_TRUE(testing_util::WriteFile(P("f"), "hello").valid());
  struct stat looked;
  ASSERT_EQ(lstat(P("f").c_str(), &looked), 0);
  auto f = OpenLocalForRead(root_.get(), "f", &looked);
  ASSERT_TRUE(f.ok()) << f.status().ToString();
  EXPECT_EQ(f->st.st_ino, looked.st_ino);
  char buf[16];
  EXPECT_EQ(read(f->fd.get(), buf, sizeof buf), 5);
}

// The race, made deterministic: the look saw a regular file, and by the open
// the path is a FIFO with no writer. A blocking open never returns, so the
// open runs in a thread and a writer is supplied after a few seconds to set
// it free: the test then fails instead of hanging.
TEST_F(LocalOpenTest, FifoRenamedOverTheFileDoesNotBlockAndIsChangedDuring) {
  ASSERT_TRUE(testing_util::WriteFile(P("f"), "hello").valid());
  struct stat looked;
  ASSERT_EQ(lstat(P("f").c_str(), &looked), 0);
  ASSERT_EQ(mkfifo(P("fifo").c_str(), 0644), 0);
  ASSERT_EQ(rename(P("fifo").c_str(), P("f").c_str()), 0);

  auto done =
      std::async(std::launch::async, [&] { return OpenLocalForRead(root_.get(), "f", &looked); });
  if (done.wait_for(std::chrono::seconds(3)) != std::future_status::ready) {
    UniqueFd writer(open(P("f").c_str(), O_WRONLY | O_NONBLOCK | O_CLOEXEC));  // frees the open
    done.wait();
    FAIL() << "opening a FIFO blocked";
  }
  auto f = done.get();
  ASSERT_FALSE(f.ok());
  EXPECT_EQ(f.status().code(), ESTALE) << f.status().ToString();
}

TEST_F(LocalOpenTest, FifoWithoutALookIsRefusedToo) {
  ASSERT_EQ(mkfifo(P("f").c_str(), 0644), 0);
  auto done = std::async(std::launch::async, [&] { return OpenLocalForRead(root_.get(), "f"); });
  if (done.wait_for(std::chrono::seconds(3)) != std::future_status::ready) {
    UniqueFd writer(open(P("f").c_str(), O_WRONLY | O_NONBLOCK | O_CLOEXEC));
    done.wait();
    FAIL() << "opening a FIFO blocked";
  }
  auto f = done.get();
  ASSERT_FALSE(f.ok());
  EXPECT_EQ(f.status().code(), ESTALE);
}

TEST_F(LocalOpenTest, AnotherRegularFileRenamedOverIsChangedDuring) {
  ASSERT_TRUE(testing_util::WriteFile(P("f"), "one").valid());
  struct stat looked;
  ASSERT_EQ(lstat(P("f").c_str(), &looked), 0);
  ASSERT_TRUE(testing_util::WriteFile(P("g"), "two").valid());
  ASSERT_EQ(rename(P("g").c_str(), P("f").c_str()), 0);
  auto f = OpenLocalForRead(root_.get(), "f", &looked);
  ASSERT_FALSE(f.ok());
  EXPECT_EQ(f.status().code(), ESTALE);
}

TEST_F(LocalOpenTest, SymlinkRenamedOverIsNotFollowed) {
  ASSERT_TRUE(testing_util::WriteFile(P("target"), "secret").valid());
  ASSERT_EQ(symlink("target", P("f").c_str()), 0);
  auto f = OpenLocalForRead(root_.get(), "f");
  ASSERT_FALSE(f.ok());
  EXPECT_TRUE(f.status().code() == ESTALE || f.status().code() == ENOENT) << f.status().ToString();
}

TEST_F(LocalOpenTest, GoneIsEnoent) {
  auto f = OpenLocalForRead(root_.get(), "nothing");
  ASSERT_FALSE(f.ok());
  EXPECT_EQ(f.status().code(), ENOENT);
}

}  // namespace
}  // namespace scribefs
