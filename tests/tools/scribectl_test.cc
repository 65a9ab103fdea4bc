// End-to-end tests of the scribectl binary: journals are written with the real
// scribefs::Journal, then scribectl runs as a separate process, as a user
// would run it next to a live daemon.
#include <fcntl.h>
#include <grp.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "common/state_dir.h"
#include "common/unique_fd.h"
#include "journal/journal.h"
#include "journal/targets.h"
#include "journal/trim.h"
#include "journal/upload_state.h"
#include "tools/time_spec.h"

extern char** environ;

namespace scribefs {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

constexpr int64_t kMin = 60'000'000'000LL;

struct RunResult {
  int exit_code = -1;
  std::string out, err;
};

// The environment for a child: ours, minus variables that would redirect
// scribectl, plus overrides.
std::vector<std::string> ChildEnv(const std::map<std::string, std::string>& overrides) {
  std::vector<std::string> env;
  for (char** e = environ; *e; ++e) {
    std::string kv = *e;
    std::string key = kv.substr(0, kv.find('='));
    if (key == "SCRIBEFS_STATE_DIR" || key == "SCRIBEFS_STATE_ROOT" || overrides.count(key))
      continue;
    env.push_back(kv);
  }
  for (const auto& [k, v] : overrides) env.push_back(k + "=" + v);
  return env;
}

std::vector<char*> CStrings(std::vector<std::string>& v) {
  std::vector<char*> out;
  for (std::string& s : v) out.push_back(s.data());
  out.push_back(nullptr);
  return out;
}

// A running scribectl with its stdout and stderr on pipes.
struct Child {
  pid_t pid = -1;
  UniqueFd out, err;
};

Child Spawn(std::vector<std::string> args, const std::map<std::string, std::string>& env = {},
            std::optional<uid_t> run_as = std::nullopt) {
  args.insert(args.begin(), SCRIBECTL_BIN);
  std::vector<std::string> envs = ChildEnv(env);
  auto argv = CStrings(args);
  auto envp = CStrings(envs);
  int out[2], err[2];
  EXPECT_EQ(pipe2(out, O_CLOEXEC), 0);
  EXPECT_EQ(pipe2(err, O_CLOEXEC), 0);
  Child c;
  if (!run_as) {
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, out[1], 1);
    posix_spawn_file_actions_adddup2(&fa, err[1], 2);
    EXPECT_EQ(posix_spawn(&c.pid, SCRIBECTL_BIN, &fa, nullptr, argv.data(), envp.data()), 0);
    posix_spawn_file_actions_destroy(&fa);
  } else {
    // posix_spawn cannot change the user; fork and drop privileges.
    c.pid = fork();
    if (c.pid == 0) {
      dup2(out[1], 1);
      dup2(err[1], 2);
      if (setgroups(0, nullptr) != 0 || setgid(*run_as) != 0 || setuid(*run_as) != 0) _exit(126);
      execve(SCRIBECTL_BIN, argv.data(), envp.data());
      _exit(127);
    }
  }
  close(out[1]);
  close(err[1]);
  c.out.Reset(out[0]);
  c.err.Reset(err[0]);
  return c;
}

RunResult Wait(Child& c) {
  RunResult r;
  pollfd fds[2] = {{c.out.get(), POLLIN, 0}, {c.err.get(), POLLIN, 0}};
  std::string* bufs[2] = {&r.out, &r.err};
  int open_fds = 2;
  while (open_fds > 0) {
    if (poll(fds, 2, 10000) <= 0) break;  // a hung child fails the test below
    for (int i = 0; i < 2; ++i) {
      if (fds[i].fd < 0 || !(fds[i].revents & (POLLIN | POLLHUP))) continue;
      char buf[4096];
      ssize_t n = read(fds[i].fd, buf, sizeof buf);
      if (n > 0) {
        bufs[i]->append(buf, n);
      } else {
        fds[i].fd = -1;
        --open_fds;
      }
    }
  }
  int status = 0;
  if (open_fds > 0) kill(c.pid, SIGKILL);
  waitpid(c.pid, &status, 0);
  r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  return r;
}

RunResult RunCtl(std::vector<std::string> args,
                 const std::map<std::string, std::string>& env = {}) {
  Child c = Spawn(std::move(args), env);
  return Wait(c);
}

std::vector<std::string> Lines(const std::string& text) {
  std::vector<std::string> out;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) out.push_back(line);
  return out;
}

std::vector<std::string> Words(const std::string& line) {
  std::vector<std::string> out;
  std::istringstream in(line);
  for (std::string w; in >> w;) out.push_back(w);
  return out;
}

// Reads complete lines from fd until `want` lines arrived or the timeout.
std::vector<std::string> ReadLines(int fd, size_t want, std::string* pending,
                                   std::chrono::milliseconds timeout) {
  std::vector<std::string> lines;
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (true) {
    size_t nl;
    while (lines.size() < want && (nl = pending->find('\n')) != std::string::npos) {
      lines.push_back(pending->substr(0, nl));
      pending->erase(0, nl + 1);
    }
    if (lines.size() >= want) return lines;
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) return lines;
    pollfd p = {fd, POLLIN, 0};
    if (poll(&p, 1, static_cast<int>(left.count())) <= 0) return lines;
    char buf[4096];
    ssize_t n = read(fd, buf, sizeof buf);
    if (n <= 0) return lines;
    pending->append(buf, n);
  }
}

// A temporary directory, removed at the end of the test.
class TempDir {
 public:
  TempDir() {
    std::string tmpl = fs::temp_directory_path() / "scribectl_test.XXXXXX";
    path_ = mkdtemp(tmpl.data());
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

// DefaultStateDir() of the test process under a given SCRIBEFS_STATE_ROOT,
// as scribectl computes it when run with that environment.
std::string StateDirUnder(const std::string& root, const std::string& canonical_datadir) {
  std::optional<std::string> old;
  if (const char* v = getenv("SCRIBEFS_STATE_ROOT")) old = v;
  setenv("SCRIBEFS_STATE_ROOT", root.c_str(), 1);
  std::string dir = DefaultStateDir(canonical_datadir);
  if (old)
    setenv("SCRIBEFS_STATE_ROOT", old->c_str(), 1);
  else
    unsetenv("SCRIBEFS_STATE_ROOT");
  return dir;
}

Record Make(Op op, std::string path, std::string state, int64_t time_ns) {
  Record r;
  r.op = op;
  r.path = std::move(path);
  r.state = std::move(state);
  r.time_ns = time_ns;
  r.uid = 1000;
  r.gid = 1000;
  r.pid = 4242;
  return r;
}

// The journal every test starts from. Record i (1-based) was made
// (11 - i) * 5 minutes ago: seq 1 fifty minutes ago ... seq 10 five minutes ago.
//   1 create   docs/a.txt                 done      size=0 mode=0644
//   2 write    docs/a.txt                 pending   [0+4096]
//   3 write    docs/b.bin                 failed    3 ranges, 12 KiB; attempts=3; error
//   4 rename   docs/a.txt -> archive/a.txt pending
//   5 mkdir    archive                    done      mode=0755
//   6 truncate big.dat                    uploading size=1048576
//   7 unlink   tmp/x                      skipped   error
//   8 checkpoint ""                       done      detail {"name":"nightly"}
//   9 setxattr docs/b.bin                 pending   detail {"name":"user.tag"}
//  10 close    docs/b.bin                 pending   size=12288
class ScribectlTest : public testing::Test {
 protected:
  void SetUp() override {
    state_dir_ = tmp_.path() + "/state";
    ASSERT_EQ(mkdir(state_dir_.c_str(), 0700), 0);
    auto j = Journal::Open(state_dir_ + "/journal.db");
    ASSERT_TRUE(j.ok()) << j.status().message();
    journal_ = std::move(j.value());
    now_ = NowNs();
    auto at = [&](int i) { return now_ - (11 - i) * 5 * kMin; };
    std::vector<Record> rs;
    rs.push_back(Make(Op::kCreate, "docs/a.txt", "done", at(1)));
    rs.back().size = 0;
    rs.back().mode = S_IFREG | 0644;
    rs.push_back(Make(Op::kWrite, "docs/a.txt", "pending", at(2)));
    rs.back().ranges = {{0, 4096}};
    rs.push_back(Make(Op::kWrite, "docs/b.bin", "failed", at(3)));
    rs.back().ranges = {{0, 4096}, {8192, 4096}, {16384, 4096}};
    rs.back().attempts = 3;
    rs.back().error = "AccessDenied: nope";
    rs.push_back(Make(Op::kRename, "docs/a.txt", "pending", at(4)));
    rs.back().new_path = "archive/a.txt";
    rs.back().flags = 0;
    rs.push_back(Make(Op::kMkdir, "archive", "done", at(5)));
    rs.back().mode = S_IFDIR | 0755;
    rs.push_back(Make(Op::kTruncate, "big.dat", "uploading", at(6)));
    rs.back().size = 1048576;
    rs.push_back(Make(Op::kUnlink, "tmp/x", "skipped", at(7)));
    rs.back().error = "local operation failed: No such file or directory";
    rs.push_back(Make(Op::kCheckpoint, "", "done", at(8)));
    rs.back().detail = R"({"name":"nightly"})";
    rs.push_back(Make(Op::kSetxattr, "docs/b.bin", "pending", at(9)));
    rs.back().detail = R"({"name":"user.tag"})";
    rs.push_back(Make(Op::kClose, "docs/b.bin", "pending", at(10)));
    rs.back().size = 12288;
    ASSERT_TRUE(journal_->Commit(rs).ok());
    records_ = rs;
    ASSERT_EQ(records_.back().seq, 10);
  }

  // scribectl --state-dir STATE args...
  RunResult Ctl(std::vector<std::string> args) {
    args.insert(args.begin(), {"--state-dir", state_dir_});
    return RunCtl(std::move(args));
  }

  // The seqs `scribectl --json journal <filters>` prints.
  std::vector<int64_t> Seqs(std::vector<std::string> filters) {
    filters.insert(filters.begin(), {"--json", "journal"});
    RunResult r = Ctl(filters);
    EXPECT_EQ(r.exit_code, 0) << r.err;
    std::vector<int64_t> seqs;
    for (const std::string& line : Lines(r.out)) seqs.push_back(json::parse(line).at("seq"));
    return seqs;
  }

  using Seq = std::vector<int64_t>;
  TempDir tmp_;
  std::string state_dir_;
  std::unique_ptr<Journal> journal_;
  std::vector<Record> records_;
  int64_t now_ = 0;
};

TEST_F(ScribectlTest, TableShowsEveryRecord) {
  RunResult r = Ctl({"journal"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.err, "");
  auto lines = Lines(r.out);
  ASSERT_EQ(lines.size(), 11u) << r.out;
  EXPECT_EQ(Words(lines[0]),
            (std::vector<std::string>{"SEQ", "TIME", "OP", "STATE", "PATH", "DETAIL"}));
  // Each row starts with its seq, the local time, op and state.
  for (int i = 1; i <= 10; ++i) {
    const Record& rec = records_[i - 1];
    std::string want_prefix = std::to_string(rec.seq) + "  " + ctl::FormatLocalTime(rec.time_ns);
    EXPECT_NE(lines[i].find(want_prefix), std::string::npos) << lines[i];
    auto w = Words(lines[i]);
    ASSERT_GE(w.size(), 5u);
    EXPECT_EQ(w[3], std::string(OpName(rec.op))) << lines[i];
    EXPECT_EQ(w[4], rec.state) << lines[i];
  }
  EXPECT_NE(lines[1].find("docs/a.txt"), std::string::npos);
  EXPECT_NE(lines[1].find("size=0 mode=0644"), std::string::npos) << lines[1];
  EXPECT_NE(lines[2].find("[0+4096]"), std::string::npos) << lines[2];
  EXPECT_NE(lines[3].find("3 ranges, 12.0 KiB attempts=3 error: AccessDenied: nope"),
            std::string::npos)
      << lines[3];
  EXPECT_NE(lines[4].find("docs/a.txt -> archive/a.txt"), std::string::npos) << lines[4];
  EXPECT_NE(lines[5].find("mode=0755"), std::string::npos) << lines[5];
  EXPECT_NE(lines[6].find("size=1048576"), std::string::npos) << lines[6];
  EXPECT_NE(lines[7].find("error: local operation failed"), std::string::npos) << lines[7];
  EXPECT_NE(lines[8].find("name=nightly"), std::string::npos) << lines[8];
  EXPECT_NE(lines[9].find("name=user.tag"), std::string::npos) << lines[9];
  // Columns line up: every PATH starts where the header's PATH does.
  size_t path_col = lines[0].find("PATH");
  EXPECT_EQ(lines[2].find("docs/a.txt"), path_col) << lines[2];
  EXPECT_EQ(lines[6].find("big.dat"), path_col) << lines[6];
}

TEST_F(ScribectlTest, LogIsAnAliasAndEmptyResultsPrintNothing) {
  RunResult a = Ctl({"journal", "--op", "write"});
  RunResult b = Ctl({"log", "--op", "write"});
  ASSERT_EQ(a.exit_code, 0) << a.err;
  EXPECT_EQ(a.out, b.out);
  EXPECT_EQ(Lines(a.out).size(), 3u);
  RunResult none = Ctl({"log", "--op", "mknod"});
  EXPECT_EQ(none.exit_code, 0);
  EXPECT_EQ(none.out, "");
}

// Issue 11, item 5: records the daemon trimmed (journal/trim.h) live only in
// the target's history; the listing says so whenever it reaches back to them.
TEST_F(ScribectlTest, TrimmedRecordsAreNoted) {
  ASSERT_TRUE(journal_->SetMeta(kMetaHistoryStoredThrough, "7").ok());
  TrimPolicy policy;
  policy.retention_ns = 0;
  auto trimmed = TrimJournal(*journal_, policy, NowNs());
  ASSERT_TRUE(trimmed.ok()) << trimmed.status().message();
  // create (done), mkdir (done), unlink (skipped); the failed, pending and
  // uploading records and the checkpoint stay.
  EXPECT_EQ(trimmed->deleted, 3);
  EXPECT_EQ(Seqs({}), (Seq{2, 3, 4, 6, 8, 9, 10}));
  const std::string note = "done records up to seq 7 (" +
                           ctl::FormatLocalTime(records_[6].time_ns) +
                           " and before) were trimmed from the local journal; their history is "
                           "in the target: scribectl history PATH / scribectl timeline";
  RunResult all = Ctl({"journal"});
  ASSERT_EQ(all.exit_code, 0) << all.err;
  EXPECT_EQ(all.err, "scribectl: note: " + note + "\n");
  RunResult since = Ctl({"journal", "--since", "3"});
  EXPECT_NE(since.err.find("up to seq 7"), std::string::npos) << since.err;
  RunResult by_time =
      Ctl({"journal", "--since", "@" + std::to_string(now_ / 1'000'000'000 - 3600)});
  EXPECT_NE(by_time.err.find("up to seq 7"), std::string::npos) << by_time.err;
  // Listings that do not reach back to the trimmed records: no note.
  EXPECT_EQ(Ctl({"journal", "--since", "8"}).err, "");
  EXPECT_EQ(Ctl({"journal", "--since", "2m"}).err, "");
  EXPECT_EQ(Ctl({"journal", "--limit", "2"}).err, "");
  EXPECT_NE(Ctl({"journal", "--limit", "100"}).err.find("up to seq 7"), std::string::npos);
  RunResult js = Ctl({"--json", "journal"});
  ASSERT_EQ(js.exit_code, 0) << js.err;
  EXPECT_EQ(json::parse(js.err), json({{"note", note}}));
  EXPECT_EQ(Lines(js.out).size(), 7u);
}

TEST_F(ScribectlTest, JsonLinesCarryEveryColumn) {
  RunResult r = Ctl({"--json", "journal"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  auto lines = Lines(r.out);
  ASSERT_EQ(lines.size(), 10u);
  const std::vector<std::string> keys = {
      "seq",   "time_ns",  "time",  "op",   "path",   "new_path",   "ranges",
      "size",  "mode",     "uid",   "gid",  "pid",    "flags",      "detail",
      "state", "attempts", "error", "etag", "sha256", "version_id", "state_ns"};
  std::vector<json> recs;
  for (size_t i = 0; i < lines.size(); ++i) {
    json j = json::parse(lines[i]);
    for (const std::string& k : keys) EXPECT_TRUE(j.contains(k)) << k << " in " << lines[i];
    EXPECT_EQ(j.size(), keys.size()) << lines[i];
    const Record& rec = records_[i];
    EXPECT_EQ(j["seq"], rec.seq);
    EXPECT_EQ(j["time_ns"], rec.time_ns);
    EXPECT_EQ(j["time"], ctl::FormatUtcIso(rec.time_ns));
    EXPECT_EQ(j["op"], OpName(rec.op));
    EXPECT_EQ(j["path"], rec.path);
    EXPECT_EQ(j["state"], rec.state);
    EXPECT_EQ(j["uid"], 1000);
    EXPECT_EQ(j["pid"], 4242);
    recs.push_back(j);
  }
  EXPECT_EQ(recs[0]["mode"], S_IFREG | 0644);
  EXPECT_EQ(recs[0]["size"], 0);
  EXPECT_TRUE(recs[0]["new_path"].is_null());
  EXPECT_TRUE(recs[0]["error"].is_null());
  EXPECT_EQ(recs[0]["ranges"], json::array());
  EXPECT_EQ(recs[1]["ranges"], json::parse("[[0,4096]]"));
  EXPECT_EQ(recs[2]["ranges"], json::parse("[[0,4096],[8192,4096],[16384,4096]]"));
  EXPECT_EQ(recs[2]["attempts"], 3);
  EXPECT_EQ(recs[2]["error"], "AccessDenied: nope");
  EXPECT_EQ(recs[3]["new_path"], "archive/a.txt");
  EXPECT_EQ(recs[3]["flags"], 0);
  EXPECT_EQ(recs[7]["detail"], json::parse(R"({"name":"nightly"})"));
  EXPECT_TRUE(recs[9]["detail"].is_null());
  EXPECT_EQ(recs[9]["size"], 12288);
}

TEST_F(ScribectlTest, FiltersSelectExactlyTheMatchingRecords) {
  EXPECT_EQ(Seqs({"--path", "docs/*"}), (Seq{1, 2, 3, 4, 9, 10}));
  EXPECT_EQ(Seqs({"--path", "/docs/*"}), (Seq{1, 2, 3, 4, 9, 10}));
  EXPECT_EQ(Seqs({"--path", "archive/*"}), (Seq{4}));  // the rename's new path
  EXPECT_EQ(Seqs({"--path", "archive"}), (Seq{5}));
  EXPECT_EQ(Seqs({"--path", "*.bin"}), (Seq{3, 9, 10}));
  EXPECT_EQ(Seqs({"--op", "write"}), (Seq{2, 3}));
  EXPECT_EQ(Seqs({"--op", "checkpoint"}), (Seq{8}));
  EXPECT_EQ(Seqs({"--state", "pending"}), (Seq{2, 4, 9, 10}));
  EXPECT_EQ(Seqs({"--state", "failed"}), (Seq{3}));
  EXPECT_EQ(Seqs({"--since", "5"}), (Seq{5, 6, 7, 8, 9, 10}));
  EXPECT_EQ(Seqs({"--until", "3"}), (Seq{1, 2, 3}));
  EXPECT_EQ(Seqs({"--since", "3", "--until", "5"}), (Seq{3, 4, 5}));
  EXPECT_EQ(Seqs({"--limit", "3"}), (Seq{8, 9, 10}));
  EXPECT_EQ(Seqs({"-n", "1", "--op", "write"}), (Seq{3}));
  EXPECT_EQ(Seqs({"--limit", "0"}), (Seq{}));
  EXPECT_EQ(Seqs({"--limit", "100"}), (Seq{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}));
  EXPECT_EQ(Seqs({"--state", "pending", "--path", "docs/*", "--since", "3"}), (Seq{4, 9, 10}));
}

// With several targets (journal/targets.h) a record is pending until every
// target has stored it; --target shows one target's state and filters on it.
TEST_F(ScribectlTest, TargetShowsAndFiltersOneTargetsState) {
  auto targets = Targets::Sync(*journal_, {{"usb", "file:///usb"}, {"offsite", "s3://b/p"}});
  ASSERT_TRUE(targets.ok()) << targets.status().ToString();
  std::vector<int64_t> stored = {2, 10};
  ASSERT_TRUE(
      UploadStateStore(journal_.get(), targets->targets[0].id).MarkUploaded(stored, {}, "{}").ok());
  EXPECT_EQ(Seqs({"--state", "pending"}), (Seq{2, 4, 9, 10}));  // offsite lacks them
  EXPECT_EQ(Seqs({"--target", "usb", "--state", "pending"}), (Seq{4, 9}));
  EXPECT_EQ(Seqs({"--target", "usb", "--state", "done"}), (Seq{1, 2, 5, 8, 10}));
  EXPECT_EQ(Seqs({"--target", "offsite", "--state", "pending"}), (Seq{2, 4, 9, 10}));
  EXPECT_EQ(Seqs({"--target", "s3://b/p", "--state", "pending"}), (Seq{2, 4, 9, 10}));
  RunResult r = Ctl({"--json", "journal", "--target", "usb", "--since", "2", "--until", "2"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(json::parse(r.out).at("state"), "done");
  r = Ctl({"journal", "--target", "nas"});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("no such target (this journal has: usb, offsite)"), std::string::npos)
      << r.err;
}

// status (here: no daemon, so what the journal knows, exit 4) shows what
// each target still lacks.
TEST_F(ScribectlTest, StatusShowsWhatEachTargetStillLacks) {
  auto targets = Targets::Sync(*journal_, {{"usb", "file:///usb"}, {"offsite", "s3://b/p"}});
  ASSERT_TRUE(targets.ok()) << targets.status().ToString();
  std::vector<int64_t> stored = {2, 10};
  ASSERT_TRUE(
      UploadStateStore(journal_.get(), targets->targets[0].id).MarkUploaded(stored, {}, "{}").ok());
  RunResult r = Ctl({"--json", "status"});
  EXPECT_EQ(r.exit_code, 4) << r.err;
  json j = json::parse(r.out, nullptr, false);
  ASSERT_TRUE(j.is_object()) << r.out;
  const json& t = j["journal"]["targets"];
  ASSERT_EQ(t.size(), 2u) << j.dump();
  EXPECT_EQ(t[0]["name"], "usb");
  // Pending across targets: 2, 4, 6 (uploading), 9, 10; failed: 3.
  EXPECT_EQ(t[0]["pending_records"], 3);  // usb stored 2 and 10
  EXPECT_EQ(t[1]["pending_records"], 5);
  EXPECT_EQ(t[0]["failed_records"], 1);
  r = Ctl({"status"});
  EXPECT_NE(r.out.find("usb:"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("3 records pending (oldest "), std::string::npos) << r.out;
  EXPECT_NE(r.out.find(", 1 failed (file:///usb)"), std::string::npos) << r.out;
  EXPECT_NE(t[0]["oldest_pending_age_s"], nullptr) << j.dump();
}

TEST_F(ScribectlTest, TimeFiltersUseRecordTimes) {
  // Record i is at now - (11 - i) * 5 min.
  EXPECT_EQ(Seqs({"--since", "22m"}), (Seq{7, 8, 9, 10}));
  EXPECT_EQ(Seqs({"--until", "38m"}), (Seq{1, 2, 3}));
  EXPECT_EQ(Seqs({"--since", "1h", "--until", "0.5h"}), (Seq{1, 2, 3, 4, 5}));
  // Exact instants, as ISO 8601 in UTC, local time and epoch seconds.
  EXPECT_EQ(Seqs({"--since", ctl::FormatUtcIso(records_[5].time_ns)}), (Seq{6, 7, 8, 9, 10}));
  std::string until = ctl::FormatLocalTime(records_[1].time_ns + 1'000'000);
  EXPECT_EQ(Seqs({"--until", until}), (Seq{1, 2}));
  std::string epoch = "@" + std::to_string(records_[8].time_ns / 1'000'000'000 - 1);
  EXPECT_EQ(Seqs({"--since", epoch}), (Seq{9, 10}));
  // Time and sequence bounds combine.
  EXPECT_EQ(Seqs({"--since", "42m", "--until", "4"}), (Seq{3, 4}));
}

TEST_F(ScribectlTest, BadValuesAreUsageErrors) {
  RunResult r = Ctl({"journal", "--op", "frobnicate"});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_EQ(r.out, "");
  EXPECT_EQ(r.err.rfind("scribectl: ", 0), 0u) << r.err;
  EXPECT_NE(r.err.find("unknown operation 'frobnicate'"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("valid operations: create, mkdir"), std::string::npos) << r.err;

  r = Ctl({"journal", "--state", "finished"});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("valid states: pending, uploading, done, failed, skipped"),
            std::string::npos)
      << r.err;

  r = Ctl({"journal", "--since", "last tuesday"});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("invalid time 'last tuesday'"), std::string::npos) << r.err;

  for (std::vector<std::string> args : {std::vector<std::string>{"journal", "--limit", "-1"},
                                        {"journal", "--limit", "many"},
                                        {"journal", "--bogus"},
                                        {"frobnicate"},
                                        {},
                                        {"log", "-f", "--until", "5"}}) {
    r = Ctl(args);
    EXPECT_EQ(r.exit_code, 2) << args.size() << " " << r.err;
    EXPECT_EQ(r.err.rfind("scribectl: ", 0), 0u) << r.err;
  }

  r = RunCtl({"journal"});  // no mount named at all
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("pass -m DATADIR"), std::string::npos) << r.err;
}

TEST_F(ScribectlTest, HelpExplainsEveryOption) {
  RunResult r = RunCtl({"--help"});
  EXPECT_EQ(r.exit_code, 0);
  for (const char* s : {"-m,--mount DATADIR", "--state-dir DIR", "--json", "journal, log", "stats",
                        "SCRIBEFS_STATE_DIR", "Exit status:"})
    EXPECT_NE(r.out.find(s), std::string::npos) << s;
  r = RunCtl({"log", "--help"});
  EXPECT_EQ(r.exit_code, 0);
  for (const char* s :
       {"--since SEQ|TIME", "--until SEQ|TIME", "--path GLOB", "--op OP", "--state STATE",
        "-n,--limit N", "-f,--follow", "reconcile", "skipped", "JSON Lines"})
    EXPECT_NE(r.out.find(s), std::string::npos) << s;
  r = RunCtl({"stats", "--help"});
  EXPECT_EQ(r.exit_code, 0);
  EXPECT_NE(r.out.find("pending_bytes"), std::string::npos);
}

TEST_F(ScribectlTest, MissingStateExits3) {
  RunResult r = RunCtl({"--state-dir", tmp_.path() + "/nowhere", "journal"});
  EXPECT_EQ(r.exit_code, 3) << r.err;
  EXPECT_NE(r.err.find("no scribefs journal in " + tmp_.path() + "/nowhere"), std::string::npos)
      << r.err;

  // -m with a data directory that has no state under the state root.
  std::string data = tmp_.path() + "/data";
  ASSERT_EQ(mkdir(data.c_str(), 0755), 0);
  std::string root = tmp_.path() + "/root";
  r = RunCtl({"-m", data, "stats"}, {{"SCRIBEFS_STATE_ROOT", root}});
  EXPECT_EQ(r.exit_code, 3) << r.err;
  auto canonical = CanonicalDir(data);
  ASSERT_TRUE(canonical.ok());
  EXPECT_NE(r.err.find("scribectl: no scribefs state for " + *canonical + " (looked in " +
                       StateDirUnder(root, *canonical) + "); is it mounted?"),
            std::string::npos)
      << r.err;

  r = RunCtl({"-m", data + "/missing", "stats"}, {{"SCRIBEFS_STATE_ROOT", root}});
  EXPECT_EQ(r.exit_code, 3) << r.err;
  EXPECT_NE(r.err.find("No such file or directory"), std::string::npos) << r.err;
}

TEST_F(ScribectlTest, FindsStateFromDataDirAndEnvironment) {
  // -m DATADIR derives the state directory under SCRIBEFS_STATE_ROOT.
  std::string data = tmp_.path() + "/data";
  std::string root = tmp_.path() + "/root";
  ASSERT_EQ(mkdir(data.c_str(), 0755), 0);
  auto canonical = CanonicalDir(data);
  ASSERT_TRUE(canonical.ok());
  std::string derived = StateDirUnder(root, *canonical);
  EXPECT_EQ(derived.rfind(root + "/data-", 0), 0u) << derived;
  fs::create_directories(derived);
  fs::copy_file(state_dir_ + "/journal.db", derived + "/journal.db");
  if (fs::exists(state_dir_ + "/journal.db-wal")) {
    // Copy the WAL too so that the copy holds every committed record.
    ASSERT_TRUE(journal_->Sync().ok());
    fs::copy_file(state_dir_ + "/journal.db-wal", derived + "/journal.db-wal");
  }
  RunResult r = RunCtl({"-m", data + "/.", "--json", "log"}, {{"SCRIBEFS_STATE_ROOT", root}});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(Lines(r.out).size(), 10u);

  // SCRIBEFS_STATE_DIR is used when no option names the mount...
  r = RunCtl({"log", "--json", "--op", "mkdir"}, {{"SCRIBEFS_STATE_DIR", state_dir_}});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(Lines(r.out).size(), 1u);
  // ...and --state-dir overrides it.
  r = RunCtl({"log", "--state-dir", state_dir_}, {{"SCRIBEFS_STATE_DIR", tmp_.path() + "/nope"}});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  r = RunCtl({"log", "--state-dir", tmp_.path() + "/nope"}, {{"SCRIBEFS_STATE_DIR", state_dir_}});
  EXPECT_EQ(r.exit_code, 3) << r.err;
}

TEST_F(ScribectlTest, StatsJsonMatchesTheJournal) {
  RunResult r = Ctl({"--json", "stats"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  ASSERT_EQ(Lines(r.out).size(), 1u) << r.out;
  json j = json::parse(r.out);
  EXPECT_EQ(j["journal"], state_dir_ + "/journal.db");
  EXPECT_EQ(j["records"], 10);
  EXPECT_EQ(j["max_seq"], 10);
  EXPECT_EQ(j["by_op"], json::parse(R"({"create":1,"mkdir":1,"write":2,"truncate":1,
      "setxattr":1,"rename":1,"unlink":1,"close":1,"checkpoint":1})"));
  EXPECT_EQ(j["by_state"],
            json::parse(R"({"pending":4,"uploading":1,"done":3,"failed":1,"skipped":1})"));
  EXPECT_EQ(j["by_op_state"]["write"], json::parse(R"({"pending":1,"failed":1})"));
  EXPECT_EQ(j["by_op_state"]["create"], json::parse(R"({"done":1})"));
  // Pending = pending or uploading: seqs 2, 4, 6, 9, 10 on docs/a.txt, big.dat
  // and docs/b.bin, whose last known sizes are 0, 1 MiB and 12288.
  EXPECT_EQ(j["pending_records"], 5);
  EXPECT_EQ(j["pending_files"], 3);
  EXPECT_EQ(j["pending_bytes"], 1048576 + 12288);
  EXPECT_EQ(j["oldest_pending_ns"], records_[1].time_ns);
  double age = j["oldest_pending_age_s"];
  EXPECT_GT(age, 45 * 60 - 1);
  EXPECT_LT(age, 45 * 60 + 30);
  // No daemon: no live figures (lag, throttle, rate), and null says so.
  EXPECT_TRUE(j.contains("live"));
  EXPECT_TRUE(j["live"].is_null()) << j["live"];
}

TEST_F(ScribectlTest, StatsTableForPeople) {
  RunResult r = Ctl({"stats"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("records:         10 (max seq 10)"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("pending:         5 records, 3 files, 1.0 MiB (1060864 bytes)"),
            std::string::npos)
      << r.out;
  EXPECT_NE(r.out.find("oldest pending:  45."), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("failed:          1 records"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("daemon:          no running daemon answered: no upload rate, lag or "
                       "throttling"),
            std::string::npos)
      << r.out;
  std::map<std::string, std::vector<std::string>> rows;
  for (const std::string& line : Lines(r.out)) {
    auto w = Words(line);
    if (!w.empty()) rows[w[0]] = w;
  }
  EXPECT_EQ(rows["OP"], (std::vector<std::string>{"OP", "pending", "uploading", "done", "failed",
                                                  "skipped", "total"}));
  EXPECT_EQ(rows["write"], (std::vector<std::string>{"write", "1", "0", "0", "1", "0", "2"}));
  EXPECT_EQ(rows["truncate"], (std::vector<std::string>{"truncate", "0", "1", "0", "0", "0", "1"}));
  EXPECT_EQ(rows["total"], (std::vector<std::string>{"total", "4", "1", "3", "1", "1", "10"}));
  EXPECT_EQ(rows.count("mknod"), 0u);  // ops without records are left out
}

TEST_F(ScribectlTest, FollowPrintsRecordsAsTheyCommit) {
  // Five more records first: --follow alone starts with the last 10.
  for (int i = 0; i < 5; ++i) {
    Record r = Make(Op::kWrite, "more/" + std::to_string(i), "pending", 0);
    ASSERT_TRUE(journal_->Commit(r).ok());
  }
  Child c = Spawn({"--state-dir", state_dir_, "--json", "log", "--follow"});
  std::string pending;
  auto first = ReadLines(c.out.get(), 10, &pending, std::chrono::seconds(5));
  ASSERT_EQ(first.size(), 10u);
  EXPECT_EQ(json::parse(first.front())["seq"], 6);
  EXPECT_EQ(json::parse(first.back())["seq"], 15);

  // The daemon's side: commit while scribectl follows.
  Record a = Make(Op::kCreate, "new/one", "pending", 0);
  ASSERT_TRUE(journal_->Commit(a).ok());
  auto next = ReadLines(c.out.get(), 1, &pending, std::chrono::seconds(5));
  ASSERT_EQ(next.size(), 1u);
  EXPECT_EQ(json::parse(next[0])["seq"], 16);
  EXPECT_EQ(json::parse(next[0])["path"], "new/one");
  std::vector<Record> group = {Make(Op::kWrite, "new/one", "pending", 0),
                               Make(Op::kClose, "new/one", "pending", 0)};
  ASSERT_TRUE(journal_->Commit(group).ok());
  next = ReadLines(c.out.get(), 2, &pending, std::chrono::seconds(5));
  ASSERT_EQ(next.size(), 2u);
  EXPECT_EQ(json::parse(next[0])["seq"], 17);
  EXPECT_EQ(json::parse(next[1])["seq"], 18);

  ASSERT_EQ(kill(c.pid, SIGTERM), 0);
  RunResult r = Wait(c);
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(pending + r.out, "");  // nothing printed twice or late
}

TEST_F(ScribectlTest, FollowAppliesFiltersAndStopsOnSigint) {
  // --since 11 rather than --limit 0: the record must show even if this
  // commit wins the race with scribectl's first listing.
  Child c = Spawn({"--state-dir", state_dir_, "log", "-f", "--since", "11", "--op", "unlink"});
  std::this_thread::sleep_for(std::chrono::milliseconds(300));  // usually: caught by polling
  std::vector<Record> group = {Make(Op::kWrite, "x", "pending", 0),
                               Make(Op::kUnlink, "gone", "pending", 0),
                               Make(Op::kMkdir, "d", "pending", 0)};
  ASSERT_TRUE(journal_->Commit(group).ok());
  std::string pending;
  auto lines = ReadLines(c.out.get(), 2, &pending, std::chrono::seconds(5));
  ASSERT_EQ(lines.size(), 2u) << pending;
  EXPECT_EQ(Words(lines[0])[0], "SEQ");
  auto w = Words(lines[1]);
  ASSERT_GE(w.size(), 6u);
  EXPECT_EQ(w[0], "12");
  EXPECT_EQ(w[3], "unlink");
  EXPECT_EQ(w[5], "gone");
  ASSERT_EQ(kill(c.pid, SIGINT), 0);
  RunResult r = Wait(c);
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(pending + r.out, "");
}

TEST_F(ScribectlTest, UnreadableJournalIsReportedClearly) {
  if (geteuid() != 0) GTEST_SKIP() << "needs root to run scribectl as another user";
  // As on a real system: root-owned 0700 state directory, 0600 journal.
  Child c = Spawn({"--state-dir", state_dir_, "log"}, {}, 65534);
  RunResult r = Wait(c);
  EXPECT_EQ(r.exit_code, 1) << r.err;
  EXPECT_NE(r.err.find("scribectl: cannot read " + state_dir_ + "/journal.db: permission denied"),
            std::string::npos)
      << r.err;
  // A traversable state directory: the journal file itself is refused.
  ASSERT_EQ(chmod(tmp_.path().c_str(), 0755), 0);
  ASSERT_EQ(chmod(state_dir_.c_str(), 0755), 0);
  c = Spawn({"--state-dir", state_dir_, "stats"}, {}, 65534);
  r = Wait(c);
  EXPECT_EQ(r.exit_code, 1) << r.err;
  EXPECT_NE(r.err.find("permission denied"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("try sudo"), std::string::npos) << r.err;
}

TEST_F(ScribectlTest, ReadsAJournalWhoseWriterIsGone) {
  // After the daemon exits, the journal is a plain file (no -wal/-shm).
  journal_.reset();
  RunResult r = Ctl({"--json", "stats"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(json::parse(r.out)["records"], 10);
}

TEST_F(ScribectlTest, NotAJournalIsAFailure) {
  std::string other = tmp_.path() + "/other";
  ASSERT_EQ(mkdir(other.c_str(), 0700), 0);
  {
    UniqueFd fd(open((other + "/journal.db").c_str(), O_CREAT | O_WRONLY, 0600));
    ASSERT_TRUE(fd.valid());
    ASSERT_EQ(write(fd.get(), "hello, not sqlite", 17), 17);
  }
  RunResult r = RunCtl({"--state-dir", other, "log"});
  EXPECT_EQ(r.exit_code, 1) << r.err;
  EXPECT_EQ(r.err.rfind("scribectl: ", 0), 0u) << r.err;
}

// A misspelled command names the nearest one instead of "A subcommand is
// required".
TEST_F(ScribectlTest, MisspelledCommandSuggestsTheNearest) {
  for (auto [typo, meant] : std::vector<std::pair<std::string, std::string>>{
           {"chekpoint", "checkpoint"}, {"stauts", "status"}, {"jornal", "journal"},
           {"verfy", "verify"}, {"restroe", "restore"}}) {
    RunResult r = RunCtl({"-m", "/tmp", typo, "x"});
    EXPECT_EQ(r.exit_code, 2) << typo;
    EXPECT_NE(r.err.find("unknown command '" + typo + "'; did you mean '" + meant + "'?"),
              std::string::npos)
        << r.err;
    EXPECT_EQ(r.err.find("A subcommand is required"), std::string::npos) << r.err;
  }
  RunResult r = RunCtl({"xyzzy"});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("unknown command 'xyzzy'"), std::string::npos) << r.err;
  EXPECT_EQ(r.err.find("did you mean"), std::string::npos) << r.err;
}

// Range errors say the range in words, not as a 300-digit double.
TEST_F(ScribectlTest, RangeErrorsAreReadable) {
  for (const auto& cmd : {"pause", "flush", "checkpoint", "rescan"}) {
    std::vector<std::string> args = {cmd, "--timeout", "-1"};
    if (std::string(cmd) == "checkpoint") args.push_back("name");
    RunResult r = Ctl(args);
    EXPECT_EQ(r.exit_code, 2) << cmd;
    EXPECT_NE(r.err.find("--timeout: must be > 0"), std::string::npos) << r.err;
    EXPECT_LT(r.err.size(), 200u) << r.err;
  }
  RunResult r = Ctl({"verify", "-j", "0"});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("must be a whole number from 1 to 64"), std::string::npos) << r.err;
  r = Ctl({"restore", "--to", tmp_.path() + "/r", "-j", "1000"});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("from 1 to 256"), std::string::npos) << r.err;
}

// With --json, every error is one JSON object on stderr, usage errors too,
// and stdout stays empty.
TEST_F(ScribectlTest, JsonErrorsAreJsonOnStderr) {
  for (std::vector<std::string> args : {
           std::vector<std::string>{"--json", "--state-dir", tmp_.path() + "/nowhere", "journal"},
           {"--json", "journal", "--op", "frobnicate"},
           {"journal", "--json", "--bogus"},
           {"--json", "chekpoint"},
           {"--json", "pause", "--timeout", "0"},
           {"--json"}}) {
    RunResult r = RunCtl(args);
    EXPECT_NE(r.exit_code, 0);
    EXPECT_EQ(r.out, "");
    json j = json::parse(r.err, nullptr, false);
    ASSERT_TRUE(j.is_object()) << r.err;
    EXPECT_EQ(j["ok"], false);
    EXPECT_EQ(j["exit_code"], r.exit_code);
    EXPECT_TRUE(j["error"].is_string());
    EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
  }
}

// `scribectl completion bash` completes commands and options; run the
// function by hand on COMP_WORDS as bash would.
TEST_F(ScribectlTest, BashCompletionOffersCommandsAndOptions) {
  RunResult gen = RunCtl({"completion", "bash"});
  ASSERT_EQ(gen.exit_code, 0) << gen.err;
  std::string script = tmp_.path() + "/scribectl.bash";
  {
    UniqueFd fd(open(script.c_str(), O_CREAT | O_WRONLY | O_TRUNC, 0600));
    ASSERT_EQ(write(fd.get(), gen.out.data(), gen.out.size()), ssize_t(gen.out.size()));
  }
  auto complete = [&](const std::string& words, int cword) {
    std::string cmd = "source " + script +
                      " && complete -p scribectl >/dev/null && COMP_WORDS=(" + words +
                      ") && COMP_CWORD=" + std::to_string(cword) +
                      " && _scribectl && echo \"${COMPREPLY[*]}\"";
    std::vector<std::string> args = {"/bin/bash", "--norc", "-c", cmd};
    std::vector<std::string> env = ChildEnv({});
    auto argv = CStrings(args);
    auto envp = CStrings(env);
    int out[2];
    EXPECT_EQ(pipe2(out, O_CLOEXEC), 0);
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, out[1], 1);
    pid_t pid;
    EXPECT_EQ(posix_spawn(&pid, "/bin/bash", &fa, nullptr, argv.data(), envp.data()), 0);
    posix_spawn_file_actions_destroy(&fa);
    close(out[1]);
    std::string text;
    char buf[4096];
    ssize_t n;
    while ((n = read(out[0], buf, sizeof buf)) > 0) text.append(buf, n);
    close(out[0]);
    int status;
    waitpid(pid, &status, 0);
    EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << cmd;
    return text;
  };
  EXPECT_EQ(complete("scribectl che", 1), "checkpoint checkpoints\n");
  EXPECT_EQ(complete("scribectl -m /data chec", 3), "checkpoint checkpoints\n");
  EXPECT_EQ(complete("scribectl l", 1), "log\n");
  EXPECT_EQ(complete("scribectl pause --ti", 2), "--timeout\n");
  EXPECT_NE(complete("scribectl restore --", 2).find("--dry-run"), std::string::npos)
      << "every option the parser knows";
  EXPECT_EQ(complete("scribectl --js", 1), "--json\n");
  EXPECT_EQ(complete("scribectl comp", 1), "\n") << "the hidden command is not offered";
}

// verify and restore with a --path that matches nothing say so and fail,
// instead of exiting 0 having done nothing.
TEST_F(ScribectlTest, PathMatchingNothingIsAFailure) {
  std::string target = tmp_.path() + "/target", dir = tmp_.path() + "/dir";
  ASSERT_EQ(mkdir(target.c_str(), 0700), 0);
  ASSERT_EQ(mkdir(dir.c_str(), 0700), 0);
  {
    UniqueFd fd(open((dir + "/a").c_str(), O_CREAT | O_WRONLY, 0600));
    ASSERT_TRUE(fd.valid());
  }
  RunResult r = RunCtl({"verify", "--target", "file://" + target, "--dir", dir, "--path", "nope"});
  EXPECT_EQ(r.exit_code, 1) << r.err;
  EXPECT_NE(r.err.find("nothing matched --path nope"), std::string::npos) << r.err;
  // A path that exists on one side is a difference, not "nothing matched".
  r = RunCtl({"verify", "--target", "file://" + target, "--dir", dir, "--path", "a"});
  EXPECT_EQ(r.exit_code, 6) << r.err;
  EXPECT_EQ(r.err.find("nothing matched"), std::string::npos) << r.err;

  r = RunCtl({"restore", "--target", "file://" + target, "--to", tmp_.path() + "/restored",
              "--path", "nope"});
  EXPECT_EQ(r.exit_code, 1) << r.err;
  EXPECT_NE(r.err.find("nothing matched --path nope in the target"), std::string::npos) << r.err;
  r = RunCtl({"--json", "restore", "--target", "file://" + target, "--to",
              tmp_.path() + "/restored", "--path", "nope"});
  EXPECT_EQ(r.exit_code, 1) << r.err;
  EXPECT_TRUE(json::parse(r.err, nullptr, false).is_object()) << r.err;
}

// restore --dry-run says what it would create and replace and writes
// nothing; a real restore into a non-empty directory first names what it
// replaces.
// restore/verify --target NAME: one of the mount's targets, by the name the
// journal knows it by (its URL from the targets table).
TEST_F(ScribectlTest, RestoreTargetByTheNameTheJournalKnows) {
  std::string target = tmp_.path() + "/usb", dest = tmp_.path() + "/dest";
  ASSERT_EQ(mkdir(target.c_str(), 0700), 0);
  {
    UniqueFd fd(open((target + "/x.txt").c_str(), O_CREAT | O_WRONLY | O_TRUNC, 0600));
    ASSERT_TRUE(fd.valid());
    ASSERT_EQ(write(fd.get(), "new", 3), 3);
  }
  ASSERT_TRUE(Targets::Sync(*journal_, {{"usb", "file://" + target, R"({"region":""})"},
                                        {"offsite", "s3://b/p", "{}"}})
                  .ok());
  RunResult r = Ctl({"restore", "--target", "usb", "--to", dest, "--dry-run"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("create   x.txt"), std::string::npos) << r.out;
  r = Ctl({"restore", "--target", "nas", "--to", dest, "--dry-run"});
  EXPECT_EQ(r.exit_code, 2) << r.out;
  EXPECT_NE(r.err.find("it has: usb, offsite"), std::string::npos) << r.err;
}

TEST_F(ScribectlTest, RestoreDryRunAndNonEmptyDestination) {
  std::string target = tmp_.path() + "/target", dest = tmp_.path() + "/dest";
  auto put = [](const std::string& path, const std::string& content) {
    UniqueFd fd(open(path.c_str(), O_CREAT | O_WRONLY | O_TRUNC, 0600));
    ASSERT_TRUE(fd.valid()) << path;
    ASSERT_EQ(write(fd.get(), content.data(), content.size()), ssize_t(content.size()));
  };
  auto get = [](const std::string& path) {
    std::ifstream in(path);
    return std::string((std::istreambuf_iterator<char>(in)), {});
  };
  ASSERT_EQ(mkdir(target.c_str(), 0700), 0);
  ASSERT_EQ(mkdir((target + "/sub").c_str(), 0700), 0);
  put(target + "/x.txt", "new");
  put(target + "/sub/y.txt", "why");
  // Into a directory that does not exist: nothing is created.
  RunResult r = RunCtl({"restore", "--target", "file://" + target, "--to", dest, "--dry-run"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("create   x.txt"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("create   sub/y.txt"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("nothing written"), std::string::npos) << r.out;
  EXPECT_NE(access(dest.c_str(), F_OK), 0) << "--dry-run created the destination";

  ASSERT_EQ(mkdir(dest.c_str(), 0700), 0);
  put(dest + "/x.txt", "old");
  r = RunCtl({"--json", "restore", "--target", "file://" + target, "--to", dest, "--dry-run"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  json j = json::parse(r.out, nullptr, false);
  ASSERT_TRUE(j.is_object()) << r.out;
  EXPECT_EQ(j["dry_run"], true);
  EXPECT_EQ(j["replace"], json::array({"x.txt"}));
  EXPECT_EQ(j["create"], json::array({"sub", "sub/y.txt"}));
  EXPECT_EQ(get(dest + "/x.txt"), "old");
  EXPECT_NE(access((dest + "/sub").c_str(), F_OK), 0);

  r = RunCtl({"restore", "--target", "file://" + target, "--to", dest});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.err.find("not empty: 1 existing path(s) are replaced"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("x.txt"), std::string::npos) << r.err;
  EXPECT_EQ(get(dest + "/x.txt"), "new");
  EXPECT_EQ(get(dest + "/sub/y.txt"), "why");
  // With --json, the note is a JSON object on stderr too.
  put(dest + "/x.txt", "old again");
  r = RunCtl({"--json", "restore", "--target", "file://" + target, "--to", dest});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  json note = json::parse(r.err, nullptr, false);
  ASSERT_TRUE(note.is_object()) << r.err;
  EXPECT_NE(note["note"].get<std::string>().find("x.txt"), std::string::npos) << r.err;
}

}  // namespace
}  // namespace scribefs
