// `scribectl flush && scribectl verify` right after a copy into the mount
// (issue 13): with the kernel's writeback cache the kernel keeps its own
// mtime for a file it wrote (taken at write(2) time) while the daemon's
// pwrite gives the backing file a later one. After `flush`, the mtime an
// application sees through the mount, the backing file's and the target's
// must be one and the same, so that verify (which compares the target with
// DATADIR as the mount shows it) passes. Both with a separate MOUNTPOINT and
// mounted over DATADIR itself (where the backing files are reachable only
// through a descriptor opened before the mount), with `cp -r` (times are the
// kernel's) and `cp -a` (times set explicitly after writing), then again over
// the copy (open with O_TRUNC). And a write into an old file still moves its
// mtime everywhere, with and without the writeback cache.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/unique_fd.h"
#include "tests/control/control_util.h"
#include "uploader/object_layout.h"

namespace scribefs::ctltest {
namespace {

constexpr int kFiles = 300;
// The source files' mtime, which cp -a keeps.
constexpr int64_t kSourceMtimeNs = int64_t{1600000000} * 1000000000 + 123456789;

struct CopyCase {
  bool over_mount;
  bool archive;  // cp -a instead of cp -r
};

class FlushMtimeTest : public it::MountTest, public ::testing::WithParamInterface<CopyCase> {
 protected:
  // A source tree outside the mount: kFiles small files in a few directories.
  void MakeSource() {
    src_ = root() + "/src";
    ASSERT_EQ(mkdir(src_.c_str(), 0755), 0);
    for (int d = 0; d < 6; ++d)
      ASSERT_EQ(mkdir((src_ + "/d" + std::to_string(d)).c_str(), 0755), 0);
    for (int i = 0; i < kFiles; ++i) {
      std::string rel = "d" + std::to_string(i % 6) + "/f" + std::to_string(i) + ".txt";
      files_.push_back(rel);
      ASSERT_TRUE(it::WriteFile(src_ + "/" + rel, it::Pattern(100 + (i * 37) % 3000, i)));
    }
    // Source times well in the past, so that cp -a's are told apart from now.
    for (const auto& rel : files_) {
      const struct timespec t = {kSourceMtimeNs / 1000000000, kSourceMtimeNs % 1000000000};
      const struct timespec tv[2] = {t, t};
      ASSERT_EQ(utimensat(AT_FDCWD, (src_ + "/" + rel).c_str(), tv, 0), 0);
    }
  }

  void MountIt() {
    Options o;
    o.over_mount = GetParam().over_mount;
    url_ = "file://" + root() + "/target";
    o.args = {"--target", url_};
    // The backing directory as the daemon sees it, also under an over-mount.
    backing_.Reset(open(data().c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC));
    ASSERT_TRUE(backing_) << strerror(errno);
    Mount(o);
    store_ = OpenTarget(url_, std::nullopt);
    ASSERT_NE(store_, nullptr);
  }

  RunResult Ctl(const std::vector<std::string>& args, double timeout_s = 120) {
    return Scribectl(state(), args, timeout_s);
  }
  void CopyFlushAndCheck();

  std::string src_, url_;
  std::vector<std::string> files_;
  UniqueFd backing_;
  std::unique_ptr<ObjectStore> store_;
};

// cp into the mount, flush, then verify and compare the three mtimes.
void FlushMtimeTest::CopyFlushAndCheck() {
  // `cp -r SRC DEST` copies into DEST/src once DEST exists: name the contents.
  RunResult cp =
      it::RunCommand({"cp", GetParam().archive ? "-a" : "-r", "-T", src_, mp("tree")}, 120);
  ASSERT_EQ(cp.exit_code, 0) << cp.Describe();
  RunResult f = Ctl({"flush", "--timeout", "120"});
  ASSERT_EQ(f.exit_code, 0) << f.Describe();

  RunResult v = Ctl({"--json", "verify"});
  EXPECT_EQ(v.exit_code, 0) << v.Describe() << "\nstdout: " << v.out.substr(0, 3000);
  json j = JsonOut(v);
  ASSERT_TRUE(j.is_object());
  EXPECT_TRUE(j.value("identical", false)) << j.dump(1).substr(0, 3000);
  EXPECT_EQ(j.value("checked", 0), kFiles + 7) << j.dump(1).substr(0, 3000);  // + tree, 6 dirs

  // The same mtime through the mount, on the disk and in the target.
  int shown = 0;
  for (const auto& rel : files_) {
    std::string path = "tree/" + rel;
    struct stat via_mount {
    }, on_disk{};
    ASSERT_EQ(lstat(mp(path).c_str(), &via_mount), 0) << path << ": " << strerror(errno);
    ASSERT_EQ(fstatat(backing_.get(), path.c_str(), &on_disk, AT_SYMLINK_NOFOLLOW), 0) << path;
    auto head = store_->Head(ObjectKey(path, false));
    ASSERT_TRUE(head.ok()) << path;
    DecodedMetadata meta = DecodeMetadata(head->metadata);
    ASSERT_TRUE(meta.mtime_ns.has_value() && meta.mtime_exact) << path;
    int64_t mount_ns = it::MtimeNs(via_mount), disk_ns = it::MtimeNs(on_disk);
    bool same = mount_ns == disk_ns && disk_ns == *meta.mtime_ns;
    if (GetParam().archive) same = same && mount_ns == kSourceMtimeNs;
    if (!same && ++shown <= 5)
      ADD_FAILURE() << path << ": mtime through the mount " << mount_ns << ", on disk " << disk_ns
                    << ", in the target " << *meta.mtime_ns;
  }
  EXPECT_EQ(shown, 0) << shown << " of " << kFiles << " files differ";
}

TEST_P(FlushMtimeTest, FlushThenVerifyPassesRightAfterACopy) {
  ASSERT_NO_FATAL_FAILURE(MakeSource());
  ASSERT_NO_FATAL_FAILURE(MountIt());
  ASSERT_NO_FATAL_FAILURE(CopyFlushAndCheck());
  // Again over the copy: every file is now opened with O_TRUNC and rewritten.
  ASSERT_NO_FATAL_FAILURE(CopyFlushAndCheck());
}

INSTANTIATE_TEST_SUITE_P(Copies, FlushMtimeTest,
                         ::testing::Values(CopyCase{false, false}, CopyCase{true, false},
                                           CopyCase{false, true}, CopyCase{true, true}),
                         [](const auto& info) {
                           return std::string(info.param.over_mount ? "OverMount" : "Mountpoint") +
                                  (info.param.archive ? "CpA" : "CpR");
                         });

// Keeping the disk's mtime to the kernel's must not stop writes from moving
// it: a write into an old file gives it a new mtime through the mount, on
// disk and in the target, with the writeback cache (the kernel's SETATTR
// moves it) and without (the daemon's write does).
class WriteMtimeTest : public it::MountTest, public ::testing::WithParamInterface<bool> {};

TEST_P(WriteMtimeTest, AWriteMovesTheMtimeEverywhere) {
  ASSERT_TRUE(it::WriteFile(data("old.txt"), "old content\n"));
  const struct timespec old = {1500000000, 0};
  const struct timespec tv[2] = {old, old};
  ASSERT_EQ(utimensat(AT_FDCWD, data("old.txt").c_str(), tv, 0), 0);
  UniqueFd backing(open(data().c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC));
  ASSERT_TRUE(backing) << strerror(errno);
  std::string url = "file://" + root() + "/target";
  Options o;
  o.over_mount = true;
  o.args = {"--target", url, "--writeback", GetParam() ? "on" : "off"};
  Mount(o);
  {
    UniqueFd fd(open(mp("old.txt").c_str(), O_WRONLY | O_APPEND | O_CLOEXEC));
    ASSERT_TRUE(fd) << strerror(errno);
    ASSERT_EQ(write(fd.get(), "more\n", 5), 5);
  }
  RunResult f = Scribectl(state(), {"flush", "--timeout", "60"});
  ASSERT_EQ(f.exit_code, 0) << f.Describe();
  struct stat via_mount {
  }, on_disk{};
  ASSERT_EQ(stat(mp("old.txt").c_str(), &via_mount), 0);
  ASSERT_EQ(fstatat(backing.get(), "old.txt", &on_disk, 0), 0);
  auto store = OpenTarget(url, std::nullopt);
  ASSERT_NE(store, nullptr);
  auto head = store->Head("old.txt");
  ASSERT_TRUE(head.ok());
  DecodedMetadata meta = DecodeMetadata(head->metadata);
  ASSERT_TRUE(meta.mtime_ns.has_value());
  EXPECT_GT(via_mount.st_mtim.tv_sec, old.tv_sec + 86400);
  EXPECT_EQ(it::MtimeNs(via_mount), it::MtimeNs(on_disk));
  EXPECT_EQ(*meta.mtime_ns, it::MtimeNs(on_disk));
  EXPECT_EQ(on_disk.st_size, 17);
  RunResult v = Scribectl(state(), {"verify"});
  EXPECT_EQ(v.exit_code, 0) << v.Describe() << "\n" << v.out;
}

INSTANTIATE_TEST_SUITE_P(Writeback, WriteMtimeTest, ::testing::Bool(),
                         [](const auto& info) { return info.param ? "On" : "Off"; });

}  // namespace
}  // namespace scribefs::ctltest
