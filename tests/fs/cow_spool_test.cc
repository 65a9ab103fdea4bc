// Copy-on-write capture (CowSpool) behind a real Filesystem on a temp
// DATADIR, driven without FUSE: capture a mark, mutate through the
// Filesystem, and check that OpenAtMark gives back exactly the state at the
// mark (a copy the test took then), and that spool failures abandon the
// capture without failing a single write. One test kills a child process
// (kill -9) in the middle of overwrites and reopens its spool.
#include "fs/cow_spool.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <linux/falloc.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <filesystem>
#include <map>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "fs/filesystem.h"

namespace scribefs {
namespace {

constexpr uint64_t kRoot = 1;  // FUSE_ROOT_ID

std::string Random(size_t n, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::string s(n, '\0');
  for (size_t i = 0; i < n; i += 8) {
    uint64_t v = rng();
    std::memcpy(s.data() + i, &v, std::min<size_t>(8, n - i));
  }
  return s;
}

class CowSpoolTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string tmpl = ::testing::TempDir() + "/scribefs-cow-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl.data()), nullptr) << strerror(errno);
    dir_ = tmpl;
    ASSERT_EQ(mkdir(data("").c_str(), 0755), 0);
    root_ = UniqueFd(open(data("").c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    ASSERT_TRUE(root_.valid());
    spool_dir_ = dir_ + "/spool";
  }
  void TearDown() override {
    fs_.reset();
    spool_.reset();
    journal_.reset();
    if (tmpfs_) umount2(spool_dir_.c_str(), MNT_DETACH);
    std::filesystem::remove_all(dir_);
  }
  // The spool (bounded by max_bytes) and a Filesystem that calls it.
  void Start(uint64_t max_bytes = 1ull << 30) {
    auto s = CowSpool::Open(spool_dir_, root_.get(), max_bytes);
    ASSERT_TRUE(s.ok()) << s.status().ToString();
    spool_ = std::move(s.value());
    auto j = Journal::Open(dir_ + "/journal.db");
    ASSERT_TRUE(j.ok()) << j.status().ToString();
    journal_ = std::move(j.value());
    FsOptions o;
    o.cow = spool_.get();
    UniqueFd root(open(data("").c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    fs_ = std::make_unique<Filesystem>(std::move(root), journal_.get(), o);
  }
  // A spool directory on a tmpfs of `size` bytes (another filesystem).
  void SpoolOnTmpfs(const std::string& size) {
    ASSERT_EQ(mkdir(spool_dir_.c_str(), 0700), 0);
    ASSERT_EQ(mount("tmpfs", spool_dir_.c_str(), "tmpfs", 0, ("size=" + size).c_str()), 0)
        << strerror(errno);
    tmpfs_ = true;
  }
  std::string data(const std::string& rel) const { return dir_ + "/data/" + rel; }
  void Put(const std::string& rel, const std::string& content) {
    UniqueFd fd(open(data(rel).c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644));
    ASSERT_TRUE(fd.valid()) << rel;
    ASSERT_EQ(pwrite(fd.get(), content.data(), content.size(), 0), ssize_t(content.size()));
  }
  std::string Live(const std::string& rel) {
    std::string out;
    EXPECT_TRUE(ReadWhole(data(rel), &out)) << rel;
    return out;
  }
  static bool ReadWhole(const std::string& path, std::string* out) {
    UniqueFd fd(open(path.c_str(), O_RDONLY | O_CLOEXEC));
    if (!fd) return false;
    struct stat st;
    fstat(fd.get(), &st);
    out->assign(size_t(st.st_size), '\0');
    return pread(fd.get(), out->data(), out->size(), 0) == st.st_size;
  }
  FrozenPath Frozen(const std::string& rel) {
    struct stat st;
    if (lstat(data(rel).c_str(), &st) != 0) return {rel, {0, 0}};
    return {rel, {st.st_dev, st.st_ino}};
  }
  void Capture(const std::string& id, const std::vector<std::string>& rels) {
    CaptureSpec spec{id, 1, {}};
    for (const auto& r : rels) spec.paths.push_back(Frozen(r));
    Status s = spool_->Capture(spec);
    ASSERT_TRUE(s.ok()) << s.ToString();
  }
  // The node id of rel (each component looked up).
  uint64_t Id(const std::string& rel) {
    uint64_t id = kRoot;
    for (const auto& part : std::filesystem::path(rel)) {
      auto e = fs_->Lookup(id, part.string());
      EXPECT_TRUE(e.ok()) << rel << ": " << e.status().ToString();
      if (!e.ok()) return 0;
      id = e->id;
    }
    return id;
  }
  std::unique_ptr<FileHandle> OpenFh(const std::string& rel, int flags = O_RDWR) {
    auto fh = fs_->Open(c_, Id(rel), flags);
    EXPECT_TRUE(fh.ok()) << rel << ": " << fh.status().ToString();
    return fh.ok() ? std::move(fh.value()) : nullptr;
  }
  void WriteAt(FileHandle* fh, uint64_t off, const std::string& bytes) {
    auto n = fs_->Write(c_, fh, off_t(off), bytes.size(), [&](int fd, off_t o) {
      ssize_t w = pwrite(fd, bytes.data(), bytes.size(), o);
      return w < 0 ? -errno : w;
    });
    ASSERT_TRUE(n.ok()) << n.status().ToString();
    ASSERT_EQ(n.value(), bytes.size());
  }
  void Close(std::unique_ptr<FileHandle> fh) {
    Status s = fs_->Settle(fs_->Flush(c_, fh.get()));
    ASSERT_TRUE(s.ok()) << s.ToString();
  }
  // The whole file at the mark of capture id.
  std::string AtMark(const std::string& id, const std::string& rel, CowSpool* spool = nullptr) {
    auto f = (spool ? spool : spool_.get())->OpenAtMark(id, rel);
    EXPECT_TRUE(f.ok()) << rel << ": " << f.status().ToString();
    if (!f.ok()) return "<error>";
    EXPECT_EQ(f->kind(), FrozenFile::Kind::kRegular) << rel;
    std::string out(f->size(), '\0');
    for (size_t off = 0; off < out.size();) {
      auto n = f->Pread(out.data() + off, std::min<size_t>(1 << 20, out.size() - off), off);
      EXPECT_TRUE(n.ok()) << rel << ": " << n.status().ToString();
      if (!n.ok() || *n == 0) return "<short>";
      off += *n;
    }
    return out;
  }
  CaptureInfo Info(const std::string& id) {
    for (const auto& ci : spool_->Captures())
      if (ci.id == id) return ci;
    ADD_FAILURE() << "no capture " << id;
    return {};
  }
  size_t SpoolEntries() {
    size_t n = 0;
    for ([[maybe_unused]] const auto& e : std::filesystem::directory_iterator(spool_dir_)) ++n;
    return n;
  }

  std::string dir_, spool_dir_;
  UniqueFd root_;
  bool tmpfs_ = false;
  std::unique_ptr<CowSpool> spool_;
  std::unique_ptr<Journal> journal_;
  std::unique_ptr<Filesystem> fs_;
  Caller c_{0, 0, 1};
};

TEST_F(CowSpoolTest, RandomOverwritesOfALargeFileReadBackAsAtTheMark) {
  constexpr size_t kSize = 64 << 20;
  const std::string mark = Random(kSize, 1);
  Put("big", mark);
  Start();
  Capture("c1", {"big"});
  auto fh = OpenFh("big");
  ASSERT_TRUE(fh);
  std::mt19937_64 rng(7);
  std::vector<bool> overwritten(kSize);
  for (int i = 0; i < 3000; ++i) {
    uint64_t len = 1 + rng() % 65536;
    uint64_t off = rng() % (kSize + 65536);  // some extend the file
    WriteAt(fh.get(), off, Random(len, i + 100));
    for (uint64_t b = off; b < std::min<uint64_t>(off + len, kSize); ++b) overwritten[b] = true;
  }
  Close(std::move(fh));
  ASSERT_NE(Live("big").substr(0, kSize), mark) << "the test changed nothing";
  EXPECT_TRUE(AtMark("c1", "big") == mark) << "bytes at the mark differ";
  uint64_t distinct = 0;
  for (bool b : overwritten) distinct += b;
  EXPECT_EQ(Info("c1").spool_bytes, distinct) << "each byte below the mark size at most once";
  EXPECT_TRUE(spool_->Release("c1").ok());
  EXPECT_EQ(SpoolEntries(), 0u);
}

TEST_F(CowSpoolTest, TruncateOTruncAndFallocateKeepTheBytesAtTheMark) {
  std::map<std::string, std::string> mark;
  for (const char* n : {"shrink", "otrunc", "create", "punch", "collapse", "zero", "grow"}) {
    mark[n] = Random(64 << 10, mark.size() + 1);
    Put(n, mark[n]);
  }
  Start();
  Capture("c", {"shrink", "otrunc", "create", "punch", "collapse", "zero", "grow"});
  struct stat attr = {};
  attr.st_size = 1000;
  ASSERT_TRUE(
      fs_->Settle(fs_->SetAttr(c_, Id("shrink"), attr, Filesystem::kSetSize, nullptr)).ok());
  auto t = OpenFh("otrunc", O_RDWR | O_TRUNC);
  ASSERT_TRUE(t);
  WriteAt(t.get(), 0, "new");
  Close(std::move(t));
  auto cr = fs_->Settle(fs_->Create(c_, kRoot, "create", 0644, O_RDWR | O_TRUNC));
  ASSERT_TRUE(cr.ok()) << cr.status().ToString();
  Close(std::move(cr->second));
  for (auto [name, mode] : std::vector<std::pair<std::string, int>>{
           {"punch", FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE},
           {"collapse", FALLOC_FL_COLLAPSE_RANGE},
           {"zero", FALLOC_FL_ZERO_RANGE},
           {"grow", 0}}) {
    auto fh = OpenFh(name);
    ASSERT_TRUE(fh);
    off_t len = name == "grow" ? (1 << 20) : 8192;
    off_t off = name == "grow" ? 0 : 4096;
    Status s = fs_->Fallocate(c_, fh.get(), mode, off, len);
    ASSERT_TRUE(s.ok()) << name << ": " << s.ToString();
    Close(std::move(fh));
  }
  for (const auto& [name, bytes] : mark) {
    ASSERT_NE(Live(name), bytes) << name << ": the test changed nothing";
    EXPECT_TRUE(AtMark("c", name) == bytes) << name;
  }
}

TEST_F(CowSpoolTest, UnlinkAndRenamesKeepTheInodeAtTheMark) {
  ASSERT_EQ(mkdir(data("d").c_str(), 0750), 0);
  ASSERT_EQ(mkdir(data("d/sub").c_str(), 0700), 0);
  std::map<std::string, std::string> mark;
  for (const char* n : {"gone", "over", "moved", "d/f", "d/sub/g", "newer"}) {
    mark[n] = Random(100000, mark.size() + 10);
    Put(n, mark[n]);
  }
  ASSERT_EQ(symlink("../gone", data("d/ln").c_str()), 0);
  Start();
  Capture("c", {"gone", "over", "moved", "d", "d/f", "d/sub", "d/sub/g", "d/ln"});
  auto keep = OpenFh("gone");  // written after its unlink
  ASSERT_TRUE(fs_->Settle(fs_->Unlink(c_, kRoot, "gone")).ok());
  WriteAt(keep.get(), 0, "after unlink");
  Close(std::move(keep));
  ASSERT_TRUE(fs_->Settle(fs_->Rename(c_, kRoot, "newer", kRoot, "over", 0)).ok());
  ASSERT_TRUE(fs_->Settle(fs_->Rename(c_, kRoot, "moved", kRoot, "moved2", 0)).ok());
  auto m = OpenFh("moved2");
  WriteAt(m.get(), 50, "after rename");
  Close(std::move(m));
  ASSERT_TRUE(fs_->Settle(fs_->Rename(c_, kRoot, "d", kRoot, "d2", 0)).ok());
  auto g = OpenFh("d2/sub/g");
  WriteAt(g.get(), 99990, "after the parent's rename");
  Close(std::move(g));
  // New files at the old names must not be taken for the frozen ones.
  Put("gone", "a new file");
  Put("moved", "another new file");
  for (const char* n : {"gone", "over", "moved", "d/f", "d/sub/g"})
    EXPECT_TRUE(AtMark("c", n) == mark[n]) << n;
  auto d = spool_->OpenAtMark("c", "d");
  ASSERT_TRUE(d.ok()) << d.status().ToString();
  EXPECT_EQ(d->kind(), FrozenFile::Kind::kDirectory);
  EXPECT_EQ(d->attr().st_mode & 07777, 0750u);
  auto sub = spool_->OpenAtMark("c", "d/sub");
  ASSERT_TRUE(sub.ok()) << sub.status().ToString();
  EXPECT_EQ(sub->attr().st_mode & 07777, 0700u);
  auto ln = spool_->OpenAtMark("c", "d/ln");
  ASSERT_TRUE(ln.ok()) << ln.status().ToString();
  EXPECT_EQ(ln->kind(), FrozenFile::Kind::kSymlink);
  EXPECT_EQ(ln->target(), "../gone");
}

TEST_F(CowSpoolTest, AttributesAreThoseAtTheMark) {
  for (const char* n : {"mode", "owner", "times", "xattr"}) Put(n, n);
  std::map<std::string, struct stat> mark;
  for (const char* n : {"mode", "owner", "times", "xattr"}) lstat(data(n).c_str(), &mark[n]);
  Start();
  Capture("c", {"mode", "owner", "times", "xattr"});
  struct stat a = {};
  a.st_mode = 0600;
  ASSERT_TRUE(fs_->Settle(fs_->SetAttr(c_, Id("mode"), a, Filesystem::kSetMode, nullptr)).ok());
  a.st_uid = 4242;
  a.st_gid = 4343;
  ASSERT_TRUE(fs_->Settle(fs_->SetAttr(c_, Id("owner"), a,
                                       Filesystem::kSetUid | Filesystem::kSetGid, nullptr))
                  .ok());
  a.st_mtim = {1000, 5};
  a.st_atim = {2000, 6};
  ASSERT_TRUE(fs_->Settle(fs_->SetAttr(c_, Id("times"), a,
                                       Filesystem::kSetMtime | Filesystem::kSetAtime, nullptr))
                  .ok());
  std::this_thread::sleep_for(std::chrono::milliseconds(20));  // ctime moves visibly
  ASSERT_TRUE(fs_->Settle(fs_->SetXattr(c_, Id("xattr"), "user.k", "v", 0)).ok());
  for (const auto& [name, st] : mark) {
    auto f = spool_->OpenAtMark("c", name);
    ASSERT_TRUE(f.ok()) << f.status().ToString();
    struct stat now;
    lstat(data(name).c_str(), &now);
    EXPECT_NE(now.st_ctim.tv_nsec + now.st_ctim.tv_sec * 1000000000,
              st.st_ctim.tv_nsec + st.st_ctim.tv_sec * 1000000000)
        << name << ": the test changed nothing";
    EXPECT_EQ(f->attr().st_mode, st.st_mode) << name;
    EXPECT_EQ(f->attr().st_uid, st.st_uid) << name;
    EXPECT_EQ(f->attr().st_gid, st.st_gid) << name;
    EXPECT_EQ(f->attr().st_mtim.tv_sec, st.st_mtim.tv_sec) << name;
    EXPECT_EQ(f->attr().st_mtim.tv_nsec, st.st_mtim.tv_nsec) << name;
    EXPECT_EQ(f->attr().st_ctim.tv_nsec, st.st_ctim.tv_nsec) << name;
    EXPECT_EQ(AtMark("c", name), name);
  }
}

TEST_F(CowSpoolTest, ADirectoryKeepsItsTimesWhenItsEntriesChange) {
  ASSERT_EQ(mkdir(data("dir").c_str(), 0755), 0);
  Put("dir/old", "x");
  struct timespec t[2] = {{1000, 0}, {1000, 0}};
  ASSERT_EQ(utimensat(AT_FDCWD, data("dir").c_str(), t, 0), 0);
  Start();
  Capture("c", {"dir", "dir/old"});
  auto cr = fs_->Settle(fs_->Create(c_, Id("dir"), "new", 0644, O_RDWR));
  ASSERT_TRUE(cr.ok()) << cr.status().ToString();
  Close(std::move(cr->second));
  ASSERT_TRUE(fs_->Settle(fs_->Unlink(c_, Id("dir"), "old")).ok());
  struct stat now;
  ASSERT_EQ(lstat(data("dir").c_str(), &now), 0);
  ASSERT_NE(now.st_mtim.tv_sec, 1000) << "the test changed nothing";
  auto f = spool_->OpenAtMark("c", "dir");
  ASSERT_TRUE(f.ok()) << f.status().ToString();
  EXPECT_EQ(f->attr().st_mtim.tv_sec, 1000);
  EXPECT_EQ(AtMark("c", "dir/old"), "x");
}

TEST_F(CowSpoolTest, CopyFileRangeIntoAFrozenFile) {
  const std::string mark = Random(100000, 20);
  Put("dst", mark);
  Put("src", Random(100000, 21));
  Start();
  Capture("c", {"dst"});
  auto in = OpenFh("src", O_RDONLY);
  auto out = OpenFh("dst");
  auto n = fs_->CopyFileRange(c_, in.get(), 0, out.get(), 30000, 50000, 0);
  ASSERT_TRUE(n.ok()) << n.status().ToString();
  ASSERT_EQ(*n, 50000u);
  Close(std::move(out));
  ASSERT_NE(Live("dst"), mark);
  EXPECT_TRUE(AtMark("c", "dst") == mark);
}

TEST_F(CowSpoolTest, AHardLinkWrittenThroughItsOtherName) {
  const std::string mark = Random(50000, 3);
  Put("a", mark);
  ASSERT_EQ(link(data("a").c_str(), data("b").c_str()), 0);
  Start();
  Capture("c", {"a"});  // only one name is frozen; the inode is
  auto fh = OpenFh("b");
  WriteAt(fh.get(), 1000, "through the other name");
  Close(std::move(fh));
  ASSERT_NE(Live("a"), mark);
  EXPECT_TRUE(AtMark("c", "a") == mark);
}

TEST_F(CowSpoolTest, TwoLiveCapturesEachKeepTheirMark) {
  const std::string first = Random(200000, 4);
  Put("f", first);
  Start();
  Capture("one", {"f"});
  auto fh = OpenFh("f");
  WriteAt(fh.get(), 0, Random(100000, 5));
  const std::string second = Live("f");
  Capture("two", {"f"});
  WriteAt(fh.get(), 50000, Random(150000, 6));
  Close(std::move(fh));
  EXPECT_TRUE(AtMark("one", "f") == first);
  EXPECT_TRUE(AtMark("two", "f") == second);
  EXPECT_EQ(Info("one").spool_bytes, 200000u);
  EXPECT_EQ(Info("two").spool_bytes, 150000u);
  ASSERT_TRUE(spool_->Release("one").ok());
  EXPECT_TRUE(AtMark("two", "f") == second) << "releasing one capture touched the other";
  EXPECT_FALSE(spool_->OpenAtMark("one", "f").ok());
}

// Capture runs under the pause and does not fsync; Persist (after the
// resume) makes capture.json durable, and refuses captures that are gone.
TEST_F(CowSpoolTest, PersistAfterTheCapture) {
  const std::string first = Random(100000, 7);
  Put("f", first);
  Start();
  Capture("c", {"f"});
  auto fh = OpenFh("f");
  WriteAt(fh.get(), 0, Random(100000, 8));  // writers run before Persist
  Close(std::move(fh));
  Status p = spool_->Persist("c");
  EXPECT_TRUE(p.ok()) << p.ToString();
  struct stat st;
  EXPECT_EQ(stat((spool_dir_ + "/c/capture.json").c_str(), &st), 0);
  EXPECT_TRUE(AtMark("c", "f") == first);
  EXPECT_EQ(spool_->Persist("nope").code(), ENOENT);
  ASSERT_TRUE(spool_->Release("c").ok());
  EXPECT_EQ(spool_->Persist("c").code(), ENOENT);
}

TEST_F(CowSpoolTest, APathAbsentAtTheMarkStaysAbsent) {
  Put("other", "x");
  Start();
  Capture("c", {"nope"});
  auto cr = fs_->Settle(fs_->Create(c_, kRoot, "nope", 0644, O_RDWR));
  ASSERT_TRUE(cr.ok());
  WriteAt(cr->second.get(), 0, "created after the mark");
  Close(std::move(cr->second));
  auto f = spool_->OpenAtMark("c", "nope");
  ASSERT_TRUE(f.ok()) << f.status().ToString();
  EXPECT_EQ(f->kind(), FrozenFile::Kind::kAbsent);
  EXPECT_EQ(spool_->OpenAtMark("c", "other").status().code(), ENOENT) << "not in the capture";
}

TEST_F(CowSpoolTest, ExceedingMaxSpoolAbandonsTheCaptureNotTheWriter) {
  const std::string mark = Random(1 << 20, 8);
  Put("f", mark);
  Put("g", mark);
  Start(/*max_bytes=*/300 << 10);
  Capture("c", {"f", "g"});
  auto fh = OpenFh("f");
  const std::string fresh = Random(1 << 20, 9);
  for (size_t off = 0; off < fresh.size(); off += 64 << 10)
    WriteAt(fh.get(), off, fresh.substr(off, 64 << 10));  // each one must succeed
  Close(std::move(fh));
  EXPECT_TRUE(Live("f") == fresh);
  CaptureInfo ci = Info("c");
  EXPECT_TRUE(ci.abandoned);
  EXPECT_NE(ci.why.find("max-spool"), std::string::npos) << ci.why;
  EXPECT_EQ(ci.spool_bytes, 0u);
  EXPECT_EQ(SpoolEntries(), 0u) << "the abandoned capture's spool was not freed";
  EXPECT_EQ(spool_->OpenAtMark("c", "f").status().code(), ECANCELED);
  // Unlinking a frozen file larger than the bound abandons too.
  Capture("d", {"g"});
  ASSERT_TRUE(fs_->Settle(fs_->Unlink(c_, kRoot, "g")).ok());
  EXPECT_TRUE(Info("d").abandoned);
  EXPECT_TRUE(spool_->Release("c").ok());
  EXPECT_TRUE(spool_->Release("d").ok());
  EXPECT_EQ(SpoolEntries(), 0u);
}

TEST_F(CowSpoolTest, AFullSpoolDiskAbandonsTheCaptureNotTheWriter) {
  SpoolOnTmpfs("256k");
  const std::string mark = Random(2 << 20, 10);
  Put("f", mark);
  Start();
  Capture("c", {"f"});
  auto fh = OpenFh("f");
  const std::string fresh = Random(2 << 20, 11);
  for (size_t off = 0; off < fresh.size(); off += 128 << 10)
    WriteAt(fh.get(), off, fresh.substr(off, 128 << 10));
  Close(std::move(fh));
  EXPECT_TRUE(Live("f") == fresh);
  CaptureInfo ci = Info("c");
  EXPECT_TRUE(ci.abandoned);
  EXPECT_NE(ci.why.find("No space left"), std::string::npos) << ci.why;
  EXPECT_EQ(SpoolEntries(), 0u);
}

TEST_F(CowSpoolTest, ASpoolOnAnotherFilesystemCopiesAnUnlinkedFile) {
  SpoolOnTmpfs("16m");
  const std::string mark = Random(3 << 20, 12);
  Put("f", mark);
  Start();
  Capture("c", {"f"});
  ASSERT_TRUE(fs_->Settle(fs_->Unlink(c_, kRoot, "f")).ok());  // linkat: EXDEV
  Put("f", "new");
  EXPECT_FALSE(Info("c").abandoned) << Info("c").why;
  EXPECT_EQ(Info("c").spool_bytes, mark.size());
  EXPECT_TRUE(AtMark("c", "f") == mark);
}

TEST_F(CowSpoolTest, KillDashNineMidOverwritesKeepsTheMark) {
  constexpr size_t kSize = 16 << 20;
  const std::string mark = Random(kSize, 13);
  Put("big", mark);
  int ready[2];
  ASSERT_EQ(pipe(ready), 0);
  pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    // The child: a daemon that captures, then overwrites until it is killed.
    close(ready[0]);
    Start();
    if (!spool_ || !fs_) _exit(2);
    CaptureSpec spec{"k", 1, {Frozen("big")}};
    if (!spool_->Capture(spec).ok()) _exit(3);
    auto fh = fs_->Open(c_, Id("big"), O_RDWR);
    if (!fh.ok()) _exit(4);
    std::mt19937_64 rng(99);
    for (uint64_t i = 0;; ++i) {
      std::string bytes = Random(1 + rng() % 200000, i);
      uint64_t off = rng() % kSize;
      auto n = fs_->Write(c_, fh->get(), off_t(off), bytes.size(), [&](int fd, off_t o) {
        ssize_t w = pwrite(fd, bytes.data(), bytes.size(), o);
        return w < 0 ? -errno : w;
      });
      if (!n.ok()) _exit(5);
      if (i == 200 && write(ready[1], "w", 1) != 1) _exit(6);
    }
  }
  close(ready[1]);
  char ch;
  ASSERT_EQ(read(ready[0], &ch, 1), 1) << "the child failed before 200 overwrites";
  close(ready[0]);
  ASSERT_EQ(kill(pid, SIGKILL), 0);
  int status;
  ASSERT_EQ(waitpid(pid, &status, 0), pid);
  ASSERT_TRUE(WIFSIGNALED(status));
  ASSERT_NE(Live("big"), mark) << "the child changed nothing";
  auto s = CowSpool::Open(spool_dir_, root_.get(), 1ull << 30);
  ASSERT_TRUE(s.ok()) << s.status().ToString();
  EXPECT_TRUE(AtMark("k", "big", s->get()) == mark) << "bytes at the mark lost by kill -9";
  // And a spool opened again keeps preserving for the capture it loaded.
  s.value().reset();
  Start();
  auto fh = OpenFh("big");
  WriteAt(fh.get(), 0, Random(kSize, 14));
  Close(std::move(fh));
  EXPECT_TRUE(AtMark("k", "big") == mark) << "not preserved after the reopen";
}

}  // namespace
}  // namespace scribefs
