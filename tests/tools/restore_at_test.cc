// scribectl restore --at, history PATH and timeline, end to end: a target's
// history is written with the real HistoryStore (chunks from real files,
// segments of composed entries) into a file:// target, then the real
// scribectl binary restores from it with --target alone (no state directory
// anywhere), and the restored trees are compared with what each instant held.
#include <dirent.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <spawn.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <zstd.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "common/unique_fd.h"
#include "history/history_store.h"
#include "tests/history/history_test_util.h"
#include "tests/uploader/test_util.h"
#include "tools/time_spec.h"
#include "uploader/digest.h"
#include "uploader/local_store.h"
#include "uploader/object_layout.h"
#include "uploader/s3_store.h"

extern char** environ;

namespace scribefs {
namespace {

namespace fs = std::filesystem;
using history::Entry;
using nlohmann::json;
using testing_util::TempDir;

constexpr int64_t kT0 = 1'795'000'000'000'000'000;  // 2026-11-19
constexpr int64_t kSec = 1'000'000'000;
int64_t TimeOf(uint64_t seq) { return kT0 + static_cast<int64_t>(seq) * kSec; }

struct RunResult {
  int exit_code = -1;
  std::string out, err;
};

// Runs scribectl with no state directory reachable (a fresh, empty
// SCRIBEFS_STATE_ROOT): everything must come from --target.
RunResult RunCtl(std::vector<std::string> args, const std::string& state_root,
                 const std::map<std::string, std::string>& extra_env = {}) {
  args.insert(args.begin(), SCRIBECTL_BIN);
  std::vector<std::string> env;
  for (char** e = environ; *e; ++e) {
    std::string kv = *e;
    if (kv.rfind("SCRIBEFS_", 0) == 0) continue;
    env.push_back(kv);
  }
  env.push_back("SCRIBEFS_STATE_ROOT=" + state_root);
  for (const auto& [k, v] : extra_env) env.push_back(k + "=" + v);
  std::vector<char*> argv, envp;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  for (auto& a : env) envp.push_back(a.data());
  envp.push_back(nullptr);
  char out_name[] = "/tmp/restore_at_out.XXXXXX";
  char err_name[] = "/tmp/restore_at_err.XXXXXX";
  UniqueFd out(mkstemp(out_name)), err(mkstemp(err_name));
  unlink(out_name);
  unlink(err_name);
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_adddup2(&fa, out.get(), 1);
  posix_spawn_file_actions_adddup2(&fa, err.get(), 2);
  pid_t pid = -1;
  EXPECT_EQ(posix_spawn(&pid, SCRIBECTL_BIN, &fa, nullptr, argv.data(), envp.data()), 0);
  posix_spawn_file_actions_destroy(&fa);
  int status = 0;
  waitpid(pid, &status, 0);
  RunResult r;
  r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  auto slurp = [](int fd) {
    std::string s;
    char buf[4096];
    ssize_t n;
    off_t off = 0;
    while ((n = pread(fd, buf, sizeof buf, off)) > 0) {
      s.append(buf, static_cast<size_t>(n));
      off += n;
    }
    return s;
  };
  r.out = slurp(out.get());
  r.err = slurp(err.get());
  return r;
}

std::string Sha(const std::string& s) { return HexEncode(Sha256(s).value()); }

// A tree as compared: path -> "type perm size sha256|target mtime".
using Snapshot = std::map<std::string, std::string>;

std::string FileDesc(const std::string& content, mode_t perm, int64_t mtime_ns) {
  std::ostringstream o;
  o << "file " << std::oct << perm << std::dec << " " << content.size() << " " << Sha(content)
    << " " << mtime_ns;
  return o.str();
}
std::string DirDesc(mode_t perm, int64_t mtime_ns) {
  std::ostringstream o;
  o << "dir " << std::oct << perm << std::dec << " " << mtime_ns;
  return o.str();
}
std::string LinkDesc(const std::string& target, int64_t mtime_ns) {
  return "symlink " + target + " " + std::to_string(mtime_ns);
}

void Walk(const std::string& root, const std::string& rel, Snapshot* s) {
  DIR* d = opendir((root + "/" + rel).c_str());
  if (!d) return;
  while (struct dirent* e = readdir(d)) {
    const std::string name = e->d_name;
    if (name == "." || name == "..") continue;
    const std::string path = rel.empty() ? name : rel + "/" + name;
    const std::string full = root + "/" + path;
    struct stat st;
    EXPECT_EQ(lstat(full.c_str(), &st), 0) << full;
    const int64_t mtime = int64_t(st.st_mtim.tv_sec) * kSec + st.st_mtim.tv_nsec;
    if (S_ISREG(st.st_mode)) {
      std::ifstream f(full, std::ios::binary);
      std::string content((std::istreambuf_iterator<char>(f)), {});
      (*s)[path] = FileDesc(content, st.st_mode & 07777, mtime);
    } else if (S_ISDIR(st.st_mode)) {
      (*s)[path] = DirDesc(st.st_mode & 07777, mtime);
      Walk(root, path, s);
    } else if (S_ISLNK(st.st_mode)) {
      (*s)[path] = LinkDesc(fs::read_symlink(full).string(), mtime);
    } else {
      (*s)[path] = "special";
    }
  }
  closedir(d);
}

// The tree under root, symlinks not followed.
Snapshot Take(const std::string& root) {
  Snapshot s;
  Walk(root, "", &s);
  return s;
}

std::string Describe(const Snapshot& s) {
  std::string out;
  for (const auto& [p, d] : s) out += "  " + p + ": " + d + "\n";
  return out;
}

// The RGW of the CTest fixture "rgw" (tests/testbed/rgw-up.sh), as the
// environment file SCRIBEFS_TEST_S3_ENV names it; empty when there is none.
std::map<std::string, std::string> S3Env() {
  std::map<std::string, std::string> env;
  const char* path = getenv("SCRIBEFS_TEST_S3_ENV");
  if (!path || !*path) return env;
  std::ifstream in(path);
  std::string line;
  while (std::getline(in, line)) {
    size_t eq = line.find('=');
    if (eq != std::string::npos) env[line.substr(0, eq)] = line.substr(eq + 1);
  }
  return env;
}

class RestoreAtTest : public ::testing::Test {
 protected:
  void SetUp() override {
#ifdef SCRIBEFS_RESTORE_AT_S3
    // A fresh prefix of the fixture's bucket; scribectl gets the endpoint
    // and the keys as a user would (options and AWS_* variables).
    s3_ = S3Env();
    ASSERT_FALSE(s3_["S3_ENDPOINT"].empty() || s3_["AWS_ACCESS_KEY_ID"].empty())
        << "SCRIBEFS_TEST_S3_ENV does not name a running RGW (run through ctest)";
    S3Options o;
    o.bucket = "scribefs-test";
    o.prefix = "restore-at-" + testing_util::RandomHex(6);
    o.endpoint = s3_["S3_ENDPOINT"];
    o.region = s3_["S3_REGION"].empty() ? "us-east-1" : s3_["S3_REGION"];
    o.credentials = {s3_["AWS_ACCESS_KEY_ID"], s3_["AWS_SECRET_ACCESS_KEY"], ""};
    auto store = S3Store::Create(o);
    ASSERT_TRUE(store.ok()) << store.status().ToString();
    StoreStatus created = (*store)->CreateBucket();
    ASSERT_TRUE(created.ok()) << created.ToString();
    store_ = std::move(store).value();
    url_ = "s3://" + o.bucket + "/" + o.prefix;
    target_args_ = {"--target", url_, "--endpoint", o.endpoint, "--region", o.region};
    child_env_ = {{"AWS_ACCESS_KEY_ID", s3_["AWS_ACCESS_KEY_ID"]},
                  { "AWS_SECRET_ACCESS_KEY",
                    s3_["AWS_SECRET_ACCESS_KEY"] }};
#else
    fs::create_directories(TargetDir());
    auto store = LocalStore::Open(TargetDir());
    ASSERT_TRUE(store.ok()) << store.status().ToString();
    store_ = std::move(store).value();
    url_ = "file://" + TargetDir();
    target_args_ = {"--target", url_};
#endif
    history::HistoryOptions ho;
    ho.part_size = 16;  // several chunks for the longer files
    history_ = std::make_unique<history::HistoryStore>(*store_, ho);
  }

  std::string TargetDir() const { return dir_.path() + "/target"; }
  std::string Url() const { return url_; }
  std::string Dest(const std::string& name) const { return dir_.path() + "/out/" + name; }
  std::string StateRoot() const { return dir_.path() + "/state"; }

  RunResult Ctl(std::vector<std::string> args) {
    return RunCtl(std::move(args), StateRoot(), child_env_);
  }
  // COMMAND with the target options, then `more`.
  RunResult CtlOnTarget(std::vector<std::string> command, const std::vector<std::string>& more) {
    command.insert(command.end(), target_args_.begin(), target_args_.end());
    command.insert(command.end(), more.begin(), more.end());
    return Ctl(command);
  }
  RunResult RestoreAt(const std::string& at, const std::string& dest,
                      std::vector<std::string> more = {}) {
    std::vector<std::string> args = {"restore", "--to", dest, "--at", at};
    args.insert(args.end(), target_args_.begin(), target_args_.end());
    args.insert(args.end(), more.begin(), more.end());
    return Ctl(args);
  }

  // A put of a file whose chunks are stored from a real file.
  Entry File(uint64_t seq, const std::string& path, const std::string& content,
             mode_t perm = 0644) {
    const std::string local = dir_.path() + "/src";
    UniqueFd fd = testing_util::WriteFile(local, content);
    auto chunks = history_->PutChunks(fd.get(), content.size());
    EXPECT_TRUE(chunks.ok()) << chunks.status().ToString();
    Entry e;
    e.seq = seq;
    e.time_ns = TimeOf(seq);
    e.op = history::EntryOp::kPut;
    e.path = path;
    e.state.type = std::string(kTypeFile);
    e.state.mode = S_IFREG | perm;
    e.state.uid = 1000;
    e.state.gid = 1000;
    e.state.mtime_ns = TimeOf(seq) - 123456789;  // not the entry's time: a distinct value
    e.state.size = content.size();
    if (chunks.ok()) e.state.chunks = *chunks;
    return e;
  }
  static Entry Dir(uint64_t seq, const std::string& path, mode_t perm = 0755) {
    Entry e = history::testing::DirPut(seq, path, TimeOf(seq));
    e.state.mode = S_IFDIR | perm;
    e.state.mtime_ns = TimeOf(seq) - 5;
    return e;
  }
  static Entry Link(uint64_t seq, const std::string& path, const std::string& target) {
    Entry e = history::testing::SymlinkPut(seq, path, target);
    e.time_ns = TimeOf(seq);
    e.state.mtime_ns = TimeOf(seq) - 7;
    return e;
  }
  static Entry Del(uint64_t seq, const std::string& path) {
    return history::testing::Delete(seq, path, TimeOf(seq));
  }
  static Entry Ren(uint64_t seq, const std::string& from, const std::string& to) {
    return history::testing::Rename(seq, from, to, false, TimeOf(seq));
  }
  void Append(std::vector<Entry> entries, uint64_t first, uint64_t last) {
    auto ref = history_->AppendSegment(history::MakeDelta(std::move(entries), 0, first, last));
    ASSERT_TRUE(ref.ok()) << ref.status().ToString();
  }

  // The history of the tests: three deltas.
  //   1..6   docs/, docs/a.txt v1, docs/b.txt (3 chunks), link -> docs/a.txt,
  //          empty/, top.sh (set-user-ID)
  //   7..10  docs/a.txt v2, rm docs/b.txt, mv docs papers, x.txt
  //   11..12 rmdir empty, papers/c.txt
  const std::string kA1 = "alpha version 1\n";
  const std::string kA2 = "alpha, the second version of it\n";
  const std::string kB = "bravo bravo bravo bravo bravo bravo!\n";
  const std::string kTop = "#!/bin/sh\necho top\n";
  const std::string kX = "x";
  const std::string kC = "charlie\n";
  void WriteStandardHistory() {
    Append({Dir(1, "docs"), File(2, "docs/a.txt", kA1, 0640), File(3, "docs/b.txt", kB, 0600),
            Link(4, "link", "docs/a.txt"), Dir(5, "empty", 0700), File(6, "top.sh", kTop, 04755)},
           1, 6);
    Append({File(7, "docs/a.txt", kA2, 0640), Del(8, "docs/b.txt"), Ren(9, "docs", "papers"),
            File(10, "x.txt", kX)},
           7, 10);
    Append({Del(11, "empty"), File(12, "papers/c.txt", kC)}, 11, 12);
  }
  int64_t Mt(uint64_t seq) const { return TimeOf(seq) - 123456789; }

  Snapshot ExpectedAt(uint64_t seq) const {
    Snapshot s;
    const std::string d = seq >= 9 ? "papers" : "docs";
    s[d] = DirDesc(0755, TimeOf(1) - 5);
    s[d + "/a.txt"] = seq >= 7 ? FileDesc(kA2, 0640, Mt(7)) : FileDesc(kA1, 0640, Mt(2));
    if (seq < 8) s[d + "/b.txt"] = FileDesc(kB, 0600, Mt(3));
    s["link"] = LinkDesc("docs/a.txt", TimeOf(4) - 7);
    if (seq < 11) s["empty"] = DirDesc(0700, TimeOf(5) - 5);
    s["top.sh"] = FileDesc(kTop, 0755, Mt(6));  // set-user-ID dropped without --same-owner
    if (seq >= 10) s["x.txt"] = FileDesc(kX, 0644, Mt(10));
    if (seq >= 12) {
      s["papers/c.txt"] = FileDesc(kC, 0644, Mt(12));
      // papers/ has its stored mtime: restoring c.txt into it does not change it
    }
    return s;
  }

  TempDir dir_;
  std::unique_ptr<ObjectStore> store_;
  std::unique_ptr<history::HistoryStore> history_;
  std::string url_;
  std::vector<std::string> target_args_;
  std::map<std::string, std::string> child_env_, s3_;
};

#ifdef SCRIBEFS_RESTORE_AT_S3

// The same history in an RGW bucket: restore --at seqs and a time, a damaged
// chunk, history and timeline, all with --target alone.
TEST_F(RestoreAtTest, RgwRestoresEveryInstantFromABucket) {
  WriteStandardHistory();
  for (uint64_t seq : {6, 8, 10, 12}) {
    SCOPED_TRACE("seq " + std::to_string(seq));
    const std::string dest = Dest("s" + std::to_string(seq));
    RunResult r = RestoreAt(std::to_string(seq), dest);
    ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
    EXPECT_EQ(Take(dest), ExpectedAt(seq)) << Describe(Take(dest));
  }
  RunResult r = RestoreAt(ctl::FormatUtcIso(TimeOf(9) + kSec / 2), Dest("t9"));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(Take(Dest("t9")), ExpectedAt(9));
  r = RestoreAt("12", Dest("one"), {"--path", "papers/c.txt"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(Take(Dest("one"))["papers/c.txt"], ExpectedAt(12)["papers/c.txt"]);

  r = CtlOnTarget({"--json", "history"}, {"papers/a.txt"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(json::parse(r.out)["versions"].size(), 1u) << r.out;
  r = CtlOnTarget({"--json", "timeline"}, {});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(json::parse(r.out)["last_seq"], 12);

  // A damaged chunk in the bucket fails its file, naming the key.
  const std::string sha = Sha(kC);
  const std::string key = ".scribefs/chunks/" + sha.substr(0, 2) + "/" + sha;
  const std::string damaged = "charlie?";
  auto put = store_->Put(key, Payload::FromMemory(damaged), Metadata{});
  ASSERT_TRUE(put.ok()) << put.status().ToString();
  r = RestoreAt("12", Dest("bad"));
  EXPECT_EQ(r.exit_code, 1) << r.out << r.err;
  EXPECT_NE(r.out.find(key), std::string::npos) << r.out;
  EXPECT_FALSE(fs::exists(Dest("bad/papers/c.txt")));
}

#else  // file:// target

TEST_F(RestoreAtTest, EverySeqReproducesItsTree) {
  WriteStandardHistory();
  for (uint64_t seq : {6, 7, 8, 9, 10, 11, 12}) {
    SCOPED_TRACE("seq " + std::to_string(seq));
    const std::string dest = Dest("s" + std::to_string(seq));
    RunResult r = RestoreAt(std::to_string(seq), dest);
    ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
    EXPECT_EQ(Take(dest), ExpectedAt(seq)) << Describe(Take(dest)) << r.out << r.err;
  }
  // Past the end: the latest state, with a note.
  RunResult r = RestoreAt("99", Dest("s99"));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.err.find("the history ends at seq 12"), std::string::npos) << r.err;
  EXPECT_EQ(Take(Dest("s99")), ExpectedAt(12));
}

TEST_F(RestoreAtTest, TimesInEveryFormReproduceTheirTrees) {
  WriteStandardHistory();
  // Half a second after seq 8 was stored, as ISO UTC, @EPOCH and local time.
  const int64_t t = TimeOf(8) + kSec / 2;
  const std::string iso = ctl::FormatUtcIso(t);
  RunResult r = RestoreAt(iso, Dest("iso"), {"-j", "1"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(Take(Dest("iso")), ExpectedAt(8)) << Describe(Take(Dest("iso")));
  r = RestoreAt("@" + std::to_string(TimeOf(10) / kSec), Dest("epoch"));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(Take(Dest("epoch")), ExpectedAt(10));
  r = RestoreAt(ctl::FormatLocalTime(TimeOf(6) + kSec / 2), Dest("local"));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(Take(Dest("local")), ExpectedAt(6));
  // A relative time: every entry is in the past, so "1m" ago is the latest.
  r = RestoreAt("1m", Dest("rel"));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(Take(Dest("rel")), ExpectedAt(12));
}

TEST_F(RestoreAtTest, JsonSaysWhichStateWasRestored) {
  WriteStandardHistory();
  RunResult r = Ctl({"--json", "restore", "--target", Url(), "--to", Dest("j"), "--at", "8"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  json j = json::parse(r.out);
  EXPECT_TRUE(j["ok"].get<bool>());
  EXPECT_EQ(j["history"]["at"], "8");
  EXPECT_EQ(j["history"]["seq"], 8);
  EXPECT_EQ(j["history"]["time_ns"], TimeOf(8));
  EXPECT_EQ(j["restored"], 5);  // docs/, docs/a.txt, link, empty/, top.sh
}

TEST_F(RestoreAtTest, PathRestoresOneFileOrOneSubtree) {
  WriteStandardHistory();
  RunResult r = RestoreAt("12", Dest("one"), {"--path", "papers/a.txt"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  Snapshot want = ExpectedAt(12);
  Snapshot got = Take(Dest("one"));
  ASSERT_EQ(got.count("papers/a.txt"), 1u) << Describe(got);
  EXPECT_EQ(got["papers/a.txt"], want["papers/a.txt"]);
  EXPECT_EQ(got.size(), 2u) << Describe(got);  // and its parent directory, created
  r = RestoreAt("7", Dest("sub"), {"--path", "docs"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  Snapshot sub;
  for (const auto& [p, d] : ExpectedAt(7))
    if (p == "docs" || p.rfind("docs/", 0) == 0) sub[p] = d;
  EXPECT_EQ(Take(Dest("sub")), sub);
  // docs is gone at 12: nothing matches.
  r = RestoreAt("12", Dest("none"), {"--path", "docs"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("nothing matched --path docs"), std::string::npos) << r.err;
}

TEST_F(RestoreAtTest, SameOwnerKeepsOwnersAndSetIdBits) {
  if (geteuid() != 0) GTEST_SKIP() << "needs root to chown";
  WriteStandardHistory();
  RunResult r = RestoreAt("12", Dest("own"), {"--same-owner"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  struct stat st;
  ASSERT_EQ(lstat(Dest("own/top.sh").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 04755u);
  EXPECT_EQ(st.st_uid, 1000u);
  EXPECT_EQ(st.st_gid, 1000u);
}

TEST_F(RestoreAtTest, RunAgainSkipsWhatIsAlreadyRight) {
  WriteStandardHistory();
  ASSERT_EQ(RestoreAt("12", Dest("r")).exit_code, 0);
  RunResult r = Ctl({"--json", "restore", "--target", Url(), "--to", Dest("r"), "--at", "12"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  json j = json::parse(r.out);
  EXPECT_EQ(j["restored"], 0) << r.out;
  EXPECT_EQ(j["bytes"], 0) << r.out;
  // Into a tree of another instant: what differs is replaced, the rest kept.
  r = RestoreAt("6", Dest("r"));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  Snapshot got = Take(Dest("r"));
  EXPECT_EQ(got["docs/a.txt"], ExpectedAt(6)["docs/a.txt"]);
}

TEST_F(RestoreAtTest, DryRunListsAndWritesNothing) {
  WriteStandardHistory();
  RunResult r =
      Ctl({"--json", "restore", "--target", Url(), "--to", Dest("dry"), "--at", "10", "--dry-run"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  json j = json::parse(r.out);
  EXPECT_EQ(j["create"].size(), 6u) << r.out;
  EXPECT_EQ(j["history"]["seq"], 10);
  EXPECT_FALSE(fs::exists(Dest("dry")));
}

TEST_F(RestoreAtTest, ACorruptedChunkFailsNamingItsKeyAndWritesNothingWrong) {
  WriteStandardHistory();
  // docs/a.txt v1 is one chunk; replace its bytes in the target.
  const std::string sha = Sha(kA1);
  const std::string key = ".scribefs/chunks/" + sha.substr(0, 2) + "/" + sha;
  ASSERT_TRUE(fs::exists(TargetDir() + "/" + key));
  { std::ofstream(TargetDir() + "/" + key, std::ios::trunc) << "alpha version 9\n"; }
  RunResult r = RestoreAt("6", Dest("bad"));
  EXPECT_EQ(r.exit_code, 1) << r.out << r.err;
  EXPECT_NE(r.out.find(key), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("damaged"), std::string::npos) << r.out;
  Snapshot got = Take(Dest("bad"));
  EXPECT_EQ(got.count("docs/a.txt"), 0u) << Describe(got);
  for (const auto& [p, d] : got) EXPECT_EQ(p.find("scribefs-restore"), std::string::npos) << p;
  Snapshot want = ExpectedAt(6);
  want.erase("docs/a.txt");
  EXPECT_EQ(got, want) << Describe(got);
  // A chunk that is gone: named too.
  const std::string shx = Sha(kX);
  const std::string xkey = ".scribefs/chunks/" + shx.substr(0, 2) + "/" + shx;
  ASSERT_TRUE(fs::remove(TargetDir() + "/" + xkey));
  r = RestoreAt("10", Dest("gone"));
  EXPECT_EQ(r.exit_code, 1) << r.out << r.err;
  EXPECT_NE(r.out.find("FAILED   x.txt: chunk " + xkey), std::string::npos) << r.out;
  EXPECT_FALSE(fs::exists(Dest("gone/x.txt")));
}

TEST_F(RestoreAtTest, AHostileSegmentPathIsRefused) {
  WriteStandardHistory();
  // The library cannot write "../x": compose the segment's bytes.
  const std::string text =
      "{\"format\":\"scribefs-timeline\",\"version\":1,\"kind\":\"delta\",\"level\":0,"
      "\"first_seq\":13,\"last_seq\":13,\"first_time_ns\":1,\"last_time_ns\":1,\"count\":1}\n"
      "{\"seq\":13,\"time_ns\":1,\"op\":\"put\",\"path\":\"../x\",\"type\":\"dir\",\"size\":0,"
      "\"mode\":16877,\"uid\":0,\"gid\":0,\"mtime_ns\":1}\n";
  std::string z(ZSTD_compressBound(text.size()), '\0');
  z.resize(ZSTD_compress(z.data(), z.size(), text.data(), text.size(), 1));
  const std::string key = history::SegmentKey({history::SegmentKind::kDelta, 0, 13, 13});
  fs::create_directories(fs::path(TargetDir() + "/" + key).parent_path());
  { std::ofstream(TargetDir() + "/" + key, std::ios::binary) << z; }
  RunResult r = RestoreAt("13", Dest("h/in"));
  EXPECT_EQ(r.exit_code, 1) << r.out << r.err;
  EXPECT_NE(r.err.find(key), std::string::npos) << r.err;
  EXPECT_FALSE(fs::exists(Dest("h/x")));
  EXPECT_TRUE(Take(Dest("h/in")).empty());
  // Instants before it do not read it.
  r = RestoreAt("12", Dest("h/ok"));
  EXPECT_EQ(r.exit_code, 0) << r.err;
}

TEST_F(RestoreAtTest, NothingIsRestoredThroughAStoredSymlink) {
  // Valid segments can still say "evil -> /outside, then evil/f": refused.
  const std::string outside = dir_.path() + "/outside";
  fs::create_directories(outside);
  Append({Link(1, "evil", outside), File(2, "evil/f", "pwned")}, 1, 2);
  RunResult r = RestoreAt("2", Dest("sym"));
  EXPECT_EQ(r.exit_code, 7) << r.out << r.err;
  EXPECT_NE(r.out.find("REFUSED"), std::string::npos) << r.out;
  EXPECT_FALSE(fs::exists(outside + "/f"));
}

TEST_F(RestoreAtTest, ClearErrors) {
  // No history at all.
  RunResult r = RestoreAt("1", Dest("e1"));
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("this target has no history: written by a scribefs without history, or "
                       "--history off"),
            std::string::npos)
      << r.err;
  WriteStandardHistory();
  // Before the first stored state: the covered range is named.
  r = RestoreAt("0", Dest("e2"));
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("before the first stored state: the history covers seqs 1..12"),
            std::string::npos)
      << r.err;
  r = RestoreAt(ctl::FormatUtcIso(TimeOf(1) - kSec), Dest("e3"));
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("before the first stored state"), std::string::npos) << r.err;
  // A timeline hole: the middle segment lost.
  fs::remove(TargetDir() + "/" + history::SegmentKey({history::SegmentKind::kDelta, 0, 7, 10}));
  r = RestoreAt("12", Dest("e4"));
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("timeline hole: no segment holds seqs 7..10"), std::string::npos) << r.err;
  EXPECT_FALSE(fs::exists(Dest("e4")));
  r = RestoreAt("6", Dest("e5"));
  EXPECT_EQ(r.exit_code, 0) << r.err;
  // Usage errors.
  r = RestoreAt("yesterday-ish", Dest("e6"));
  EXPECT_EQ(r.exit_code, 2);
  r = Ctl({"restore", "--target", Url(), "--to", Dest("e7"), "--at", "3", "--checkpoint", "c"});
  EXPECT_EQ(r.exit_code, 2);
}

// A checkpoint manifest whose objects are gone from the mirror (as on an
// unversioned target after later writes): at seq `seq`, naming docs/a.txt.
void WriteManifest(const std::string& target_dir, const std::string& name, uint64_t seq) {
  json entry = {
      {"path", "docs/a.txt"}, {"key", "docs/a.txt"},  {"type", "file"},
      {"size", 16},           {"mode", 0100640},      {"uid", 1000},
      {"gid", 1000},          {"mtime_ns", 1},        {"etag", "0123456789abcdef0123456789abcdef"},
      {"sha256", nullptr},    {"version_id", nullptr}};
  nlohmann::ordered_json m;
  m["format"] = "scribefs-checkpoint";
  m["version"] = kManifestVersion;
  m["name"] = name;
  m["time_ns"] = TimeOf(seq);
  m["time"] = ctl::FormatUtcIso(TimeOf(seq));
  m["journal_seq"] = seq;
  m["target"] = "file://" + target_dir;
  m["paths"] = 1;
  m["entries"] = json::array({entry});
  fs::create_directories(target_dir + "/.scribefs/checkpoints");
  std::ofstream(target_dir + "/.scribefs/checkpoints/" + name + ".json") << m.dump();
}

TEST_F(RestoreAtTest, ACheckpointWhoseObjectsChangedIsRestoredFromHistory) {
  WriteStandardHistory();
  WriteManifest(TargetDir(), "cp8", 8);
  RunResult r = Ctl({"restore", "--target", Url(), "--to", Dest("cp"), "--checkpoint", "cp8"});
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
  EXPECT_NE(r.err.find("checkpoint \"cp8\" is restored from the target's history (seq 8)"),
            std::string::npos)
      << r.err;
  EXPECT_EQ(Take(Dest("cp")), ExpectedAt(8)) << Describe(Take(Dest("cp")));
  // A checkpoint the history does not reach: its manifest, as before (and
  // its object is gone, so it fails as it always did).
  WriteManifest(TargetDir(), "cp50", 50);
  r = Ctl({"restore", "--target", Url(), "--to", Dest("cp50"), "--checkpoint", "cp50"});
  EXPECT_EQ(r.exit_code, 1) << r.out << r.err;
  EXPECT_NE(r.out.find("deleted from the target since checkpoint \"cp50\""), std::string::npos)
      << r.out;
}

TEST_F(RestoreAtTest, HistoryListsTheVersionsOfAPath) {
  WriteStandardHistory();
  RunResult r = Ctl({"--json", "history", "--target", Url(), "docs/a.txt"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  json j = json::parse(r.out);
  EXPECT_EQ(j["path"], "docs/a.txt");
  ASSERT_EQ(j["versions"].size(), 3u) << r.out;
  const json& v1 = j["versions"][0];
  EXPECT_EQ(v1["seq"], 2);
  EXPECT_EQ(v1["time_ns"], TimeOf(2));
  EXPECT_EQ(v1["time"], ctl::FormatUtcIso(TimeOf(2)));
  EXPECT_EQ(v1["op"], "put");
  EXPECT_EQ(v1["type"], "file");
  EXPECT_EQ(v1["size"], kA1.size());
  EXPECT_EQ(v1["mode"], S_IFREG | 0640);
  EXPECT_EQ(v1["sha256"], Sha(kA1));  // one chunk: the file's SHA-256
  EXPECT_EQ(v1["chunks"], 1);
  const json& v2 = j["versions"][1];
  EXPECT_EQ(v2["seq"], 7);
  EXPECT_TRUE(v2["sha256"].is_null());  // several chunks: their number
  EXPECT_EQ(v2["chunks"], 2);
  const json& v3 = j["versions"][2];
  EXPECT_EQ(v3["seq"], 9);
  EXPECT_EQ(v3["op"], "rename");
  EXPECT_FALSE(v3["present"].get<bool>());
  EXPECT_EQ(v3["detail"], "to papers/a.txt");
  r = Ctl({"history", "--target", Url(), "papers/a.txt"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("from docs/a.txt"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("2 chunks"), std::string::npos) << r.out;
  r = Ctl({"history", "--target", Url(), "docs/b.txt"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("delete"), std::string::npos) << r.out;
  r = Ctl({"history", "--target", Url(), "never/there"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("no version of never/there"), std::string::npos) << r.err;
  r = Ctl({"history", "--target", Url(), "a/../b"});
  EXPECT_EQ(r.exit_code, 2) << r.err;
}

TEST_F(RestoreAtTest, TimelineSaysWhatCanBeRestored) {
  WriteStandardHistory();
  WriteManifest(TargetDir(), "cp8", 8);
  RunResult r = Ctl({"--json", "timeline", "--target", Url()});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  json j = json::parse(r.out);
  EXPECT_EQ(j["target"], Url());
  EXPECT_EQ(j["first_seq"], 1);
  EXPECT_EQ(j["last_seq"], 12);
  EXPECT_EQ(j["first_time_ns"], TimeOf(1));
  EXPECT_EQ(j["last_time_ns"], TimeOf(12));
  EXPECT_EQ(j["last_time"], ctl::FormatUtcIso(TimeOf(12)));
  EXPECT_EQ(j["entries"], 12);
  EXPECT_TRUE(j["bases"].empty());
  ASSERT_EQ(j["levels"].size(), 1u);
  EXPECT_EQ(j["levels"][0]["level"], 0);
  EXPECT_EQ(j["levels"][0]["segments"], 3);
  EXPECT_EQ(j["leftover_segments"], 0);
  ASSERT_EQ(j["checkpoints"].size(), 1u);
  EXPECT_EQ(j["checkpoints"][0]["name"], "cp8");
  EXPECT_EQ(j["checkpoints"][0]["seq"], 8);
  EXPECT_TRUE(j["checkpoints"][0]["in_history"].get<bool>());
  EXPECT_GT(j["usage"]["chunk_objects"].get<uint64_t>(), 5u);
  EXPECT_EQ(j["usage"]["segment_objects"], 3);
  r = Ctl({"timeline", "--target", Url()});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("Seqs:         1 .. 12"), std::string::npos) << r.out;
  // An empty target: no history.
  fs::create_directories(dir_.path() + "/empty");
  r = Ctl({"timeline", "--target", "file://" + dir_.path() + "/empty"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("this target has no history"), std::string::npos) << r.err;
}

TEST_F(RestoreAtTest, ABaseReplacesPrunedDeltas) {
  WriteStandardHistory();
  // The tree at seq 10 as a base; then the deltas it covers are deleted.
  auto segments = history_->LoadTimeline(history::Instant::AtSeq(10));
  ASSERT_TRUE(segments.ok());
  auto base = history_->AppendSegment(
      history::MakeBase(history::Replay(*segments, history::Instant::AtSeq(10)), 10, TimeOf(10)));
  ASSERT_TRUE(base.ok()) << base.status().ToString();
  fs::remove(TargetDir() + "/" + history::SegmentKey({history::SegmentKind::kDelta, 0, 1, 6}));
  fs::remove(TargetDir() + "/" + history::SegmentKey({history::SegmentKind::kDelta, 0, 7, 10}));
  RunResult r = RestoreAt("12", Dest("b12"));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(Take(Dest("b12")), ExpectedAt(12)) << Describe(Take(Dest("b12")));
  r = RestoreAt("10", Dest("b10"));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(Take(Dest("b10")), ExpectedAt(10));
  r = RestoreAt("6", Dest("b6"));
  EXPECT_EQ(r.exit_code, 1);
  // HistoryStore::LoadTimeline refuses an instant before the oldest base
  // when no delta reaches back there (pruned, or never stored).
  EXPECT_NE(r.err.find("no history before seq 10"), std::string::npos) << r.err;
  r = Ctl({"--json", "history", "--target", Url(), "papers/a.txt"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  json j = json::parse(r.out);
  ASSERT_EQ(j["versions"].size(), 1u) << r.out;
  EXPECT_EQ(j["versions"][0]["op"], "base");
  EXPECT_EQ(j["versions"][0]["seq"], 10);
  r = Ctl({"--json", "timeline", "--target", Url()});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  j = json::parse(r.out);
  ASSERT_EQ(j["bases"].size(), 1u);
  EXPECT_EQ(j["bases"][0]["seq"], 10);
  EXPECT_EQ(j["bases"][0]["time_ns"], TimeOf(10));
  EXPECT_EQ(j["first_seq"], 10);
}

TEST_F(RestoreAtTest, BashCompletionKnowsTheNewCommands) {
  RunResult r = Ctl({"completion", "bash"});
  ASSERT_EQ(r.exit_code, 0);
  EXPECT_NE(r.out.find("history) opts="), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("timeline) opts="), std::string::npos);
  EXPECT_NE(r.out.find("--at"), std::string::npos);
}

#endif  // SCRIBEFS_RESTORE_AT_S3

}  // namespace
}  // namespace scribefs
