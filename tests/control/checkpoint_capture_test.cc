// Checkpoints captured under the pause and stored in the background (issue
// 12, part 2: the state machine; daemon/checkpoint_storer.h), on real
// mounts against a file:// target whose uploads --bwlimit slows down:
//   - `checkpoint` returns "captured" while a 64 MiB dirty file is still
//     being uploaded, with writes held briefly; `--wait` returns "stored";
//     two checkpoints are in flight at once; `checkpoints` and `status`
//     show the states;
//   - flush waits until captured checkpoints are stored;
//   - kill -9 between captured and stored, restart: stored;
//   - a tiny --max-spool: the checkpoint fails with a clear error, the
//     writer that overflowed it does not.
// (Whether a frozen path's CONTENT is the one at the mark is the
// replicator's half, tested with it.)
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <future>
#include <thread>

#include "tests/control/control_util.h"
#include "uploader/checkpoint.h"

namespace scribefs::ctltest {
namespace {

using namespace std::chrono_literals;

class CheckpointCaptureTest : public it::MountTest {
 protected:
  // A file rewritten between the frozen set's journal read and the pause;
  // watch_max: $SCRIBEFS_TEST_WATCH_MAX_NAMES, or nullptr.
  void WriteJustBeforeThePause(const char* watch_max, const std::string& source);
  void TearDown() override {
    unsetenv("SCRIBEFS_TEST_STORE_DELAY_MS");
    unsetenv("SCRIBEFS_TEST_PAUSE_DELAY_MS");
    it::MountTest::TearDown();
  }
  void MountWithTarget(std::vector<std::string> extra = {}) {
    url_ = "file://" + root() + "/target";
    Options o;
    o.args = {"--target", url_};
    for (auto& a : extra) o.args.push_back(a);
    Mount(o);
    store_ = OpenTarget(url_, std::nullopt);
    ASSERT_NE(store_, nullptr);
  }
  RunResult Ctl(const std::vector<std::string>& args, double timeout_s = 120) {
    return Scribectl(state(), args, timeout_s);
  }
  bool ManifestStored(const std::string& name) {
    return store_->Head(CheckpointManifestKey(name)).ok();
  }
  json Manifest(const std::string& name) {
    auto g = store_->Get(CheckpointManifestKey(name));
    if (!g.ok()) return nullptr;
    return json::parse(g->body, nullptr, false);
  }
  // `checkpoints --json`: name -> its state object.
  std::map<std::string, json> States() {
    std::map<std::string, json> out;
    RunResult r = Ctl({"--json", "checkpoints"});
    json j = JsonOut(r);
    if (!j.is_object() || !j["checkpoints"].is_array()) {
      ADD_FAILURE() << r.Describe();
      return out;
    }
    for (const json& c : j["checkpoints"]) out[c["name"].get<std::string>()] = c;
    return out;
  }
  // Polls until `name` reaches state (or timeout_s); its last state object.
  json WaitState(const std::string& name, const std::string& state, double timeout_s) {
    json last;
    auto end = std::chrono::steady_clock::now() + std::chrono::duration<double>(timeout_s);
    while (std::chrono::steady_clock::now() < end) {
      auto s = States();
      if (s.count(name)) last = s[name];
      if (last.is_object() && last["state"] == state) return last;
      std::this_thread::sleep_for(200ms);
    }
    return last;
  }
  bool SpoolHolds(const std::string& name) {
    struct stat st;
    return stat(state("spool/" + name).c_str(), &st) == 0;
  }

  std::string url_;
  std::unique_ptr<ObjectStore> store_;
};

// The manifest entry of path (nullptr when absent).
json Entry(const json& manifest, const std::string& path) {
  if (!manifest.is_object()) return nullptr;
  for (const json& e : manifest["entries"])
    if (e["path"] == path) return e;
  return nullptr;
}

TEST_F(CheckpointCaptureTest, CapturedReturnsBeforeTheUploadAndWaitReturnsStored) {
  MountWithTarget({"--bwlimit", "6M"});
  if (HasFatalFailure()) return;
  const std::string big = it::Pattern(64 << 20, 7);
  ASSERT_TRUE(it::WriteFile(mp("big"), big, 0644));
  ASSERT_TRUE(it::WriteFile(mp("small"), "small\n", 0644));

  auto t0 = std::chrono::steady_clock::now();
  RunResult r = Ctl({"--json", "checkpoint", "c1"});
  double took = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  json j = JsonOut(r);
  ASSERT_EQ(r.exit_code, 0) << r.Describe();
  EXPECT_EQ(j["state"], "captured") << r.out;
  // 64 MiB at 6 MiB/s take > 10 s: the checkpoint did not wait for them.
  EXPECT_LT(took, 5.0) << r.out;
  EXPECT_LT(j["held_ms"].get<double>(), 1000) << r.out;
  // Where the hold went, step by step; no step outlasts the hold.
  for (const char* step :
       {"drain_ms", "ranges_ms", "pause_record_ms", "frozen_ms", "capture_ms", "snapshot_ms"}) {
    ASSERT_TRUE(j[step].is_number()) << step << " missing: " << r.out;
    EXPECT_LE(j[step].get<double>(), j["held_ms"].get<double>()) << step << ": " << r.out;
  }
  EXPECT_GE(j["frozen"].get<int>(), 1) << "big was not stored yet: it is frozen; " << r.out;
  EXPECT_FALSE(ManifestStored("c1")) << "stored before its upload was done?";

  auto states = States();
  ASSERT_TRUE(states.count("c1"));
  EXPECT_EQ(states["c1"]["state"], "captured");
  EXPECT_EQ(states["c1"]["seq"], j["seq"]);
  EXPECT_TRUE(states["c1"]["error"].is_null());
  json st = JsonOut(Ctl({"--json", "status"}));
  ASSERT_TRUE(st.is_object());
  bool listed = false;
  for (const json& c : st["daemon"]["checkpoints_captured"]) listed |= c["name"] == "c1";
  EXPECT_TRUE(listed) << st.dump();
  // A second name while c1 is in flight; names stay unique.
  EXPECT_NE(Ctl({"checkpoint", "c1"}).exit_code, 0) << "c1 reused while captured";

  // --wait: returns when stored; c1 (smaller mark) is stored first.
  r = Ctl({"--json", "checkpoint", "c2", "--wait", "--timeout", "100"}, 150);
  j = JsonOut(r);
  ASSERT_EQ(r.exit_code, 0) << r.Describe();
  EXPECT_EQ(j["state"], "stored") << r.out;
  EXPECT_TRUE(ManifestStored("c2"));
  EXPECT_TRUE(ManifestStored("c1"));
  states = States();
  EXPECT_EQ(states["c1"]["state"], "stored");
  EXPECT_EQ(states["c2"]["state"], "stored");
  EXPECT_FALSE(states["c1"]["stored_ns"].is_null());
  EXPECT_FALSE(SpoolHolds("c1")) << "the capture must be released once stored";
  json m = Manifest("c1");
  json e = Entry(m, "big");
  ASSERT_TRUE(e.is_object()) << (m.is_object() ? m.dump().substr(0, 1000) : "no manifest");
  EXPECT_EQ(e["size"], big.size());
  EXPECT_EQ(e["sha256"], Sha256Hex(big));
  EXPECT_TRUE(Entry(m, "small").is_object());
  EXPECT_EQ(m["journal_seq"], states["c1"]["seq"]);
  // Stored means recorded: the journal's checkpoint records name both.
  int records = 0;
  for (const Record& rec : Records())
    if (rec.op == Op::kCheckpoint) ++records;
  EXPECT_EQ(records, 2);
}

TEST_F(CheckpointCaptureTest, FlushWaitsForCapturedCheckpoints) {
  // Storing waits 3 s more once the uploads are done: flush must wait too.
  setenv("SCRIBEFS_TEST_STORE_DELAY_MS", "3000", 1);
  MountWithTarget();
  unsetenv("SCRIBEFS_TEST_STORE_DELAY_MS");
  if (HasFatalFailure()) return;
  ASSERT_TRUE(it::WriteFile(mp("f"), it::Pattern(1 << 20, 3), 0644));
  RunResult r = Ctl({"--json", "checkpoint", "fl"});
  ASSERT_EQ(r.exit_code, 0) << r.Describe();
  EXPECT_EQ(JsonOut(r)["state"], "captured");
  r = Ctl({"flush", "--timeout", "60"});
  ASSERT_EQ(r.exit_code, 0) << r.Describe();
  EXPECT_TRUE(ManifestStored("fl")) << "flush returned before the captured checkpoint was stored";
  EXPECT_EQ(States()["fl"]["state"], "stored");
}

// Sync mode (close returns once stored) and the hooks: a file open and
// written, not yet stored at the mark, is frozen; the checkpoint is captured
// without waiting for it; after the mark the writer overwrites the frozen
// range and its close returns once the live state is stored; the manifest
// names the state at the mark. --pre ran before the hold, --post after.
TEST_F(CheckpointCaptureTest, SyncModeWithHooksCapturesAndWritersAfterTheMarkGoOn) {
  MountWithTarget({"--mode", "sync", "--bwlimit", "8M"});
  if (HasFatalFailure()) return;
  const std::string at_mark = it::Pattern(8 << 20, 21), later = it::Pattern(1 << 20, 22);
  int fd = open(mp("open.bin").c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
  ASSERT_GE(fd, 0) << strerror(errno);
  ASSERT_EQ(write(fd, at_mark.data(), at_mark.size()), ssize_t(at_mark.size()));
  const std::string log = root() + "/hooks.log";
  RunResult r =
      Ctl({"--json", "checkpoint", "sync1", "--pre", "echo pre $SCRIBEFS_CHECKPOINT >> " + log,
           "--post", "echo post $SCRIBEFS_CHECKPOINT_RESULT >> " + log});
  json j = JsonOut(r);
  ASSERT_EQ(r.exit_code, 0) << r.Describe();
  EXPECT_EQ(j["state"], "captured") << r.out;
  EXPECT_GE(j["frozen"].get<int>(), 1) << r.out;
  EXPECT_EQ(it::ReadFile(log).value_or(""), "pre sync1\npost ok\n");
  // After the mark: overwrite the frozen range; close waits for the store.
  ASSERT_EQ(pwrite(fd, later.data(), later.size(), 0), ssize_t(later.size()));
  EXPECT_EQ(close(fd), 0) << strerror(errno);
  std::string now = at_mark;
  now.replace(0, later.size(), later);
  auto g = store_->Get("open.bin");
  ASSERT_TRUE(g.ok()) << "close returned before open.bin was stored";
  EXPECT_TRUE(g->body == now) << "the target holds the live state after the close";
  json s = WaitState("sync1", "stored", 90);
  ASSERT_TRUE(s.is_object());
  EXPECT_EQ(s["state"], "stored") << s.dump();
  json e = Entry(Manifest("sync1"), "open.bin");
  ASSERT_TRUE(e.is_object());
  EXPECT_EQ(e["sha256"], Sha256Hex(at_mark)) << "the manifest names the state at the mark";
  EXPECT_EQ(e["size"], at_mark.size());
}

// Most of the frozen set is read before the pause, so that the hold does
// not grow with the records not stored yet. A path whose first unstored
// record comes after that read, just before the pause, is frozen all the
// same: the checkpoint names its state at the mark, not the stored one.
// The records queued after the journal read of the frozen set come from
// memory (the journal's watch) under the hold, or, when there were more than
// the watch keeps, from the journal: either way the manifest names the
// state at the mark.
void CheckpointCaptureTest::WriteJustBeforeThePause(const char* watch_max,
                                                    const std::string& source) {
  if (watch_max) setenv("SCRIBEFS_TEST_WATCH_MAX_NAMES", watch_max, 1);
  setenv("SCRIBEFS_TEST_PAUSE_DELAY_MS", "1500", 1);
  MountWithTarget({"--bwlimit", "1M"});
  unsetenv("SCRIBEFS_TEST_PAUSE_DELAY_MS");
  unsetenv("SCRIBEFS_TEST_WATCH_MAX_NAMES");
  if (HasFatalFailure()) return;
  const std::string stored = "stored before the checkpoint\n";
  ASSERT_TRUE(it::WriteFile(mp("f"), stored, 0644));
  ASSERT_EQ(Ctl({"flush", "--timeout", "60"}).exit_code, 0);
  auto cp = std::async(std::launch::async, [&] { return Ctl({"--json", "checkpoint", "window"}); });
  std::this_thread::sleep_for(300ms);  // the frozen set is read; the pause waits
  // 4 MiB at 1 MiB/s: still being stored at the mark.
  const std::string at_mark = it::Pattern(4 << 20, 41);
  ASSERT_TRUE(it::WriteFile(mp("f"), at_mark, 0644));
  RunResult r = cp.get();
  ASSERT_EQ(r.exit_code, 0) << r.Describe();
  json j = JsonOut(r);
  ASSERT_EQ(j["state"], "captured") << r.out;
  EXPECT_GE(j["frozen_before_ms"].get<double>(), 0) << r.out;
  EXPECT_GE(j["frozen"].get<int>(), 1) << r.out;
  EXPECT_EQ(j["frozen_source"], source) << r.out;
  ASSERT_TRUE(it::WriteFile(mp("f"), "after the mark\n", 0644));
  json s = WaitState("window", "stored", 90);
  ASSERT_TRUE(s.is_object());
  ASSERT_EQ(s["state"], "stored") << s.dump();
  json e = Entry(Manifest("window"), "f");
  ASSERT_TRUE(e.is_object());
  EXPECT_EQ(e["sha256"], Sha256Hex(at_mark))
      << "the manifest names " << (e["sha256"] == Sha256Hex(stored) ? "the stored state" : "?")
      << ", not the state at the mark";
}

TEST_F(CheckpointCaptureTest, APathWrittenJustBeforeThePauseIsFrozen) {
  WriteJustBeforeThePause(nullptr, "memory");
}

TEST_F(CheckpointCaptureTest, APathWrittenJustBeforeThePauseIsFrozenPastTheWatch) {
  WriteJustBeforeThePause("1", "journal");
}

TEST_F(CheckpointCaptureTest, KillBetweenCapturedAndStoredThenRestartStores) {
  setenv("SCRIBEFS_TEST_STORE_DELAY_MS", "600000", 1);
  MountWithTarget({"--bwlimit", "8M"});
  unsetenv("SCRIBEFS_TEST_STORE_DELAY_MS");
  if (HasFatalFailure()) return;
  const std::string body = it::Pattern(16 << 20, 11);
  ASSERT_TRUE(it::WriteFile(mp("k1"), body, 0644));
  ASSERT_TRUE(it::WriteFile(mp("k2"), "two\n", 0644));
  RunResult r = Ctl({"--json", "checkpoint", "killed"});
  ASSERT_EQ(r.exit_code, 0) << r.Describe();
  json j = JsonOut(r);
  ASSERT_EQ(j["state"], "captured");
  ASSERT_TRUE(SpoolHolds("killed"));
  KillDaemon();
  Unmount();  // the dead mount

  MountWithTarget();
  if (HasFatalFailure()) return;
  json s = WaitState("killed", "stored", 90);
  ASSERT_TRUE(s.is_object());
  EXPECT_EQ(s["state"], "stored") << s.dump();
  EXPECT_EQ(s["seq"], j["seq"]);
  json m = Manifest("killed");
  json e = Entry(m, "k1");
  ASSERT_TRUE(e.is_object()) << (m.is_object() ? m.dump().substr(0, 1000) : "no manifest");
  EXPECT_EQ(e["sha256"], Sha256Hex(body));
  EXPECT_TRUE(Entry(m, "k2").is_object());
  EXPECT_FALSE(SpoolHolds("killed"));
  // Its files (NAME.frozen, NAME@TARGET.rows) are gone.
  for (const auto& f : std::filesystem::directory_iterator(state("checkpoints")))
    EXPECT_NE(f.path().filename().string().rfind("killed", 0), 0u) << f.path();
  // Recorded once, and the name is taken.
  int records = 0;
  for (const Record& rec : Records())
    if (rec.op == Op::kCheckpoint) ++records;
  EXPECT_EQ(records, 1);
  EXPECT_NE(Ctl({"checkpoint", "killed"}).exit_code, 0);
}

TEST_F(CheckpointCaptureTest, SpoolFullFailsTheCheckpointNotTheWriters) {
  MountWithTarget({"--bwlimit", "1M", "--max-spool", "64K"});
  if (HasFatalFailure()) return;
  ASSERT_TRUE(it::WriteFile(mp("big"), it::Pattern(8 << 20, 5), 0644));
  RunResult r = Ctl({"--json", "checkpoint", "full"});
  ASSERT_EQ(r.exit_code, 0) << r.Describe();
  ASSERT_EQ(JsonOut(r)["state"], "captured") << r.out;
  // Overwrite 1 MiB of the frozen, not yet stored file: more than the spool
  // may hold. The writer does not notice.
  const std::string over = it::Pattern(1 << 20, 99);
  int fd = open(mp("big").c_str(), O_WRONLY | O_CLOEXEC);
  ASSERT_GE(fd, 0) << strerror(errno);
  EXPECT_EQ(pwrite(fd, over.data(), over.size(), 0), static_cast<ssize_t>(over.size()))
      << strerror(errno);
  EXPECT_EQ(close(fd), 0) << strerror(errno);
  auto now = it::ReadFile(mp("big"));
  ASSERT_TRUE(now.has_value());
  EXPECT_EQ(now->substr(0, over.size()), over);

  json s = WaitState("full", "failed", 30);
  ASSERT_TRUE(s.is_object());
  EXPECT_EQ(s["state"], "failed") << s.dump();
  ASSERT_TRUE(s["error"].is_string()) << s.dump();
  EXPECT_NE(s["error"].get<std::string>().find("spool"), std::string::npos) << s.dump();
  EXPECT_FALSE(SpoolHolds("full")) << "the spool of a failed checkpoint is freed";
  EXPECT_FALSE(ManifestStored("full"));
  // The human listing names the reason too; the writes go on being stored.
  RunResult h = Ctl({"checkpoints"});
  EXPECT_NE(h.out.find("failed full"), std::string::npos) << h.out;
  ASSERT_EQ(Ctl({"flush", "--timeout", "100"}, 150).exit_code, 0);
  auto obj = store_->Get("big");
  ASSERT_TRUE(obj.ok());
  EXPECT_EQ(Sha256Hex(obj->body), Sha256Hex(*now));
}

}  // namespace
}  // namespace scribefs::ctltest
