// Failure handling: bad input at start-up (clear message, exit code, nothing
// changed), a journal that cannot grow (sticky EIO, nothing unrecorded), and
// a journal the daemon cannot use at start (state directory read-only, the
// file corrupt or truncated: refused, named, left exactly as it was).
#include <fcntl.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <cstring>
#include <fstream>
#include <random>
#include <sstream>

#include "common/unique_fd.h"
#include "tests/integration/mount_fixture.h"

namespace scribefs::it {
namespace {

// What a start-up failure must not change: every path below the temp dir
// with its type, mode, size and mtime.
struct Snapshot {
  std::map<std::string, std::tuple<mode_t, off_t, int64_t>> entries;
  bool operator==(const Snapshot&) const = default;
};

Snapshot Take(const std::string& root) {
  Snapshot s;
  for (const auto& [rel, st] : ListTree(root)) {
    // Directory sizes and mtimes move when entries are added; that is covered
    // by the entries themselves.
    bool dir = S_ISDIR(st.st_mode);
    s.entries[rel] = {st.st_mode, dir ? 0 : st.st_size, dir ? 0 : MtimeNs(st)};
  }
  return s;
}

std::string Describe(const Snapshot& a, const Snapshot& b) {
  std::string out;
  for (const auto& [k, v] : a.entries)
    if (!b.entries.count(k))
      out += "\n  removed: " + k;
    else if (b.entries.at(k) != v)
      out += "\n  changed: " + k;
  for (const auto& [k, v] : b.entries)
    if (!a.entries.count(k)) out += "\n  created: " + k;
  return out;
}

class BadInputTest : public MountTest {
 protected:
  // Runs the daemon with args and checks the common contract: exit code,
  // message on stderr containing every `needles`, no new mount, nothing below
  // the temp dir changed.
  void ExpectRefused(const std::vector<std::string>& args, int exit_code,
                     const std::vector<std::string>& needles) {
    Snapshot before = Take(root());
    auto mounts_before = MountsUnder(root());
    std::vector<std::string> argv = {ScribefsBin()};
    argv.insert(argv.end(), args.begin(), args.end());
    RunResult r = RunCommand(argv, 30);
    EXPECT_FALSE(r.timed_out);
    EXPECT_EQ(r.exit_code, exit_code) << r.Describe();
    EXPECT_NE(r.exit_code, 0) << r.Describe();
    EXPECT_FALSE(r.err.empty()) << "no message on stderr";
    for (const auto& n : needles)
      EXPECT_NE(r.err.find(n), std::string::npos) << "stderr lacks '" << n << "': " << r.err;
    EXPECT_EQ(MountsUnder(root()), mounts_before) << "a mount was left behind";
    Snapshot after = Take(root());
    EXPECT_TRUE(before == after) << "start-up failure changed files:" << Describe(before, after);
  }
  std::string Path(const std::string& rel) { return root() + "/" + rel; }
};

TEST_F(BadInputTest, MissingDatadir) {
  ExpectRefused({"--state-dir", state(), Path("missing"), mnt()}, 2,
                {Path("missing"), "No such file or directory"});
  ExpectRefused({"--state-dir", state(), Path("missing")}, 2, {Path("missing")});
}

TEST_F(BadInputTest, DatadirIsAFile) {
  ASSERT_TRUE(WriteFile(Path("afile"), "keep me"));
  ExpectRefused({"--state-dir", state(), Path("afile"), mnt()}, 2,
                {Path("afile"), "not a directory"});
  EXPECT_EQ(ReadFile(Path("afile")).value_or(""), "keep me");
}

TEST_F(BadInputTest, StateDirOnReadOnlyFilesystem) {
  ASSERT_NO_FATAL_FAILURE(MountTmpfs(Path("ro"), "ro,size=1m"));
  ExpectRefused({"--state-dir", Path("ro/state"), data(), mnt()}, 2,
                {Path("ro/state"), "Read-only file system"});
}

TEST_F(BadInputTest, StateDirUnderARegularFile) {
  ASSERT_TRUE(WriteFile(Path("afile"), "x"));
  ExpectRefused({"--state-dir", Path("afile/state"), data(), mnt()}, 2,
                {"afile", "Not a directory"});
}

TEST_F(BadInputTest, StateDirInsideDatadir) {
  ExpectRefused({"--state-dir", data(".scribefs"), data(), mnt()}, 2,
                {data(".scribefs"), "inside DATADIR"});
  // Over-mount form, and a path that only resolves inside DATADIR via "..".
  ExpectRefused({"--state-dir", data("x/../.state"), data()}, 2, {"inside DATADIR"});
}

// A file:// target inside DATADIR would replicate into itself: refused at
// start-up, as is --endpoint that has no --target to apply to.
TEST_F(BadInputTest, TargetInsideDatadir) {
  ExpectRefused({"--state-dir", state(), "--target", "file://" + data("backup"), data(), mnt()}, 2,
                {"--target", "inside DATADIR"});
  ExpectRefused({"--state-dir", state(), "--target", "file://" + data("x/../y"), data()}, 2,
                {"inside DATADIR"});
  ExpectRefused({"--state-dir", state(), "--target", "file://" + mnt("t"), data(), mnt()}, 2,
                {"inside MOUNTPOINT"});
}

TEST_F(BadInputTest, EndpointWithoutTarget) {
  ExpectRefused({"--state-dir", state(), "--endpoint", "http://127.0.0.1:1", data(), mnt()}, 2,
                {"--endpoint", "without --target"});
}

TEST_F(BadInputTest, DatadirInsideStateDir) {
  ASSERT_EQ(mkdir(Path("st").c_str(), 0700), 0);
  ASSERT_EQ(mkdir(Path("st/data").c_str(), 0755), 0);
  ExpectRefused({"--state-dir", Path("st"), Path("st/data"), mnt()}, 2,
                {Path("st/data"), "inside the state directory"});
  ExpectRefused({"--state-dir", Path("st"), Path("st/data")}, 2, {"inside the state directory"});
}

TEST_F(BadInputTest, BadOptions) {
  ExpectRefused({"--state-dir", state(), "--xattr", "maybe", data(), mnt()}, 2, {"--xattr"});
  ExpectRefused({"--state-dir", state(), "--no-such-option", data(), mnt()}, 2,
                {"--no-such-option"});
  ExpectRefused({"--state-dir", state()}, 2, {"DATADIR"});
}

// A second daemon for a DATADIR and state dir that one already serves: exit
// 3, and the first keeps serving undisturbed.
TEST_F(BadInputTest, SecondDaemonOnSameDatadirAndStateDir) {
  ASSERT_NO_FATAL_FAILURE(Mount());
  const pid_t first = daemon_pid();
  ASSERT_TRUE(WriteFile(mp("a"), "first"));
  const std::string lock_before = ReadFile(state("lock")).value_or("?");
  Snapshot data_before = Take(data());
  auto mounts_before = MountsUnder(root());

  RunResult r = StartDaemon(Options());
  EXPECT_EQ(r.exit_code, 3) << r.Describe();
  EXPECT_NE(r.err.find("pid " + std::to_string(first)), std::string::npos) << r.err;
  EXPECT_NE(r.err.find(state()), std::string::npos) << r.err;
  // Over-mount form of the same DATADIR and state dir.
  Options over;
  over.over_mount = true;
  r = StartDaemon(over);
  EXPECT_EQ(r.exit_code, 3) << r.Describe();

  EXPECT_EQ(MountsUnder(root()), mounts_before);
  EXPECT_EQ(ReadFile(state("lock")).value_or("!"), lock_before);
  EXPECT_TRUE(data_before == Take(data()));
  // The first one still serves, and journals.
  EXPECT_TRUE(ProcessAlive(first));
  EXPECT_EQ(ReadFile(mp("a")).value_or(""), "first");
  ASSERT_TRUE(WriteFile(mp("b"), "still serving"));
  EXPECT_EQ(ReadFile(data("b")).value_or(""), "still serving");
  EXPECT_EQ(Unmount(), 0);
  auto rs = Records();
  EXPECT_EQ(Find(rs, Op::kCreate, "b").size(), 1u);
}

// A second daemon with its own state dir on a mount point that a scribefs
// daemon already serves: exit 3, the first keeps serving.
TEST_F(BadInputTest, SecondDaemonOnServedMountpoint) {
  ASSERT_NO_FATAL_FAILURE(Mount());
  auto mounts_before = MountsUnder(root());
  Options other;
  other.state_dir = root() + "/state2";
  RunResult r = StartDaemon(other);
  EXPECT_EQ(r.exit_code, 3) << r.Describe();
  EXPECT_NE(r.err.find(mnt()), std::string::npos) << r.err;
  EXPECT_EQ(MountsUnder(root()), mounts_before);
  ASSERT_TRUE(WriteFile(mp("b"), "still serving"));
  EXPECT_EQ(ReadFile(data("b")).value_or(""), "still serving");
  EXPECT_EQ(Unmount(), 0);
}

// ---- journal failure ------------------------------------------------------------

using JournalFailureTest = MountTest;

// The state dir lives on a 2 MiB tmpfs. Create files until the journal cannot
// grow. From then on every mutation fails with EIO - even after space is
// freed again (the failure is sticky) - reads keep working, and every file in
// the backing dir is named by a journal record.
TEST_F(JournalFailureTest, FullJournalIsStickyAndNothingSlipsByUnrecorded) {
  const std::string sfs = root() + "/statefs";
  ASSERT_NO_FATAL_FAILURE(MountTmpfs(sfs, "size=2m"));
  Options o;
  o.state_dir = sfs + "/state";
  o.args = {"--xattr", "on"};  // so that setxattr is a mutation, too
  ASSERT_NO_FATAL_FAILURE(Mount(o));
  ASSERT_TRUE(WriteFile(mp("clean.txt"), "original"));
  ASSERT_TRUE(WriteFile(mp("readme.txt"), "readable"));
  ASSERT_EQ(mkdir(mp("fill").c_str(), 0755), 0);

  const std::string longname(200, 'n');
  int first_errno = 0, created = 0;
  for (int i = 0; i < 200000 && !first_errno; ++i) {
    std::string p = mp("fill/" + std::to_string(i) + longname);
    int fd = open(p.c_str(), O_CREAT | O_WRONLY | O_EXCL, 0644);
    if (fd < 0) {
      first_errno = errno;
      break;
    }
    if (close(fd) != 0)
      first_errno = errno;
    else
      ++created;
  }
  ASSERT_TRUE(first_errno == EIO || first_errno == ENOSPC)
      << "first failure after " << created << " files: " << strerror(first_errno);
  printf("[   INFO   ] journal full after %d creates (%s)\n", created, strerror(first_errno));

  auto expect_eio = [](int rc, const char* what) {
    int e = errno;
    EXPECT_EQ(rc, -1) << what << " succeeded after the journal failed";
    if (rc == -1) {
      EXPECT_EQ(e, EIO) << what << ": " << strerror(e);
    }
  };
  auto mutations = [&](const std::string& round) {
    SCOPED_TRACE(round);
    int fd = open(mp("new-" + round).c_str(), O_CREAT | O_WRONLY | O_EXCL, 0644);
    expect_eio(fd < 0 ? -1 : 0, "create");
    if (fd >= 0) close(fd);
    expect_eio(mkdir(mp("dir-" + round).c_str(), 0755), "mkdir");
    expect_eio(rename(mp("readme.txt").c_str(), mp("renamed-" + round).c_str()), "rename");
    expect_eio(unlink(mp("readme.txt").c_str()), "unlink");
    expect_eio(symlink("t", mp("link-" + round).c_str()), "symlink");
    expect_eio(chmod(mp("readme.txt").c_str(), 0600), "chmod");
    expect_eio(truncate(mp("clean.txt").c_str(), 1), "truncate");
    expect_eio(setxattr(mp("readme.txt").c_str(), "user.k", "v", 1, 0), "setxattr");
    // A write to a file that was clean: refused at the write or, with the
    // writeback cache, when the kernel writes the page back (fsync).
    UniqueFd w(open(mp("clean.txt").c_str(), O_WRONLY));
    ASSERT_TRUE(w) << "opening without O_TRUNC changes nothing: " << strerror(errno);
    ssize_t n = pwrite(w.get(), "XYZ", 3, 0);
    int we = errno;
    int s = fsync(w.get());
    int se = errno;
    EXPECT_TRUE((n == -1 && we == EIO) || (s == -1 && se == EIO))
        << "write " << n << " (" << strerror(we) << "), fsync " << s << " (" << strerror(se) << ")";
    close(w.Release());
    // Reads still work.
    EXPECT_EQ(ReadFile(mp("readme.txt")).value_or(""), "readable");
    EXPECT_TRUE(ListDir(mp()).count("readme.txt"));
    struct stat st;
    EXPECT_EQ(stat(mp("fill").c_str(), &st), 0);
    // Nothing reached the backing dir.
    EXPECT_EQ(ReadFile(data("clean.txt")).value_or(""), "original");
    EXPECT_EQ(ReadFile(data("readme.txt")).value_or(""), "readable");
    EXPECT_NE(lstat(data("new-" + round).c_str(), &st), 0);
    EXPECT_NE(lstat(data("dir-" + round).c_str(), &st), 0);
    EXPECT_NE(lstat(data("link-" + round).c_str(), &st), 0);
    EXPECT_NE(lstat(data("renamed-" + round).c_str(), &st), 0);
  };
  mutations("full");
  // Space again: the journal stays failed (sticky), it does not quietly resume.
  RunResult grow = RunCommand({"mount", "-o", "remount,size=64m", sfs}, 20);
  ASSERT_EQ(grow.exit_code, 0) << grow.Describe();
  mutations("after-space-freed");

  int status = Unmount();
  EXPECT_TRUE(status == 0 || status == 1) << "daemon exit status " << status;
  EXPECT_FALSE(IsMounted(mnt()));

  auto rs = Records(o.state_dir);
  std::set<std::string> named;
  for (const auto& r : rs)
    if (r.state != kStateSkipped) {
      named.insert(r.path);
      if (r.new_path) named.insert(*r.new_path);
    }
  int in_backing = 0, unnamed = 0;
  std::string unnamed_list;
  for (const auto& [rel, st] : ListTree(data())) {
    ++in_backing;
    if (!named.count(rel) && unnamed++ < 10) unnamed_list += "\n  " + rel;
  }
  EXPECT_EQ(unnamed, 0) << "in the backing dir but not in the journal:" << unnamed_list;
  EXPECT_GE(in_backing, created);
}

// ---- a journal the daemon cannot use at start ------------------------------------

// A state directory with a journal of a few hundred records (mounted once,
// changes made, unmounted cleanly), then damaged in some way: the next start
// must fail with a message naming what is wrong, mount nothing, and leave
// journal.db byte for byte as it was (no silent reset or repair).
class JournalAtStartTest : public MountTest {
 protected:
  void SetUp() override {
    MountTest::SetUp();
    ASSERT_NO_FATAL_FAILURE(Mount());
    for (int i = 0; i < 300; ++i)
      ASSERT_TRUE(WriteFile(mp("f" + std::to_string(i)), std::string(i, 'x')));
    ASSERT_EQ(Unmount(), 0);
    journal_ = state("journal.db");
  }
  static std::string Bytes(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
  }
  // Starts the daemon on the same DATADIR and state dir and checks the
  // contract; `needles` must appear on stderr.
  void ExpectRefusedAtStart(const std::vector<std::string>& needles) {
    std::string before = Bytes(journal_);
    ASSERT_GT(before.size(), 8u * 4096);
    auto mounts_before = MountsUnder(root());
    RunResult r = StartDaemon(Options());
    EXPECT_FALSE(r.timed_out);
    EXPECT_NE(r.exit_code, 0) << r.Describe();
    for (const auto& n : needles)
      EXPECT_NE(r.err.find(n), std::string::npos) << "stderr lacks '" << n << "': " << r.err;
    EXPECT_EQ(MountsUnder(root()), mounts_before) << "something was mounted";
    EXPECT_FALSE(IsMounted(mnt()));
    EXPECT_TRUE(Bytes(journal_) == before) << "journal.db changed";
    printf("[   INFO   ] refused: %s", r.err.c_str());
  }
  std::string journal_;
};

// Root ignores permission bits (chmod 0500 would not stop it), so the state
// directory is made read-only the way that binds root too: a read-only bind
// mount of it onto itself.
TEST_F(JournalAtStartTest, ReadOnlyStateDirIsRefused) {
  ASSERT_EQ(mount(state().c_str(), state().c_str(), nullptr, MS_BIND, nullptr), 0)
      << strerror(errno);
  struct Unbind {
    std::string path;
    ~Unbind() { umount2(path.c_str(), MNT_DETACH); }
  } unbind{state()};
  ASSERT_EQ(mount(nullptr, state().c_str(), nullptr, MS_REMOUNT | MS_BIND | MS_RDONLY, nullptr),
            0)
      << strerror(errno);
  // Even root cannot write there now.
  int probe = open(state("probe").c_str(), O_CREAT | O_WRONLY, 0600);
  ASSERT_LT(probe, 0) << "the state dir is still writable";
  ASSERT_EQ(errno, EROFS);
  ASSERT_NO_FATAL_FAILURE(ExpectRefusedAtStart({state(), "Read-only file system"}));
}

// Garbage over a few pages in the middle of the file.
TEST_F(JournalAtStartTest, CorruptJournalIsRefusedAndLeftAlone) {
  struct stat st;
  ASSERT_EQ(stat(journal_.c_str(), &st), 0);
  UniqueFd fd(open(journal_.c_str(), O_WRONLY));
  ASSERT_TRUE(fd.valid());
  std::string junk(3 * 4096, '\0');
  std::mt19937 rng(7);
  for (char& c : junk) c = static_cast<char>(rng());
  off_t at = (st.st_size / 2) & ~off_t{4095};
  ASSERT_EQ(pwrite(fd.get(), junk.data(), junk.size(), at), static_cast<ssize_t>(junk.size()));
  fd.Reset();
  ASSERT_NO_FATAL_FAILURE(ExpectRefusedAtStart({journal_, "corrupt"}));
}

// Cut to half its length (e.g. a copy that did not finish).
TEST_F(JournalAtStartTest, TruncatedJournalIsRefusedAndLeftAlone) {
  struct stat st;
  ASSERT_EQ(stat(journal_.c_str(), &st), 0);
  ASSERT_EQ(truncate(journal_.c_str(), (st.st_size / 2) & ~off_t{4095}), 0);
  ASSERT_NO_FATAL_FAILURE(ExpectRefusedAtStart({journal_}));
}

}  // namespace
}  // namespace scribefs::it
