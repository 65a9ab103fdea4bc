// `scribectl flush && scribectl verify` right after a copy into the mount
// (issue 13): with the kernel's writeback cache the kernel keeps its own
// mtime for a file it wrote (taken at write(2) time) while the daemon's
// pwrite gives the backing file a later one. After `flush`, the mtime an
// application sees through the mount, the backing file's and the target's
// must be one and the same, so that verify (which compares the target with
// DATADIR as the mount shows it) passes. Both with a separate MOUNTPOINT and
// mounted over DATADIR itself (where the backing files are reachable only
// through a descriptor opened before the mount), with `cp -r` (times are the
// kernel's) and `cp -a` (times set explicitly after writing).
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/unique_fd.h"
#include "tests/control/control_util.h"
#include "uploader/object_layout.h"

namespace scribefs::ctltest {
namespace {

constexpr int kFiles = 300;

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
      struct timespec tv[2] = {{1600000000, 123456789}, {1600000000, 123456789}};
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

  std::string src_, url_;
  std::vector<std::string> files_;
  UniqueFd backing_;
  std::unique_ptr<ObjectStore> store_;
};

TEST_P(FlushMtimeTest, FlushThenVerifyPassesRightAfterACopy) {
  ASSERT_NO_FATAL_FAILURE(MakeSource());
  ASSERT_NO_FATAL_FAILURE(MountIt());
  RunResult cp = it::RunCommand({"cp", GetParam().archive ? "-a" : "-r", src_, mp("tree")}, 120);
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
    struct stat via_mount {}, on_disk {};
    ASSERT_EQ(lstat(mp(path).c_str(), &via_mount), 0) << path << ": " << strerror(errno);
    ASSERT_EQ(fstatat(backing_.get(), path.c_str(), &on_disk, AT_SYMLINK_NOFOLLOW), 0) << path;
    auto head = store_->Head(ObjectKey(path, false));
    ASSERT_TRUE(head.ok()) << path;
    DecodedMetadata meta = DecodeMetadata(head->metadata);
    ASSERT_TRUE(meta.mtime_ns.has_value() && meta.mtime_exact) << path;
    int64_t mount_ns = it::MtimeNs(via_mount), disk_ns = it::MtimeNs(on_disk);
    bool same = mount_ns == disk_ns && disk_ns == *meta.mtime_ns;
    if (GetParam().archive) same = same && mount_ns == int64_t(1600000000) * 1000000000 + 123456789;
    if (!same && ++shown <= 5)
      ADD_FAILURE() << path << ": mtime through the mount " << mount_ns << ", on disk " << disk_ns
                    << ", in the target " << *meta.mtime_ns;
  }
  EXPECT_EQ(shown, 0) << shown << " of " << kFiles << " files differ";
}

INSTANTIATE_TEST_SUITE_P(Copies, FlushMtimeTest,
                         ::testing::Values(CopyCase{false, false}, CopyCase{true, false},
                                           CopyCase{false, true}, CopyCase{true, true}),
                         [](const auto& info) {
                           return std::string(info.param.over_mount ? "OverMount" : "Mountpoint") +
                                  (info.param.archive ? "CpA" : "CpR");
                         });

}  // namespace
}  // namespace scribefs::ctltest
