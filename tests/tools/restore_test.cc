// The restore engine (tools/restore.h) against the in-memory ObjectStore of
// the tests (tests/uploader/memory_store.h), which holds whatever a test puts
// there with PutRaw, hostile keys included: the safety rules,
// every kind of entry, resume, --path, ranges, checkpoint manifests, and that
// a failed download leaves nothing behind. No mount, no server: fast. The
// end-to-end tests on real mounts and RGW are in restore_e2e_test.cc.
#include "tools/restore.h"

#include <dirent.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <cstring>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <set>
#include <string>
#include <vector>

#include "common/unique_fd.h"
#include "tests/uploader/memory_store.h"
#include "uploader/checkpoint.h"
#include "uploader/digest.h"

namespace scribefs::ctl {
namespace {

std::string Md5Hex(const std::string& s) { return HexEncode(*Md5(s)); }
std::string Sha256Hex(const std::string& s) { return HexEncode(*Sha256(s)); }

// Metadata as the uploader writes it.
Metadata Meta(mode_t mode, int64_t mtime_ns, uid_t uid = 0, gid_t gid = 0) {
  return {{"mode", std::to_string(mode)},
          {"uid", std::to_string(uid)},
          {"gid", std::to_string(gid)},
          {"mtime", std::to_string(mtime_ns / 1000000000)},
          {"scribefs-mtime-ns", std::to_string(mtime_ns)}};
}

constexpr int64_t kT1 = 1700000000123456789;
constexpr int64_t kT2 = 1600000000987654321;

class RestoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/scribefs-restore-test-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    base_ = tmpl;
    dest_ = base_ + "/dest";
    canary_ = base_ + "/canary";
    ASSERT_EQ(mkdir(dest_.c_str(), 0755), 0);
    ASSERT_EQ(mkdir(canary_.c_str(), 0755), 0);
  }
  void TearDown() override {
    std::string cmd = "rm -rf '" + base_ + "'";
    ASSERT_EQ(system(cmd.c_str()), 0);
  }

  RestoreSummary Restore(RestoreOptions o = {}) {
    UniqueFd root(open(dest_.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    EXPECT_TRUE(root.valid());
    Restorer r(&store_, root.get(), &filter_, o);
    auto s = r.Run();
    EXPECT_TRUE(s.ok()) << s.status().ToString();
    if (!s.ok()) return {};
    last_progress_paths_ = r.progress().done_paths;
    return *s;
  }

  std::string Read(const std::string& rel) {
    std::string out;
    UniqueFd fd(open((dest_ + "/" + rel).c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC));
    if (!fd.valid()) return "(missing)";
    char buf[65536];
    ssize_t n;
    while ((n = read(fd.get(), buf, sizeof buf)) > 0) out.append(buf, n);
    return out;
  }
  struct stat Lstat(const std::string& rel) {
    struct stat st {};
    if (lstat((dest_ + "/" + rel).c_str(), &st) != 0) st.st_mode = 0;
    return st;
  }
  static int64_t Mtime(const struct stat& st) {
    return int64_t(st.st_mtim.tv_sec) * 1000000000 + st.st_mtim.tv_nsec;
  }
  // Every name below dir (recursive, relative), not following symlinks.
  static std::set<std::string> Tree(const std::string& dir, const std::string& rel = "") {
    std::set<std::string> out;
    DIR* d = opendir((dir + (rel.empty() ? "" : "/" + rel)).c_str());
    if (!d) return out;
    while (dirent* e = readdir(d)) {
      std::string n = e->d_name;
      if (n == "." || n == "..") continue;
      std::string r = rel.empty() ? n : rel + "/" + n;
      out.insert(r);
      if (e->d_type == DT_DIR) {
        for (auto& s : Tree(dir, r)) out.insert(s);
      }
    }
    closedir(d);
    return out;
  }
  static std::string Names(const std::set<std::string>& s) {
    std::string out;
    for (const auto& n : s) out += n + " ";
    return out;
  }

  MemoryStore store_;
  ExcludeFilter filter_{DefaultExcludes()};
  std::string base_, dest_, canary_;
  uint64_t last_progress_paths_ = 0;
};

TEST(UnsafeKeyReason, RefusesEscapesAndOddPaths) {
  EXPECT_EQ(UnsafeKeyReason("a"), "");
  EXPECT_EQ(UnsafeKeyReason("a/b/c.txt"), "");
  EXPECT_EQ(UnsafeKeyReason("dir/"), "");
  EXPECT_EQ(UnsafeKeyReason("..a/b..c/..."), "");
  for (const char* bad : {"", "/", "/etc/x", "../x", "a/../../x", "a/..", "..", ".", "./a", "a/./b",
                          "a//b", "a//", "//", "a/b/../c/"}) {
    EXPECT_NE(UnsafeKeyReason(bad), "") << "\"" << bad << "\"";
  }
  EXPECT_NE(UnsafeKeyReason(std::string("a\0b", 3)), "");
}

TEST_F(RestoreTest, EveryKindWithItsAttributes) {
  store_.PutRaw("a.txt", "hello", Meta(S_IFREG | 0640, kT1));
  store_.PutRaw("exec.sh", "#!/bin/sh\n", Meta(S_IFREG | 0755, kT2));
  store_.PutRaw("d/", "", Meta(S_IFDIR | 0750, kT2));
  store_.PutRaw("d/nested/deep/f", std::string(100000, 'x'), Meta(S_IFREG | 0600, kT1));
  store_.PutRaw("empty/", "", Meta(S_IFDIR | 0700, kT1));
  store_.PutRaw("link", "a.txt", Meta(S_IFLNK | 0777, kT2));
  store_.PutRaw("dangling", "/nonexistent/target", Meta(S_IFLNK | 0777, kT1));
  store_.PutRaw("fifo", "", Meta(S_IFIFO | 0644, kT1));
  store_.PutRaw("plain", "no metadata");  // from another S3 client
  store_.PutRaw("e", "");
  RestoreSummary s = Restore();
  EXPECT_EQ(s.failed.size(), 0u) << s.failed[0].path << ": " << s.failed[0].error;
  EXPECT_EQ(s.refused.size(), 0u);
  EXPECT_EQ(s.restored, 10u);
  EXPECT_EQ(last_progress_paths_, 10u);

  EXPECT_EQ(Read("a.txt"), "hello");
  EXPECT_EQ(Lstat("a.txt").st_mode, S_IFREG | 0640u);
  EXPECT_EQ(Mtime(Lstat("a.txt")), kT1);
  EXPECT_EQ(Lstat("exec.sh").st_mode, S_IFREG | 0755u);
  EXPECT_EQ(Mtime(Lstat("exec.sh")), kT2);
  EXPECT_EQ(Read("d/nested/deep/f"), std::string(100000, 'x'));
  EXPECT_EQ(Lstat("d").st_mode, S_IFDIR | 0750u);
  EXPECT_EQ(Mtime(Lstat("d")), kT2) << "a directory's mtime is set after its contents";
  EXPECT_TRUE(S_ISDIR(Lstat("d/nested").st_mode));
  EXPECT_EQ(Lstat("empty").st_mode, S_IFDIR | 0700u);
  EXPECT_EQ(Mtime(Lstat("empty")), kT1);
  ASSERT_TRUE(S_ISLNK(Lstat("link").st_mode));
  char buf[256] = {};
  ASSERT_GT(readlink((dest_ + "/link").c_str(), buf, sizeof buf), 0);
  EXPECT_STREQ(buf, "a.txt");
  EXPECT_EQ(Mtime(Lstat("link")), kT2);
  EXPECT_TRUE(S_ISLNK(Lstat("dangling").st_mode));
  EXPECT_EQ(Lstat("fifo").st_mode, S_IFIFO | 0644u);
  EXPECT_EQ(Read("plain"), "no metadata");
  EXPECT_EQ(Lstat("plain").st_mode, S_IFREG | 0644u);
  EXPECT_EQ(Lstat("plain").st_mtim.tv_sec, 1700000000) << "Last-Modified";
  EXPECT_EQ(Read("e"), "");
  // No temporary file anywhere.
  for (const auto& n : Tree(dest_)) EXPECT_EQ(n.find("scribefs-restore"), std::string::npos) << n;
}

TEST_F(RestoreTest, HostileKeysAreRefusedAndNothingLeavesTheDirectory) {
  store_.PutRaw("../x", "escape");
  store_.PutRaw("/etc/x", "escape");
  store_.PutRaw("a/../../x", "escape");
  store_.PutRaw("a//b", "odd");
  store_.PutRaw("./dot", "odd");
  store_.PutRaw(std::string("nul\0byte", 8), "odd");
  // A symlink to a directory outside, then a key below it.
  store_.PutRaw("link", canary_, Meta(S_IFLNK | 0777, kT1));
  store_.PutRaw("link/evil", "escape");
  store_.PutRaw("link/deeper/evil", "escape");
  store_.PutRaw("link2", canary_, Meta(S_IFLNK | 0777, kT1));
  store_.PutRaw("link2/", "", Meta(S_IFDIR | 0755, kT1));
  store_.PutRaw("good", "fine");
  RestoreSummary s = Restore();
  std::set<std::string> refused;
  for (const auto& r : s.refused) refused.insert(r.key);
  EXPECT_EQ(refused, (std::set<std::string>{"../x", "/etc/x", "a/../../x", "a//b", "./dot",
                                            std::string("nul\0byte", 8), "link/evil",
                                            "link/deeper/evil", "link2/"}));
  EXPECT_EQ(s.failed.size(), 0u);
  EXPECT_EQ(Read("good"), "fine");
  EXPECT_TRUE(S_ISLNK(Lstat("link").st_mode)) << "the symlink itself is restored";
  EXPECT_TRUE(Tree(canary_).empty()) << Names(Tree(canary_));
  EXPECT_EQ(Tree(base_),
            (std::set<std::string>{"dest", "canary", "dest/good", "dest/link", "dest/link2"}))
      << Names(Tree(base_));
}

TEST_F(RestoreTest, SymlinkAlreadyInTheDestinationIsNeverFollowed) {
  ASSERT_EQ(symlink(canary_.c_str(), (dest_ + "/sub").c_str()), 0);
  ASSERT_EQ(mkdir((dest_ + "/real").c_str(), 0755), 0);
  ASSERT_EQ(symlink(canary_.c_str(), (dest_ + "/real/inner").c_str()), 0);
  store_.PutRaw("sub/x", "escape");
  store_.PutRaw("sub/", "", Meta(S_IFDIR | 0755, kT1));
  store_.PutRaw("real/inner/y", "escape");
  store_.PutRaw("real/ok", "fine");
  RestoreSummary s = Restore();
  std::set<std::string> refused;
  for (const auto& r : s.refused) refused.insert(r.key);
  EXPECT_EQ(refused, (std::set<std::string>{"sub/", "sub/x", "real/inner/y"}));
  EXPECT_EQ(Read("real/ok"), "fine");
  EXPECT_TRUE(Tree(canary_).empty()) << Names(Tree(canary_));
}

TEST_F(RestoreTest, ResumeSkipsWhatIsRightAndFixesWhatIsNot) {
  for (int i = 0; i < 20; ++i) {
    store_.PutRaw("dir" + std::to_string(i % 3) + "/f" + std::to_string(i),
               "content " + std::to_string(i), Meta(S_IFREG | 0644, kT1 + i));
  }
  store_.PutRaw("dir0/", "", Meta(S_IFDIR | 0755, kT2));
  store_.PutRaw("l", "dir0", Meta(S_IFLNK | 0777, kT1));
  store_.PutRaw("big", std::string(300000, 'b'), Meta(S_IFREG | 0600, kT1), "0123abcd-3");
  RestoreSummary first = Restore();
  EXPECT_EQ(first.restored, 23u);
  EXPECT_EQ(first.failed.size(), 0u);

  int gets_before = store_.gets();
  RestoreSummary second = Restore();
  EXPECT_EQ(second.restored, 0u);
  EXPECT_EQ(second.skipped, 23u);
  EXPECT_EQ(second.bytes, 4u) << "only the link target, \"dir0\"";
  EXPECT_EQ(store_.gets() - gets_before, 1) << "files are checked with HEAD, not downloaded";

  // Same size and mtime, other bytes: the hash check catches it.
  std::string path = dest_ + "/dir1/f4";
  struct stat before = Lstat("dir1/f4");
  {
    UniqueFd fd(open(path.c_str(), O_WRONLY | O_CLOEXEC));
    ASSERT_TRUE(fd.valid());
    ASSERT_EQ(pwrite(fd.get(), "X", 1, 0), 1);
  }
  struct timespec times[2] = {before.st_atim, before.st_mtim};
  ASSERT_EQ(utimensat(AT_FDCWD, path.c_str(), times, 0), 0);
  ASSERT_EQ(chmod((dest_ + "/dir2/f5").c_str(), 0600), 0);  // only the mode is wrong
  ASSERT_EQ(unlink((dest_ + "/dir0/f0").c_str()), 0);
  RestoreSummary third = Restore();
  EXPECT_EQ(third.restored, 3u) << "f4, f0 and dir0 (its mtime changed)";
  EXPECT_EQ(third.skipped, 20u);
  EXPECT_EQ(Read("dir1/f4"), "content 4");
  EXPECT_EQ(Read("dir0/f0"), "content 0");
  EXPECT_EQ(Lstat("dir2/f5").st_mode, S_IFREG | 0644u);
  EXPECT_EQ(Mtime(Lstat("dir0")), kT2);
}

TEST_F(RestoreTest, PathLimitsTheRestoreToASubtree) {
  store_.PutRaw("docs/a", "1");
  store_.PutRaw("docs/sub/b", "2");
  store_.PutRaw("docs/", "", Meta(S_IFDIR | 0711, kT1));
  store_.PutRaw("docsx", "3");
  store_.PutRaw("other/c", "4");
  RestoreOptions o;
  o.path = "docs";
  RestoreSummary s = Restore(o);
  EXPECT_EQ(s.restored, 3u);
  EXPECT_EQ(Tree(dest_), (std::set<std::string>{"docs", "docs/a", "docs/sub", "docs/sub/b"}))
      << Names(Tree(dest_));
  EXPECT_EQ(Lstat("docs").st_mode, S_IFDIR | 0711u);
  o.path = "other/c";
  s = Restore(o);
  EXPECT_EQ(s.restored, 1u);
  EXPECT_EQ(Read("other/c"), "4");
}

TEST_F(RestoreTest, ExcludedAndReservedPathsAreLeftOut) {
  store_.PutRaw("keep", "1");
  store_.PutRaw("notes.swp", "2");
  store_.PutRaw(".scribefs/checkpoints/x.json", "{}");
  RestoreSummary s = Restore();
  EXPECT_EQ(s.restored, 1u);
  EXPECT_EQ(s.excluded, 1u);
  EXPECT_EQ(Tree(dest_), (std::set<std::string>{"keep"}));
}

TEST_F(RestoreTest, LargeFilesComeInRangesFromSeveralWorkers) {
  std::string big;
  for (int i = 0; i < 300000; ++i) big += static_cast<char>('a' + (i * 7 + i / 13) % 26);
  store_.PutRaw("big", big, Meta(S_IFREG | 0644, kT1));
  store_.PutRaw("small", "s");
  RestoreOptions o;
  o.range_threshold = 100000;
  o.range_size = 65536;
  o.workers = 4;
  int before = store_.gets();
  RestoreSummary s = Restore(o);
  EXPECT_EQ(s.failed.size(), 0u);
  EXPECT_EQ(store_.gets() - before, 5 + 1) << "300000 bytes in 5 ranges, and the small file";
  EXPECT_TRUE(Read("big") == big);
  EXPECT_EQ(Mtime(Lstat("big")), kT1);
  EXPECT_EQ(s.bytes, big.size() + 1);
}

TEST_F(RestoreTest, AFailedDownloadLeavesNothingBehind) {
  store_.PutRaw("ok", "fine");
  store_.PutRaw("bad", "secret");
  store_.FailGets("bad");
  // A file already under that name stays as it was.
  ASSERT_EQ(mkdir((dest_ + "/d").c_str(), 0755), 0);
  store_.PutRaw("d/bad", "secret");
  store_.FailGets("d/bad");
  {
    UniqueFd fd(open((dest_ + "/d/bad").c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0644));
    ASSERT_EQ(write(fd.get(), "old", 3), 3);
  }
  RestoreSummary s = Restore();
  ASSERT_EQ(s.failed.size(), 2u);
  EXPECT_EQ(s.failed[0].path, "bad");
  EXPECT_NE(s.failed[0].error.find("AccessDenied"), std::string::npos) << s.failed[0].error;
  EXPECT_EQ(s.failed[1].path, "d/bad");
  EXPECT_EQ(Tree(dest_), (std::set<std::string>{"ok", "d", "d/bad"})) << Names(Tree(dest_));
  EXPECT_EQ(Read("d/bad"), "old");
}

TEST_F(RestoreTest, AFileWhereTheTargetHasADirectoryFails) {
  store_.PutRaw("x/y", "1");
  ASSERT_TRUE(UniqueFd(open((dest_ + "/x").c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0644)).valid());
  ASSERT_EQ(mkdir((dest_ + "/z").c_str(), 0755), 0);
  store_.PutRaw("z", "file where a directory is");
  RestoreSummary s = Restore();
  ASSERT_EQ(s.failed.size(), 2u);
  EXPECT_EQ(s.failed[0].path, "x/y");
  EXPECT_EQ(s.failed[1].path, "z");
  EXPECT_TRUE(S_ISDIR(Lstat("z").st_mode));
}

// Whoever can write the bucket chooses the metadata: by default it must not
// get the restoring user's (root's) privileges. Hostile objects: set-user-ID
// files of root and of another user, a set-group-ID file, a directory of
// another user, /dev/mem's twin (char 1,1).
void PutHostile(MemoryStore& store) {
  store.PutRaw("suid-root", "#!/bin/sh\n", Meta(S_IFREG | 04755, kT1, 0, 0));
  store.PutRaw("suid-other", "#!/bin/sh\n", Meta(S_IFREG | 04755, kT1, 4321, 4321));
  store.PutRaw("sgid", "#!/bin/sh\n", Meta(S_IFREG | 02755, kT1, 4321, 4321));
  store.PutRaw("shared/", "", Meta(S_IFDIR | 02775, kT2, 4321, 4321));
  store.PutRaw("shared/f", "x", Meta(S_IFREG | 0644, kT2, 4321, 4321));
  store.PutRaw("link", "suid-root", Meta(S_IFLNK | 0777, kT1, 4321, 4321));
  store.PutRaw("fifo", "", Meta(S_IFIFO | 0600, kT1, 4321, 4321));
  Metadata dev = Meta(S_IFCHR | 0666, kT1, 0, 0);
  dev["rdev"] = std::to_string(makedev(1, 1));
  store.PutRaw("mem", "", dev);
}

TEST_F(RestoreTest, ByDefaultTheTargetGetsNoPrivilege) {
  PutHostile(store_);
  RestoreSummary s = Restore();
  EXPECT_TRUE(s.failed.empty()) << s.failed[0].path << ": " << s.failed[0].error;
  EXPECT_EQ(s.restored, 7u);
  // The device node is left out, counted, with its reason.
  EXPECT_EQ(Lstat("mem").st_mode, 0u) << "a device node was created";
  ASSERT_EQ(s.left_out.size(), 1u);
  EXPECT_EQ(s.left_out[0].path, "mem");
  EXPECT_NE(s.left_out[0].error.find("character device (1, 1)"), std::string::npos)
      << s.left_out[0].error;
  EXPECT_NE(s.left_out[0].error.find("--special"), std::string::npos) << s.left_out[0].error;
  // Everything is the restoring user's, without set-user-ID/set-group-ID bits.
  for (const char* p : {"suid-root", "suid-other", "sgid", "shared", "shared/f", "link", "fifo"}) {
    struct stat st = Lstat(p);
    ASSERT_NE(st.st_mode, 0u) << p << " missing";
    EXPECT_EQ(st.st_uid, geteuid()) << p;
    EXPECT_EQ(st.st_gid, getegid()) << p;
  }
  EXPECT_EQ(Lstat("suid-root").st_mode, S_IFREG | 0755u);
  EXPECT_EQ(Lstat("suid-other").st_mode, S_IFREG | 0755u);
  EXPECT_EQ(Lstat("sgid").st_mode, S_IFREG | 0755u);
  // A directory's set-group-ID only makes new entries take its group (ours).
  EXPECT_EQ(Lstat("shared").st_mode, S_IFDIR | 02775u);
  EXPECT_EQ(Lstat("fifo").st_mode, S_IFIFO | 0600u);
  EXPECT_EQ(Mtime(Lstat("suid-root")), kT1);
  EXPECT_EQ(Mtime(Lstat("link")), kT1);
  // Resume: an existing file given a set-user-ID bit is corrected, not kept.
  ASSERT_EQ(chmod((dest_ + "/suid-root").c_str(), 04755), 0);
  s = Restore();
  EXPECT_EQ(Lstat("suid-root").st_mode, S_IFREG | 0755u);
  EXPECT_EQ(s.left_out.size(), 1u);
}

TEST_F(RestoreTest, SameOwnerAndSpecialRestoreWhatIsStored) {
  if (geteuid() != 0) GTEST_SKIP() << "chown and mknod of a device need root";
  PutHostile(store_);
  RestoreOptions o;
  o.same_owner = true;
  o.special = true;
  RestoreSummary s = Restore(o);
  EXPECT_TRUE(s.failed.empty()) << s.failed[0].path << ": " << s.failed[0].error;
  EXPECT_TRUE(s.left_out.empty());
  EXPECT_EQ(s.restored, 8u);
  EXPECT_EQ(Lstat("suid-root").st_mode, S_IFREG | 04755u);
  EXPECT_EQ(Lstat("suid-root").st_uid, 0u);
  EXPECT_EQ(Lstat("suid-other").st_mode, S_IFREG | 04755u);
  EXPECT_EQ(Lstat("suid-other").st_uid, 4321u);
  EXPECT_EQ(Lstat("sgid").st_mode, S_IFREG | 02755u);
  EXPECT_EQ(Lstat("sgid").st_gid, 4321u);
  EXPECT_EQ(Lstat("shared").st_uid, 4321u);
  EXPECT_EQ(Lstat("link").st_uid, 4321u);
  EXPECT_EQ(Lstat("fifo").st_uid, 4321u);
  struct stat mem = Lstat("mem");
  EXPECT_EQ(mem.st_mode, S_IFCHR | 0666u);
  EXPECT_EQ(mem.st_rdev, makedev(1, 1));
  EXPECT_EQ(Mtime(mem), kT1);
  // Resume keeps them all.
  s = Restore(o);
  EXPECT_EQ(s.restored, 0u);
  EXPECT_EQ(s.skipped, 8u);
}

TEST(RestorePolicy, PermissionsAndLeftOutReasons) {
  RestoreOptions safe, trusted;
  trusted.same_owner = trusted.special = true;
  EXPECT_EQ(RestoredPermissions(S_IFREG | 06755, safe), 0755u);
  EXPECT_EQ(RestoredPermissions(S_IFDIR | 03775, safe), 03775u);
  EXPECT_EQ(RestoredPermissions(S_IFREG | 06755, trusted), 06755u);
  EXPECT_EQ(LeftOutReason(S_IFBLK | 0660, false, 0, safe),
            "a block device: device nodes are restored only with --special");
  EXPECT_EQ(LeftOutReason(S_IFCHR | 0666, true, makedev(1, 3), trusted), "");
  EXPECT_EQ(LeftOutReason(S_IFIFO | 0666, false, 0, safe), "");
  EXPECT_EQ(LeftOutReason(S_IFSOCK | 0666, false, 0, safe), "");
}

// A name swapped for a hard link to a file elsewhere must not lend it the
// stored attributes: resume re-downloads a file with other names, never
// chowns or chmods through them.
TEST_F(RestoreTest, AFileWithOtherNamesIsReplacedNotChanged) {
  store_.PutRaw("f", "same", Meta(S_IFREG | 04777, kT1, 4321, 4321));
  std::string elsewhere = canary_ + "/victim";
  ASSERT_TRUE(UniqueFd(open(elsewhere.c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0600)).valid());
  ASSERT_EQ(truncate(elsewhere.c_str(), 0), 0);
  {
    UniqueFd fd(open(elsewhere.c_str(), O_WRONLY | O_CLOEXEC));
    ASSERT_EQ(write(fd.get(), "same", 4), 4);
  }
  struct timespec t[2] = {{0, UTIME_OMIT}, {kT1 / 1000000000, kT1 % 1000000000}};
  ASSERT_EQ(utimensat(AT_FDCWD, elsewhere.c_str(), t, 0), 0);
  ASSERT_EQ(link(elsewhere.c_str(), (dest_ + "/f").c_str()), 0);
  RestoreOptions o;
  o.same_owner = geteuid() == 0;
  RestoreSummary s = Restore(o);
  EXPECT_TRUE(s.failed.empty()) << s.failed[0].path << ": " << s.failed[0].error;
  struct stat victim {};
  ASSERT_EQ(lstat(elsewhere.c_str(), &victim), 0);
  EXPECT_EQ(victim.st_mode, S_IFREG | 0600u);
  EXPECT_EQ(victim.st_uid, geteuid());
  EXPECT_EQ(victim.st_nlink, 1u) << "the destination's name still leads to it";
  EXPECT_EQ(Read("f"), "same");
}

// A manifest as the daemon writes it (uploader/checkpoint.cc).
nlohmann::json ManifestEntry(const std::string& path, const std::string& type,
                             const std::string& body, mode_t mode, int64_t mtime_ns,
                             const std::string& version_id, const std::string& etag = "") {
  nlohmann::json e;
  e["path"] = path;
  e["key"] = type == "dir" ? path + "/" : path;
  e["type"] = type;
  e["size"] = body.size();
  e["mode"] = mode;
  e["uid"] = getuid();
  e["gid"] = getgid();
  e["mtime_ns"] = mtime_ns;
  e["etag"] = etag.empty() ? Md5Hex(body) : etag;
  e["sha256"] = type == "dir" ? nlohmann::json(nullptr) : nlohmann::json(Sha256Hex(body));
  e["version_id"] = version_id.empty() ? nlohmann::json(nullptr) : nlohmann::json(version_id);
  return e;
}

void PutManifest(MemoryStore& store, const std::string& name, const nlohmann::json& entries) {
  nlohmann::json m = {{"format", "scribefs-checkpoint"},
                      {"version", 1},
                      {"name", name},
                      {"time_ns", kT1},
                      {"journal_seq", 7},
                      {"target", "fake://"},
                      {"paths", entries.size()},
                      {"entries", entries}};
  store.PutRaw(CheckpointManifestKey(name), m.dump());
}

TEST_F(RestoreTest, CheckpointRestoresOldVersionsByVersionId) {
  std::string v1 = store_.PutRaw("f", "old content", Meta(S_IFREG | 0600, kT1));
  std::string l1 = store_.PutRaw("l", "f", Meta(S_IFLNK | 0777, kT1));
  nlohmann::json entries = nlohmann::json::array();
  entries.push_back(ManifestEntry("d", "dir", "", S_IFDIR | 0700, kT2, ""));
  entries.push_back(ManifestEntry("f", "file", "old content", S_IFREG | 0600, kT1, v1));
  entries.push_back(ManifestEntry("l", "symlink", "f", S_IFLNK | 0777, kT1, l1));
  PutManifest(store_, "before", entries);
  // Later the files change and new ones appear; the checkpoint ignores them.
  store_.PutRaw("f", "new content!", Meta(S_IFREG | 0644, kT2));
  store_.PutRaw("l", "elsewhere", Meta(S_IFLNK | 0777, kT2));
  store_.PutRaw("new", "not in the checkpoint");
  RestoreOptions o;
  o.checkpoint = "before";
  RestoreSummary s = Restore(o);
  EXPECT_EQ(s.failed.size(), 0u) << s.failed[0].path << ": " << s.failed[0].error;
  EXPECT_EQ(s.restored, 3u);
  EXPECT_EQ(Read("f"), "old content");
  EXPECT_EQ(Lstat("f").st_mode, S_IFREG | 0600u);
  EXPECT_EQ(Mtime(Lstat("f")), kT1);
  char buf[64] = {};
  ASSERT_GT(readlink((dest_ + "/l").c_str(), buf, sizeof buf), 0);
  EXPECT_STREQ(buf, "f");
  EXPECT_EQ(Lstat("d").st_mode, S_IFDIR | 0700u);
  EXPECT_EQ(Tree(dest_), (std::set<std::string>{"d", "f", "l"}));
  // Again: all there, nothing downloaded.
  int gets = store_.gets();
  s = Restore(o);
  EXPECT_EQ(s.skipped, 3u);
  EXPECT_EQ(store_.gets(), gets + 1) << "only the manifest";
}

TEST_F(RestoreTest, CheckpointOfAnUnversionedBucketNamesOverwrittenPaths) {
  store_.PutRaw("same", "unchanged");
  store_.PutRaw("changed", "before");
  nlohmann::json entries = nlohmann::json::array();
  entries.push_back(ManifestEntry("changed", "file", "before", S_IFREG | 0644, kT1, ""));
  entries.push_back(ManifestEntry("same", "file", "unchanged", S_IFREG | 0644, kT1, ""));
  PutManifest(store_, "cp", entries);
  store_.PutRaw("changed", "after!");  // overwritten, no versions kept
  RestoreOptions o;
  o.checkpoint = "cp";
  RestoreSummary s = Restore(o);
  ASSERT_EQ(s.failed.size(), 1u);
  EXPECT_EQ(s.failed[0].path, "changed");
  EXPECT_NE(s.failed[0].error.find("changed in the target since checkpoint \"cp\""),
            std::string::npos)
      << s.failed[0].error;
  EXPECT_EQ(Read("same"), "unchanged");
  EXPECT_EQ(Tree(dest_), (std::set<std::string>{"same"})) << "nothing written for \"changed\"";
}

TEST_F(RestoreTest, HostileManifestEntriesAreRefused) {
  store_.PutRaw("x", "1");
  nlohmann::json entries = nlohmann::json::array();
  entries.push_back(ManifestEntry("../x", "file", "1", S_IFREG | 0644, kT1, ""));
  auto mismatched = ManifestEntry("ok", "file", "1", S_IFREG | 0644, kT1, "");
  mismatched["key"] = "x";
  entries.push_back(mismatched);
  PutManifest(store_, "evil", entries);
  RestoreOptions o;
  o.checkpoint = "evil";
  RestoreSummary s = Restore(o);
  EXPECT_EQ(s.refused.size(), 2u);
  EXPECT_TRUE(Tree(dest_).empty()) << Names(Tree(dest_));
}

TEST_F(RestoreTest, MissingCheckpointIsAnError) {
  UniqueFd root(open(dest_.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  RestoreOptions o;
  o.checkpoint = "nope";
  Restorer r(&store_, root.get(), nullptr, o);
  auto s = r.Run();
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.status().code(), ENOENT);
  EXPECT_NE(s.status().message().find("no checkpoint \"nope\""), std::string::npos);
}

}  // namespace
}  // namespace scribefs::ctl
