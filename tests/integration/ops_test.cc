// Per-operation tests on a real mount: every operation through the mount has
// the same effect in the backing directory (content, mode, owner, times, link
// targets, xattrs) and leaves the right journal records. Most tests mount on a
// separate MOUNTPOINT so that DATADIR stays visible; OverMount mounts over
// DATADIR itself, XattrOff runs with --xattr off, WritebackOff checks when
// records are committed relative to write() and close().
#include <fcntl.h>
#include <linux/falloc.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <nlohmann/json.hpp>
#include <thread>

#include "common/unique_fd.h"
#include "tests/integration/mount_fixture.h"

namespace scribefs::it {
namespace {

using json = nlohmann::json;

std::string Str(const std::optional<std::string>& s) { return s ? *s : "<unreadable>"; }

json Detail(const Record& r) {
  if (r.detail.empty()) return json::object();
  return json::parse(r.detail, nullptr, /*allow_exceptions=*/false);
}

std::string DumpAll(const std::vector<Record>& rs) {
  std::string s;
  for (const auto& r : rs) s += "\n  " + Dump(r);
  return s;
}

class OpsTest : public MountTest {
 protected:
  void SetUp() override {
    MountTest::SetUp();
    if (HasFatalFailure()) return;
    Mount();
  }

  // Unmounts (the daemon must exit 0) and returns the whole journal.
  std::vector<Record> UnmountAndRead() {
    EXPECT_EQ(Unmount(), 0) << "daemon exit status after fusermount3 -u";
    return Records();
  }

  // Mode (type and permissions), owner, size and link count agree between
  // the mount and the backing directory.
  void ExpectSameAttrs(const std::string& rel) {
    struct stat m, b;
    ASSERT_EQ(lstat(mp(rel).c_str(), &m), 0) << rel << ": " << strerror(errno);
    ASSERT_EQ(lstat(data(rel).c_str(), &b), 0) << rel << ": " << strerror(errno);
    EXPECT_EQ(m.st_mode, b.st_mode) << rel;
    EXPECT_EQ(m.st_uid, b.st_uid) << rel;
    EXPECT_EQ(m.st_gid, b.st_gid) << rel;
    EXPECT_EQ(m.st_nlink, b.st_nlink) << rel;
    if (!S_ISDIR(b.st_mode)) {
      EXPECT_EQ(m.st_size, b.st_size) << rel;
    }
  }

  // Exactly one record op(path[, new_path]); returns it (or a default Record).
  Record One(const std::vector<Record>& rs, Op op, const std::string& path,
             std::optional<std::string> new_path = std::nullopt) {
    auto found = Find(rs, op, path, new_path);
    EXPECT_EQ(found.size(), 1u) << OpName(op) << " '" << path << "'"
                                << (new_path ? " -> '" + *new_path + "'" : "")
                                << " records; journal:" << DumpAll(rs);
    return found.empty() ? Record{} : found.front();
  }
};

// ---- files -------------------------------------------------------------------

TEST_F(OpsTest, CreateWriteReadBack) {
  const std::string content = Pattern(10000, 1);
  UniqueFd fd(open(mp("f").c_str(), O_CREAT | O_WRONLY | O_EXCL, 0640));
  ASSERT_TRUE(fd) << strerror(errno);
  ASSERT_EQ(write(fd.get(), content.data(), 4000), 4000);
  ASSERT_EQ(write(fd.get(), content.data() + 4000, 6000), 6000);
  ASSERT_EQ(close(fd.Release()), 0) << strerror(errno);

  EXPECT_EQ(Str(ReadFile(mp("f"))), content);
  EXPECT_EQ(Str(ReadFile(data("f"))), content);
  ExpectSameAttrs("f");
  struct stat b;
  ASSERT_EQ(stat(data("f").c_str(), &b), 0);
  EXPECT_EQ(b.st_mode, S_IFREG | 0640u);

  auto rs = UnmountAndRead();
  Record create = One(rs, Op::kCreate, "f");
  EXPECT_EQ(create.mode, S_IFREG | 0640u);
  EXPECT_EQ(create.state, kStatePending);
  // The create record covers every byte until the close; write records with
  // ranges may come too.
  EXPECT_TRUE(DataCovered(rs, "f", 0, 10000)) << DumpAll(rs);
  auto closes = Find(rs, Op::kClose, "f");
  ASSERT_EQ(closes.size(), 1u) << DumpAll(rs);
  EXPECT_EQ(closes.back().size, 10000) << Dump(closes.back());
  EXPECT_EQ(closes.back().mode, S_IFREG | 0640u) << Dump(closes.back());
  EXPECT_LT(create.seq, closes.back().seq);
  for (const auto& w : Find(rs, Op::kWrite, "f")) {
    EXPECT_GT(w.seq, create.seq);
    EXPECT_LT(w.seq, closes.back().seq) << "ranges come before the close";
  }
}

TEST_F(OpsTest, WriteToExistingCleanFile) {
  ASSERT_EQ(Unmount(), 0);
  ASSERT_TRUE(WriteFile(data("pre"), std::string(8192, 'p')));  // before the mount
  ASSERT_NO_FATAL_FAILURE(Mount());
  UniqueFd fd(open(mp("pre").c_str(), O_WRONLY));
  ASSERT_TRUE(fd) << strerror(errno);
  ASSERT_EQ(pwrite(fd.get(), std::string(100, 'B').data(), 100, 4096), 100);
  ASSERT_EQ(close(fd.Release()), 0);
  std::string expected = std::string(4096, 'p') + std::string(100, 'B') + std::string(3996, 'p');
  EXPECT_EQ(Str(ReadFile(data("pre"))), expected);
  EXPECT_EQ(Str(ReadFile(mp("pre"))), expected);

  auto rs = UnmountAndRead();
  EXPECT_TRUE(Find(rs, Op::kCreate, "pre").empty());
  auto writes = Find(rs, Op::kWrite, "pre");
  ASSERT_FALSE(writes.empty()) << DumpAll(rs);
  EXPECT_TRUE(Covers(WrittenRanges(rs, "pre"), 4096, 100)) << DumpAll(rs);
  // The first write to a clean file is the intent record naming its range.
  ASSERT_FALSE(writes.front().ranges.empty());
  auto closes = Find(rs, Op::kClose, "pre");
  ASSERT_FALSE(closes.empty()) << DumpAll(rs);
  EXPECT_EQ(closes.back().size, 8192);
  EXPECT_LT(writes.front().seq, closes.back().seq);
}

TEST_F(OpsTest, OpenWithTruncate) {
  ASSERT_TRUE(WriteFile(mp("t"), Pattern(3000, 2)));
  UniqueFd fd(open(mp("t").c_str(), O_WRONLY | O_TRUNC));
  ASSERT_TRUE(fd) << strerror(errno);
  ASSERT_EQ(write(fd.get(), "new", 3), 3);
  ASSERT_EQ(close(fd.Release()), 0);
  EXPECT_EQ(Str(ReadFile(data("t"))), "new");
  auto rs = UnmountAndRead();
  auto truncs = Find(rs, Op::kTruncate, "t");
  ASSERT_EQ(truncs.size(), 1u) << DumpAll(rs);
  EXPECT_EQ(truncs[0].size, 0);
  EXPECT_TRUE(DataCovered(rs, "t", 0, 3)) << DumpAll(rs);
}

// ---- namespace -----------------------------------------------------------------

TEST_F(OpsTest, Mkdir) {
  ASSERT_EQ(mkdir(mp("d").c_str(), 0750), 0) << strerror(errno);
  ASSERT_EQ(mkdir(mp("d/e").c_str(), 0700), 0) << strerror(errno);
  struct stat b;
  ASSERT_EQ(stat(data("d/e").c_str(), &b), 0);
  EXPECT_TRUE(S_ISDIR(b.st_mode));
  EXPECT_EQ(b.st_mode & 07777, 0700u);
  ExpectSameAttrs("d");
  ExpectSameAttrs("d/e");
  auto rs = UnmountAndRead();
  EXPECT_EQ(One(rs, Op::kMkdir, "d").mode, S_IFDIR | 0750u);
  EXPECT_EQ(One(rs, Op::kMkdir, "d/e").mode, S_IFDIR | 0700u);
}

TEST_F(OpsTest, MknodFifo) {
  ASSERT_EQ(mkfifo(mp("fifo").c_str(), 0640), 0) << strerror(errno);
  struct stat b;
  ASSERT_EQ(lstat(data("fifo").c_str(), &b), 0);
  EXPECT_TRUE(S_ISFIFO(b.st_mode));
  EXPECT_EQ(b.st_mode & 07777, 0640u);
  ExpectSameAttrs("fifo");
  auto rs = UnmountAndRead();
  EXPECT_EQ(One(rs, Op::kMknod, "fifo").mode, S_IFIFO | 0640u);
}

TEST_F(OpsTest, SymlinkReadlink) {
  ASSERT_EQ(symlink("some/target", mp("sl").c_str()), 0) << strerror(errno);
  char buf[256];
  ssize_t n = readlink(mp("sl").c_str(), buf, sizeof buf);
  ASSERT_GT(n, 0) << strerror(errno);
  EXPECT_EQ(std::string(buf, n), "some/target");
  n = readlink(data("sl").c_str(), buf, sizeof buf);
  ASSERT_GT(n, 0) << strerror(errno);
  EXPECT_EQ(std::string(buf, n), "some/target");
  ExpectSameAttrs("sl");
  auto rs = UnmountAndRead();
  Record r = One(rs, Op::kSymlink, "sl");
  EXPECT_EQ(Detail(r).value("target", ""), "some/target") << Dump(r);
}

TEST_F(OpsTest, HardLink) {
  ASSERT_TRUE(WriteFile(mp("src"), "linked"));
  ASSERT_EQ(mkdir(mp("d").c_str(), 0755), 0);
  ASSERT_EQ(link(mp("src").c_str(), mp("d/hl").c_str()), 0) << strerror(errno);
  struct stat a, b;
  ASSERT_EQ(stat(data("src").c_str(), &a), 0);
  ASSERT_EQ(stat(data("d/hl").c_str(), &b), 0);
  EXPECT_EQ(a.st_ino, b.st_ino);
  EXPECT_EQ(b.st_nlink, 2u);
  EXPECT_EQ(Str(ReadFile(mp("d/hl"))), "linked");
  ExpectSameAttrs("src");
  ExpectSameAttrs("d/hl");
  auto rs = UnmountAndRead();
  One(rs, Op::kLink, "src", "d/hl");
}

TEST_F(OpsTest, UnlinkAndRmdir) {
  ASSERT_TRUE(WriteFile(mp("u"), "x"));
  ASSERT_EQ(unlink(mp("u").c_str()), 0) << strerror(errno);
  struct stat st;
  EXPECT_NE(lstat(data("u").c_str(), &st), 0);
  ASSERT_EQ(mkdir(mp("rd").c_str(), 0755), 0);
  ASSERT_EQ(rmdir(mp("rd").c_str()), 0) << strerror(errno);
  EXPECT_NE(lstat(data("rd").c_str(), &st), 0);
  // rmdir of a non-empty directory fails in the backing fs, after its record
  // was written: that record must say "skipped".
  ASSERT_EQ(mkdir(mp("full").c_str(), 0755), 0);
  ASSERT_TRUE(WriteFile(mp("full/x"), "x"));
  EXPECT_EQ(rmdir(mp("full").c_str()), -1);
  EXPECT_EQ(errno, ENOTEMPTY);
  EXPECT_EQ(lstat(data("full/x").c_str(), &st), 0);
  auto rs = UnmountAndRead();
  Record u = One(rs, Op::kUnlink, "u");
  EXPECT_EQ(u.state, kStatePending);
  EXPECT_TRUE(u.mode && S_ISREG(*u.mode)) << Dump(u);
  EXPECT_EQ(One(rs, Op::kRmdir, "rd").state, kStatePending);
  EXPECT_EQ(One(rs, Op::kRmdir, "full").state, kStateSkipped);
}

TEST_F(OpsTest, RenamePlain) {
  ASSERT_TRUE(WriteFile(mp("a"), "A"));
  ASSERT_EQ(mkdir(mp("d").c_str(), 0755), 0);
  ASSERT_EQ(rename(mp("a").c_str(), mp("d/b").c_str()), 0) << strerror(errno);
  struct stat st;
  EXPECT_NE(lstat(data("a").c_str(), &st), 0);
  EXPECT_EQ(Str(ReadFile(data("d/b"))), "A");
  EXPECT_EQ(Str(ReadFile(mp("d/b"))), "A");
  // Onto an existing file: replaced.
  ASSERT_TRUE(WriteFile(mp("c"), "C"));
  ASSERT_TRUE(WriteFile(mp("d/old"), "old"));
  ASSERT_EQ(rename(mp("c").c_str(), mp("d/old").c_str()), 0) << strerror(errno);
  EXPECT_EQ(Str(ReadFile(data("d/old"))), "C");
  EXPECT_EQ(ListDir(data("d")), (std::set<std::string>{"b", "old"}));
  auto rs = UnmountAndRead();
  Record r = One(rs, Op::kRename, "a", "d/b");
  EXPECT_EQ(r.state, kStatePending);
  EXPECT_FALSE(r.flags.has_value() && *r.flags != 0) << Dump(r);
  EXPECT_EQ(One(rs, Op::kRename, "c", "d/old").state, kStatePending);
}

// A renamed directory: later writes through a descriptor opened before the
// rename are journaled under the new path.
TEST_F(OpsTest, RenameDirectoryThenWriteOpenFile) {
  ASSERT_EQ(mkdir(mp("dd").c_str(), 0755), 0);
  ASSERT_TRUE(WriteFile(mp("dd/inner"), "0123456789"));
  UniqueFd fd(open(mp("dd/inner").c_str(), O_WRONLY));
  ASSERT_TRUE(fd) << strerror(errno);
  ASSERT_EQ(rename(mp("dd").c_str(), mp("dd2").c_str()), 0) << strerror(errno);
  ASSERT_EQ(pwrite(fd.get(), "XY", 2, 3), 2);
  ASSERT_EQ(close(fd.Release()), 0);
  EXPECT_EQ(Str(ReadFile(data("dd2/inner"))), "012XY56789");
  auto rs = UnmountAndRead();
  Record ren = One(rs, Op::kRename, "dd", "dd2");
  EXPECT_TRUE(Covers(WrittenRanges(rs, "dd2/inner"), 3, 2)) << DumpAll(rs);
  for (const auto& r : rs)
    if (r.seq > ren.seq) {
      EXPECT_NE(r.path, "dd/inner") << "stale path after rename: " << Dump(r);
    }
}

// RENAME_NOREPLACE onto an existing name. The kernel itself refuses when it
// knows the target exists, so the daemon only sees the request when the name
// appears in the backing dir between the kernel's lookup and the rename (a
// process working on DATADIR directly). Provoke that race: the journal must
// then hold the record as "skipped", and every rename the application saw
// succeed as "pending".
TEST_F(OpsTest, RenameNoreplace) {
  ASSERT_TRUE(WriteFile(mp("a"), "A"));
  ASSERT_EQ(renameat2(AT_FDCWD, mp("a").c_str(), AT_FDCWD, mp("b").c_str(), RENAME_NOREPLACE), 0)
      << strerror(errno);
  EXPECT_EQ(Str(ReadFile(data("b"))), "A");
  // Target known to the kernel: EEXIST without asking the daemon.
  ASSERT_TRUE(WriteFile(mp("c"), "C"));
  EXPECT_EQ(renameat2(AT_FDCWD, mp("b").c_str(), AT_FDCWD, mp("c").c_str(), RENAME_NOREPLACE), -1);
  EXPECT_EQ(errno, EEXIST);
  EXPECT_EQ(Str(ReadFile(data("b"))), "A");
  EXPECT_EQ(Str(ReadFile(data("c"))), "C");

  // The race: "x" flickers in the backing dir.
  std::atomic<bool> stop{false};
  struct Joiner {
    std::atomic<bool>& stop;
    std::thread t;
    ~Joiner() {
      stop = true;
      if (t.joinable()) t.join();
    }
  } racer{stop, std::thread([&] {
            std::string x = data("x");
            while (!stop) {
              int fd = open(x.c_str(), O_CREAT | O_WRONLY | O_EXCL, 0644);
              if (fd >= 0) close(fd);
              unlink(x.c_str());
            }
          })};
  int eexist = 0, succeeded = 0, other = 0;
  bool hit = false;
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  for (int i = 0; !hit && std::chrono::steady_clock::now() < deadline; ++i) {
    struct stat st;
    if (lstat(data("src").c_str(), &st) != 0) {
      ASSERT_TRUE(WriteFile(mp("src"), "S")) << "recreating src: " << strerror(errno);
    }
    int rc = renameat2(AT_FDCWD, mp("src").c_str(), AT_FDCWD, mp("x").c_str(), RENAME_NOREPLACE);
    if (rc == 0)
      ++succeeded;
    else if (errno == EEXIST)
      ++eexist;
    else
      ++other;  // ENOENT: the racer removed a name the kernel had just looked up
    if (rc != 0 && errno == EEXIST && i % 16 == 0) {
      for (const auto& r : Records())
        if (r.op == Op::kRename && r.path == "src" && r.new_path == "x" && r.state == kStateSkipped)
          hit = true;
    }
  }
  stop = true;
  racer.t.join();
  ASSERT_TRUE(hit) << "in 20 s of racing, no RENAME_NOREPLACE reached the daemon while the target "
                      "existed (eexist="
                   << eexist << " ok=" << succeeded << " other=" << other << ")";

  auto rs = UnmountAndRead();
  Record first = One(rs, Op::kRename, "a", "b");
  EXPECT_EQ(first.flags, RENAME_NOREPLACE);
  EXPECT_EQ(first.state, kStatePending);
  EXPECT_TRUE(Find(rs, Op::kRename, "b", "c").empty()) << "the kernel answered that one itself";
  int skipped = 0, pending = 0;
  for (const auto& r : Find(rs, Op::kRename, "src", "x")) {
    EXPECT_EQ(r.flags, RENAME_NOREPLACE) << Dump(r);
    if (r.state == kStateSkipped) {
      ++skipped;
      EXPECT_TRUE(r.error.has_value()) << Dump(r);
    } else {
      ++pending;
    }
  }
  EXPECT_GE(skipped, 1);
  EXPECT_LE(skipped, eexist + other);
  EXPECT_EQ(pending, succeeded) << "every rename the application saw succeed is pending, "
                                   "every failed one skipped";
}

TEST_F(OpsTest, RenameExchange) {
  ASSERT_TRUE(WriteFile(mp("x"), "X"));
  ASSERT_TRUE(WriteFile(mp("y"), "YY"));
  ASSERT_EQ(renameat2(AT_FDCWD, mp("x").c_str(), AT_FDCWD, mp("y").c_str(), RENAME_EXCHANGE), 0)
      << strerror(errno);
  EXPECT_EQ(Str(ReadFile(data("x"))), "YY");
  EXPECT_EQ(Str(ReadFile(data("y"))), "X");
  EXPECT_EQ(Str(ReadFile(mp("x"))), "YY");
  EXPECT_EQ(Str(ReadFile(mp("y"))), "X");
  // A directory with a file.
  ASSERT_EQ(mkdir(mp("d").c_str(), 0755), 0);
  ASSERT_TRUE(WriteFile(mp("d/in"), "in"));
  ASSERT_EQ(renameat2(AT_FDCWD, mp("d").c_str(), AT_FDCWD, mp("x").c_str(), RENAME_EXCHANGE), 0)
      << strerror(errno);
  EXPECT_EQ(Str(ReadFile(data("x/in"))), "in");
  EXPECT_EQ(Str(ReadFile(data("d"))), "YY");
  // A rename onto a non-empty directory fails in the backing fs: skipped.
  ASSERT_EQ(mkdir(mp("e").c_str(), 0755), 0);
  EXPECT_EQ(rename(mp("e").c_str(), mp("x").c_str()), -1);
  EXPECT_TRUE(errno == ENOTEMPTY || errno == EEXIST) << strerror(errno);
  auto rs = UnmountAndRead();
  Record r = One(rs, Op::kRename, "x", "y");
  EXPECT_EQ(r.flags, RENAME_EXCHANGE);
  EXPECT_EQ(Detail(r).value("exchange", false), true) << Dump(r);
  EXPECT_EQ(r.state, kStatePending);
  EXPECT_EQ(One(rs, Op::kRename, "d", "x").flags, RENAME_EXCHANGE);
  EXPECT_EQ(One(rs, Op::kRename, "e", "x").state, kStateSkipped);
}

// ---- attributes ------------------------------------------------------------------

TEST_F(OpsTest, ChmodChown) {
  ASSERT_TRUE(WriteFile(mp("g"), "g"));
  ASSERT_EQ(chmod(mp("g").c_str(), 0604), 0) << strerror(errno);
  struct stat b;
  ASSERT_EQ(stat(data("g").c_str(), &b), 0);
  EXPECT_EQ(b.st_mode, S_IFREG | 0604u);
  ASSERT_EQ(chown(mp("g").c_str(), 1234, 5678), 0) << strerror(errno);
  ASSERT_EQ(stat(data("g").c_str(), &b), 0);
  EXPECT_EQ(b.st_uid, 1234u);
  EXPECT_EQ(b.st_gid, 5678u);
  EXPECT_EQ(b.st_mode, S_IFREG | 0604u);
  ExpectSameAttrs("g");
  ASSERT_EQ(mkdir(mp("d").c_str(), 0755), 0);
  ASSERT_EQ(chmod(mp("d").c_str(), 01777), 0) << strerror(errno);
  ASSERT_EQ(stat(data("d").c_str(), &b), 0);
  EXPECT_EQ(b.st_mode, S_IFDIR | 01777u);
  ExpectSameAttrs("d");

  auto rs = UnmountAndRead();
  auto sets = Find(rs, Op::kSetattr, "g");
  bool saw_mode = false, saw_owner = false;
  for (const auto& r : sets) {
    json d = Detail(r);
    if (d.contains("mode")) {
      saw_mode = true;
      EXPECT_EQ(d["mode"], 0604) << Dump(r);
      EXPECT_EQ(r.mode, S_IFREG | 0604u) << Dump(r);
    }
    if (d.contains("uid")) {
      saw_owner = true;
      EXPECT_EQ(d["uid"], 1234) << Dump(r);
      EXPECT_EQ(d.value("gid", -1), 5678) << Dump(r);
    }
  }
  EXPECT_TRUE(saw_mode) << DumpAll(rs);
  EXPECT_TRUE(saw_owner) << DumpAll(rs);
  bool dir_mode = false;
  for (const auto& r : Find(rs, Op::kSetattr, "d"))
    if (Detail(r).value("mode", -1) == 01777) dir_mode = true;
  EXPECT_TRUE(dir_mode) << DumpAll(rs);
}

TEST_F(OpsTest, TruncateAndFtruncate) {
  const std::string content = Pattern(1000, 3);
  ASSERT_TRUE(WriteFile(mp("t"), content));
  ASSERT_EQ(truncate(mp("t").c_str(), 100), 0) << strerror(errno);
  EXPECT_EQ(Str(ReadFile(data("t"))), content.substr(0, 100));
  UniqueFd fd(open(mp("t").c_str(), O_RDWR));
  ASSERT_TRUE(fd) << strerror(errno);
  ASSERT_EQ(ftruncate(fd.get(), 50), 0) << strerror(errno);
  ASSERT_EQ(ftruncate(fd.get(), 4096), 0) << strerror(errno);
  ASSERT_EQ(close(fd.Release()), 0);
  EXPECT_EQ(Str(ReadFile(data("t"))), content.substr(0, 50) + std::string(4046, '\0'));
  ExpectSameAttrs("t");
  auto rs = UnmountAndRead();
  std::vector<int64_t> sizes;
  for (const auto& r : Find(rs, Op::kTruncate, "t")) sizes.push_back(r.size.value_or(-1));
  EXPECT_EQ(sizes, (std::vector<int64_t>{100, 50, 4096})) << DumpAll(rs);
}

TEST_F(OpsTest, Utimens) {
  ASSERT_TRUE(WriteFile(mp("u"), "u"));
  struct timespec ts[2] = {{1000000000, 123456789}, {1200000000, 987654321}};
  ASSERT_EQ(utimensat(AT_FDCWD, mp("u").c_str(), ts, 0), 0) << strerror(errno);
  struct stat b, m;
  ASSERT_EQ(stat(data("u").c_str(), &b), 0);
  EXPECT_EQ(b.st_atim.tv_sec, ts[0].tv_sec);
  EXPECT_EQ(b.st_atim.tv_nsec, ts[0].tv_nsec);
  EXPECT_EQ(b.st_mtim.tv_sec, ts[1].tv_sec);
  EXPECT_EQ(b.st_mtim.tv_nsec, ts[1].tv_nsec);
  ASSERT_EQ(stat(mp("u").c_str(), &m), 0);
  EXPECT_EQ(MtimeNs(m), MtimeNs(b));
  // Only mtime, on a directory.
  ASSERT_EQ(mkdir(mp("d").c_str(), 0755), 0);
  struct timespec only_m[2] = {{0, UTIME_OMIT}, {1300000000, 5}};
  ASSERT_EQ(utimensat(AT_FDCWD, mp("d").c_str(), only_m, 0), 0) << strerror(errno);
  ASSERT_EQ(stat(data("d").c_str(), &b), 0);
  EXPECT_EQ(MtimeNs(b), 1300000000000000005);

  auto rs = UnmountAndRead();
  bool found = false;
  for (const auto& r : Find(rs, Op::kSetattr, "u")) {
    json d = Detail(r);
    if (d.contains("mtime") && d["mtime"] == 1200000000987654321) {
      found = true;
      EXPECT_EQ(d.value("atime", json()), 1000000000123456789) << Dump(r);
    }
  }
  EXPECT_TRUE(found) << DumpAll(rs);
  found = false;
  for (const auto& r : Find(rs, Op::kSetattr, "d")) {
    json d = Detail(r);
    if (d.value("mtime", json()) == 1300000000000000005) {
      found = true;
      EXPECT_FALSE(d.contains("atime")) << Dump(r);
    }
  }
  EXPECT_TRUE(found) << DumpAll(rs);
}

TEST_F(OpsTest, Xattrs) {
  ASSERT_EQ(Unmount(), 0);
  Options o;
  o.args = {"--xattr", "on"};
  ASSERT_NO_FATAL_FAILURE(Mount(o));
  ASSERT_TRUE(WriteFile(mp("x"), "x"));
  ASSERT_EQ(setxattr(mp("x").c_str(), "user.color", "blue", 4, 0), 0) << strerror(errno);
  char buf[256];
  ssize_t n = getxattr(mp("x").c_str(), "user.color", buf, sizeof buf);
  ASSERT_EQ(n, 4) << strerror(errno);
  EXPECT_EQ(std::string(buf, n), "blue");
  n = getxattr(data("x").c_str(), "user.color", buf, sizeof buf);
  ASSERT_EQ(n, 4) << strerror(errno);
  EXPECT_EQ(std::string(buf, n), "blue");
  EXPECT_EQ(getxattr(mp("x").c_str(), "user.color", nullptr, 0), 4);  // size probe
  n = listxattr(mp("x").c_str(), buf, sizeof buf);
  ASSERT_GT(n, 0) << strerror(errno);
  EXPECT_NE(std::string(buf, n).find(std::string("user.color\0", 11)), std::string::npos);
  // XATTR_CREATE on an existing name fails in the backing fs: skipped.
  EXPECT_EQ(setxattr(mp("x").c_str(), "user.color", "red", 3, XATTR_CREATE), -1);
  EXPECT_EQ(errno, EEXIST);
  ASSERT_EQ(removexattr(mp("x").c_str(), "user.color"), 0) << strerror(errno);
  EXPECT_EQ(getxattr(data("x").c_str(), "user.color", buf, sizeof buf), -1);
  EXPECT_EQ(errno, ENODATA);
  EXPECT_EQ(getxattr(mp("x").c_str(), "user.color", buf, sizeof buf), -1);
  EXPECT_EQ(errno, ENODATA);
  // On a directory too.
  ASSERT_EQ(mkdir(mp("d").c_str(), 0755), 0);
  ASSERT_EQ(setxattr(mp("d").c_str(), "user.k", "v", 1, 0), 0) << strerror(errno);
  EXPECT_EQ(getxattr(data("d").c_str(), "user.k", buf, sizeof buf), 1);

  auto rs = UnmountAndRead();
  auto sets = Find(rs, Op::kSetxattr, "x");
  ASSERT_EQ(sets.size(), 2u) << DumpAll(rs);
  EXPECT_EQ(Detail(sets[0]).value("name", ""), "user.color");
  EXPECT_EQ(Detail(sets[0]).value("size", -1), 4);
  EXPECT_EQ(sets[0].state, kStatePending);
  EXPECT_EQ(sets[1].state, kStateSkipped);
  EXPECT_EQ(Detail(One(rs, Op::kRemovexattr, "x")).value("name", ""), "user.color");
  EXPECT_EQ(Detail(One(rs, Op::kSetxattr, "d")).value("name", ""), "user.k");
}

// ---- data operations --------------------------------------------------------------

TEST_F(OpsTest, Fallocate) {
  UniqueFd fd(open(mp("fa").c_str(), O_CREAT | O_RDWR, 0644));
  ASSERT_TRUE(fd) << strerror(errno);
  ASSERT_EQ(fallocate(fd.get(), 0, 0, 1 << 20), 0) << strerror(errno);
  ASSERT_EQ(close(fd.Release()), 0);
  struct stat b;
  ASSERT_EQ(stat(data("fa").c_str(), &b), 0);
  EXPECT_EQ(b.st_size, 1 << 20);
  EXPECT_GE(b.st_blocks * 512, 1 << 20);
  // Punching a hole into a clean file is a data change like a write.
  const std::string content = Pattern(65536, 4);
  ASSERT_TRUE(WriteFile(mp("fb"), content));
  fd.Reset(open(mp("fb").c_str(), O_RDWR));
  ASSERT_TRUE(fd) << strerror(errno);
  ASSERT_EQ(fallocate(fd.get(), FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 4096, 8192), 0)
      << strerror(errno);
  ASSERT_EQ(close(fd.Release()), 0);
  std::string expected = content;
  std::fill(expected.begin() + 4096, expected.begin() + 12288, '\0');
  EXPECT_EQ(Str(ReadFile(data("fb"))), expected);
  EXPECT_EQ(Str(ReadFile(mp("fb"))), expected);

  auto rs = UnmountAndRead();
  EXPECT_TRUE(DataCovered(rs, "fa", 0, 1 << 20)) << DumpAll(rs);
  EXPECT_TRUE(Covers(WrittenRanges(rs, "fb"), 4096, 8192)) << DumpAll(rs);
  auto closes = Find(rs, Op::kClose, "fa");
  ASSERT_FALSE(closes.empty());
  EXPECT_EQ(closes.back().size, 1 << 20);
}

TEST_F(OpsTest, CopyFileRange) {
  const std::string content = Pattern(65536, 7);
  ASSERT_TRUE(WriteFile(mp("cs"), content));
  ASSERT_TRUE(WriteFile(mp("cd"), ""));
  UniqueFd in(open(mp("cs").c_str(), O_RDONLY));
  UniqueFd out(open(mp("cd").c_str(), O_WRONLY));
  ASSERT_TRUE(in && out) << strerror(errno);
  loff_t oi = 0, oo = 0;
  while (oo < 65536) {
    ssize_t n = copy_file_range(in.get(), &oi, out.get(), &oo, 65536 - oo, 0);
    ASSERT_GT(n, 0) << strerror(errno);
  }
  ASSERT_EQ(close(out.Release()), 0);
  in.Reset();
  EXPECT_EQ(Str(ReadFile(data("cd"))), content);
  EXPECT_EQ(Str(ReadFile(mp("cd"))), content);
  auto rs = UnmountAndRead();
  EXPECT_TRUE(Covers(WrittenRanges(rs, "cd"), 0, 65536)) << "cd was clean: ranges" << DumpAll(rs);
  EXPECT_TRUE(WrittenRanges(rs, "cs").size() <= 1u);
  auto closes = Find(rs, Op::kClose, "cd");
  ASSERT_FALSE(closes.empty()) << DumpAll(rs);
  EXPECT_EQ(closes.back().size, 65536);
}

TEST_F(OpsTest, SeekDataAndHoleOnSparseFile) {
  const off_t kOff = 1 << 20;
  UniqueFd fd(open(mp("sp").c_str(), O_CREAT | O_RDWR, 0644));
  ASSERT_TRUE(fd) << strerror(errno);
  ASSERT_EQ(pwrite(fd.get(), Pattern(4096, 5).data(), 4096, kOff), 4096);
  ASSERT_EQ(close(fd.Release()), 0);
  UniqueFd b(open(data("sp").c_str(), O_RDONLY));
  UniqueFd m(open(mp("sp").c_str(), O_RDONLY));
  ASSERT_TRUE(b && m);
  for (auto [off, whence] : {std::pair<off_t, int>{0, SEEK_DATA},
                             {0, SEEK_HOLE},
                             {kOff, SEEK_HOLE},
                             {kOff + 100, SEEK_DATA}}) {
    off_t want = lseek(b.get(), off, whence);
    off_t got = lseek(m.get(), off, whence);
    EXPECT_EQ(got, want) << "lseek(" << off << ", "
                         << (whence == SEEK_DATA ? "SEEK_DATA" : "SEEK_HOLE") << ")";
  }
  // ext4/xfs/tmpfs report the hole; then the mount must have asked the daemon.
  if (lseek(b.get(), 0, SEEK_DATA) == kOff) {
    EXPECT_EQ(lseek(m.get(), 0, SEEK_DATA), kOff);
  }
  errno = 0;
  EXPECT_EQ(lseek(m.get(), kOff + 4096, SEEK_DATA), -1);
  EXPECT_EQ(errno, ENXIO);
  m.Reset();
  auto rs = UnmountAndRead();
  EXPECT_TRUE(DataCovered(rs, "sp", kOff, 4096)) << DumpAll(rs);
}

TEST_F(OpsTest, Statfs) {
  struct statvfs m, b;
  ASSERT_EQ(statvfs(mp().c_str(), &m), 0) << strerror(errno);
  ASSERT_EQ(statvfs(data().c_str(), &b), 0) << strerror(errno);
  EXPECT_EQ(m.f_bsize, b.f_bsize);
  EXPECT_EQ(m.f_frsize, b.f_frsize);
  EXPECT_EQ(m.f_blocks, b.f_blocks);
  EXPECT_EQ(m.f_files, b.f_files);
  EXPECT_EQ(m.f_namemax, b.f_namemax);
  // Free space moves with other activity; it must be the backing fs's figure.
  EXPECT_NEAR(double(m.f_bfree), double(b.f_bfree), double(b.f_blocks) / 100);
  EXPECT_EQ(Unmount(), 0);
}

TEST_F(OpsTest, FsyncCommitsRangesBeforeReturning) {
  const std::string content = Pattern(5000, 6);
  UniqueFd fd(open(mp("fs").c_str(), O_CREAT | O_WRONLY, 0644));
  ASSERT_TRUE(fd) << strerror(errno);
  ASSERT_EQ(write(fd.get(), content.data(), content.size()), 5000);
  ASSERT_EQ(fsync(fd.get()), 0) << strerror(errno);
  {
    // Still open: fsync alone must have made the ranges and an fsync record
    // visible, and the data must be in the backing file.
    auto rs = Records();
    // Covered by ranges, or by the create record of the still open session.
    EXPECT_TRUE(Covers(WrittenRanges(rs, "fs"), 0, 5000) || !Find(rs, Op::kCreate, "fs").empty())
        << DumpAll(rs);
    EXPECT_FALSE(Find(rs, Op::kFsync, "fs").empty()) << DumpAll(rs);
    EXPECT_EQ(Str(ReadFile(data("fs"))), content);
  }
  ASSERT_EQ(pwrite(fd.get(), "Z", 1, 7000), 1);
  ASSERT_EQ(fdatasync(fd.get()), 0) << strerror(errno);
  {
    auto rs = Records();
    EXPECT_TRUE(Covers(WrittenRanges(rs, "fs"), 7000, 1) || !Find(rs, Op::kCreate, "fs").empty())
        << DumpAll(rs);
  }
  ASSERT_EQ(close(fd.Release()), 0);
  // fsync of a directory.
  UniqueFd dir(open(mp().c_str(), O_RDONLY | O_DIRECTORY));
  ASSERT_TRUE(dir);
  EXPECT_EQ(fsync(dir.get()), 0) << strerror(errno);
  dir.Reset();
  auto rs = UnmountAndRead();
  EXPECT_GE(Find(rs, Op::kFsync, "fs").size(), 1u);
}

TEST_F(OpsTest, ReaddirListing) {
  ASSERT_TRUE(WriteFile(mp("a"), "a"));
  ASSERT_EQ(mkdir(mp("c").c_str(), 0755), 0);
  ASSERT_TRUE(WriteFile(mp("c/x"), "x"));
  ASSERT_EQ(symlink("a", mp("c/l").c_str()), 0);
  ASSERT_EQ(mkfifo(mp("c/p").c_str(), 0644), 0);
  // Enough long names to need several READDIR(PLUS) replies.
  ASSERT_EQ(mkdir(mp("big").c_str(), 0755), 0);
  for (int i = 0; i < 600; ++i)
    ASSERT_TRUE(WriteFile(mp("big/" + std::string(100, 'n') + std::to_string(i)), ""));
  EXPECT_EQ(ListDir(mp()), ListDir(data()));
  EXPECT_EQ(ListDir(mp()), (std::set<std::string>{"a", "big", "c"}));
  EXPECT_EQ(ListDir(mp("c")), ListDir(data("c")));
  EXPECT_EQ(ListDir(mp("c")).size(), 3u);
  auto big = ListDir(mp("big"));
  EXPECT_EQ(big.size(), 600u);
  EXPECT_EQ(big, ListDir(data("big")));
  // Types and attributes through the mount equal the backing ones.
  for (const auto& [rel, st] : ListTree(data())) ExpectSameAttrs(rel);
  EXPECT_EQ(ListTree(mp()).size(), ListTree(data()).size());
  EXPECT_EQ(Unmount(), 0);
}

// ---- journal timing ------------------------------------------------------------------

using WritebackOffTest = MountTest;

// With the writeback cache off every write() reaches the daemon at once: the
// first write to a clean file is in the journal (its intent record, naming
// the range) before write() returns; later ranges and the close record are
// in it before close() returns.
TEST_F(WritebackOffTest, IntentBeforeWriteReturnsRangesBeforeCloseReturns) {
  ASSERT_TRUE(WriteFile(data("clean"), std::string(16384, 'c')));
  Options o;
  o.args = {"--writeback", "off"};
  ASSERT_NO_FATAL_FAILURE(Mount(o));
  UniqueFd fd(open(mp("clean").c_str(), O_WRONLY));
  ASSERT_TRUE(fd) << strerror(errno);
  ASSERT_EQ(pwrite(fd.get(), "AAAA", 4, 4096), 4);
  {
    auto rs = Records();
    EXPECT_EQ(Find(rs, Op::kWrite, "clean").size(), 1u) << DumpAll(rs);
    EXPECT_TRUE(Covers(WrittenRanges(rs, "clean"), 4096, 4)) << DumpAll(rs);
  }
  EXPECT_EQ(Str(ReadFile(data("clean"))).substr(4096, 4), "AAAA");
  ASSERT_EQ(pwrite(fd.get(), "BBBB", 4, 12000), 4);
  ASSERT_EQ(close(fd.Release()), 0);
  {
    auto rs = Records();
    EXPECT_TRUE(Covers(WrittenRanges(rs, "clean"), 12000, 4)) << DumpAll(rs);
    auto closes = Find(rs, Op::kClose, "clean");
    ASSERT_EQ(closes.size(), 1u) << DumpAll(rs);
    EXPECT_EQ(closes[0].size, 16384);
    for (const auto& w : Find(rs, Op::kWrite, "clean")) EXPECT_LT(w.seq, closes[0].seq);
  }
  EXPECT_EQ(Unmount(), 0);
}

// ---- mount modes ----------------------------------------------------------------

using OverMountTest = MountTest;

TEST_F(OverMountTest, WritesReachTheRealDirectory) {
  ASSERT_TRUE(WriteFile(data("pre.txt"), "before mount"));
  ASSERT_EQ(mkdir(data("olddir").c_str(), 0755), 0);
  ASSERT_TRUE(WriteFile(data("olddir/inner"), "inner"));
  Options o;
  o.over_mount = true;
  ASSERT_NO_FATAL_FAILURE(Mount(o));
  ASSERT_EQ(mp(), data());
  ASSERT_EQ(MountType(data()), "fuse.scribefs");
  // Files from before the mount are served through it.
  EXPECT_EQ(Str(ReadFile(data("pre.txt"))), "before mount");
  EXPECT_EQ(Str(ReadFile(data("olddir/inner"))), "inner");
  // New content through the mount.
  const std::string big = Pattern(100000, 8);
  ASSERT_TRUE(WriteFile(data("new.txt"), big));
  ASSERT_EQ(mkdir(data("newdir").c_str(), 0755), 0);
  ASSERT_TRUE(WriteFile(data("newdir/f"), "f"));
  {
    UniqueFd fd(open(data("pre.txt").c_str(), O_WRONLY | O_APPEND));
    ASSERT_TRUE(fd) << strerror(errno);
    ASSERT_EQ(write(fd.get(), " + after", 8), 8);
    ASSERT_EQ(close(fd.Release()), 0);
  }
  ASSERT_EQ(rename(data("olddir/inner").c_str(), data("newdir/inner2").c_str()), 0);
  ASSERT_EQ(Unmount(), 0);
  ASSERT_FALSE(IsMounted(data()));

  // Now the real directory.
  EXPECT_EQ(Str(ReadFile(data("new.txt"))), big);
  EXPECT_EQ(Str(ReadFile(data("newdir/f"))), "f");
  EXPECT_EQ(Str(ReadFile(data("pre.txt"))), "before mount + after");
  EXPECT_EQ(Str(ReadFile(data("newdir/inner2"))), "inner");
  EXPECT_TRUE(ListDir(data("olddir")).empty());
  auto rs = Records();
  EXPECT_EQ(Find(rs, Op::kCreate, "new.txt").size(), 1u);
  EXPECT_TRUE(DataCovered(rs, "new.txt", 0, big.size())) << DumpAll(rs);
  EXPECT_EQ(Find(rs, Op::kMkdir, "newdir").size(), 1u);
  EXPECT_EQ(Find(rs, Op::kCreate, "newdir/f").size(), 1u);
  EXPECT_TRUE(Covers(WrittenRanges(rs, "pre.txt"), 12, 8)) << DumpAll(rs);
  EXPECT_EQ(Find(rs, Op::kRename, "olddir/inner", "newdir/inner2").size(), 1u);
}

// ---- --xattr off -------------------------------------------------------------------

using XattrOffTest = MountTest;

TEST_F(XattrOffTest, SetxattrNotSupportedWritesWork) {
  Options o;
  o.args = {"--xattr", "off"};
  ASSERT_NO_FATAL_FAILURE(Mount(o));
  ASSERT_TRUE(WriteFile(mp("f"), "hello"));
  EXPECT_EQ(setxattr(mp("f").c_str(), "user.a", "1", 1, 0), -1);
  EXPECT_TRUE(errno == ENOTSUP || errno == EOPNOTSUPP) << strerror(errno);
  char buf[16];
  EXPECT_EQ(getxattr(mp("f").c_str(), "user.a", buf, sizeof buf), -1);
  EXPECT_EQ(getxattr(data("f").c_str(), "user.a", buf, sizeof buf), -1);
  EXPECT_EQ(errno, ENODATA) << "nothing reached the backing file";
  // Ordinary writes keep working.
  UniqueFd fd(open(mp("f").c_str(), O_WRONLY | O_APPEND));
  ASSERT_TRUE(fd) << strerror(errno);
  ASSERT_EQ(write(fd.get(), " world", 6), 6);
  ASSERT_EQ(close(fd.Release()), 0);
  EXPECT_EQ(Str(ReadFile(mp("f"))), "hello world");
  EXPECT_EQ(Str(ReadFile(data("f"))), "hello world");
  EXPECT_EQ(Unmount(), 0);
  auto rs = Records();
  EXPECT_EQ(Find(rs, Op::kCreate, "f").size(), 1u);
  EXPECT_TRUE(DataCovered(rs, "f", 0, 5)) << DumpAll(rs);
  EXPECT_TRUE(Covers(WrittenRanges(rs, "f"), 5, 6)) << "the append to a clean file" << DumpAll(rs);
  for (const auto& r : rs) EXPECT_NE(r.op, Op::kSetxattr) << Dump(r);
}

}  // namespace
}  // namespace scribefs::it
