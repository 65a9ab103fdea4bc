// Checkpoints on a real mount, against a file:// target, or (compiled with
// SCRIBEFS_CHECKPOINT_S3) against the RGW the CTest fixture "rgw" starts.
//
// Consistency: 4 writer threads keep rewriting a set of files, every round
// setting every file to the same new generation. Five checkpoints are taken
// with `scribectl checkpoint --pre --post`, the hooks quiescing the writers at
// a round boundary (as a database's flush/unlock would); every manifest must
// name one single generation across all files, and before the writers go on
// (inside the --post hook) every object in the target must have the SHA-256
// the manifest names. A second test lets the writers run freely and takes the
// checkpoints inside a `scribectl pause`: then target, manifest and DATADIR
// must agree exactly. With S3, a versioned bucket keeps a checkpoint
// restorable after the files are overwritten.
#include "uploader/checkpoint.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <barrier>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <filesystem>
#include <mutex>
#include <set>
#include <thread>

#include "tests/control/control_util.h"

namespace scribefs::ctltest {
namespace {

using namespace std::chrono_literals;

#ifdef SCRIBEFS_CHECKPOINT_S3
constexpr bool kS3 = true;
#else
constexpr bool kS3 = false;
#endif

constexpr int kThreads = 4;
constexpr int kFilesPerThread = 3;
constexpr int kFiles = kThreads * kFilesPerThread;

std::string FileName(int i) { return "set/f" + std::to_string(i); }

// Generation g of file i: a header naming both, then bytes that differ per
// generation (and sizes that vary, some above one write request).
std::string Content(int i, int64_t g) {
  size_t size = 100 + static_cast<size_t>((g * 7919 + i * 104729) % 300000);
  return "gen=" + std::to_string(g) + " file=" + std::to_string(i) + "\n" +
         it::Pattern(size, static_cast<uint32_t>(g * 131 + i));
}

int64_t GenOf(const std::string& body) {
  if (body.rfind("gen=", 0) != 0) return -1;
  return atoll(body.c_str() + 4);
}

bool WriteWhole(const std::string& path, const std::string& content, std::string* error) {
  int fd = open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) {
    *error = path + ": open: " + strerror(errno);
    return false;
  }
  size_t done = 0;
  while (done < content.size()) {
    ssize_t n = write(fd, content.data() + done, content.size() - done);
    if (n < 0) {
      *error = path + ": write: " + strerror(errno);
      close(fd);
      return false;
    }
    done += n;
  }
  if (close(fd) != 0) {
    *error = path + ": close: " + strerror(errno);
    return false;
  }
  return true;
}

// kThreads writers; each round every thread rewrites its files to the
// current generation, then all meet at a barrier whose completion starts the
// next generation, and parks the writers there while a quiesce is requested.
class Writers {
 public:
  explicit Writers(std::string mount) : mount_(std::move(mount)) {}
  ~Writers() { Stop(); }

  void Start(bool allow_quiesce) {
    allow_quiesce_ = allow_quiesce;
    for (int t = 0; t < kThreads; ++t) threads_.emplace_back([this, t] { Loop(t); });
  }
  void Stop() {
    stop_ = true;
    Release();
    for (auto& t : threads_) t.join();
    threads_.clear();
  }
  // Parks the writers at the next round boundary; returns the generation
  // every file now holds.
  int64_t Quiesce() {
    std::unique_lock lk(mu_);
    quiesce_ = true;
    cv_.wait(lk, [&] { return quiesced_ || stop_ || !error_.empty(); });
    return gen_ - 1;
  }
  void Release() {
    std::lock_guard lk(mu_);
    quiesce_ = false;
    cv_.notify_all();
  }
  int64_t rounds() const { return gen_.load() - 1; }
  std::string error() {
    std::lock_guard lk(mu_);
    return error_;
  }

 private:
  void Loop(int t) {
    while (true) {
      int64_t g = gen_.load();
      for (int k = 0; k < kFilesPerThread; ++k) {
        int i = t * kFilesPerThread + k;
        std::string err;
        if (!WriteWhole(mount_ + "/" + FileName(i), Content(i, g), &err)) {
          std::lock_guard lk(mu_);
          if (error_.empty()) error_ = err;
          cv_.notify_all();
        }
      }
      barrier_.arrive_and_wait();
      if (stopping_) return;
    }
  }
  // Runs once per round, while every writer waits at the barrier.
  void RoundDone() noexcept {
    gen_++;
    std::unique_lock lk(mu_);
    stopping_ = stop_.load();
    if (stopping_ || !allow_quiesce_) return;
    if (quiesce_) {
      quiesced_ = true;
      cv_.notify_all();
      cv_.wait(lk, [&] { return !quiesce_ || stop_; });
      quiesced_ = false;
      stopping_ = stop_.load();
    }
  }
  struct Completion {
    Writers* w;
    void operator()() noexcept { w->RoundDone(); }
  };

  const std::string mount_;
  bool allow_quiesce_ = true;
  std::atomic<bool> stop_{false};
  bool stopping_ = false;  // read by the writers after the barrier
  std::atomic<int64_t> gen_{1};
  std::mutex mu_;
  std::condition_variable cv_;
  bool quiesce_ = false, quiesced_ = false;
  std::string error_;
  std::barrier<Completion> barrier_{kThreads, Completion{this}};
  std::vector<std::thread> threads_;
};

class CheckpointTest : public it::MountTest {
 protected:
  void MountWithTarget(bool versioned = false, const std::vector<std::string>& extra = {}) {
    Options o;
    if (kS3) {
      s3_ = GetS3Server();
      ASSERT_TRUE(s3_.has_value());
      bucket_ = MakeBucket(*s3_, "scribefs-ckpt", versioned);
      ASSERT_FALSE(bucket_.empty());
      prefix_ = "m";
      url_ = "s3://" + bucket_ + "/" + prefix_;
      ExportCredentials(*s3_);
      o.args = {"--target", url_, "--endpoint", s3_->endpoint, "--region", s3_->region};
    } else {
      url_ = "file://" + root() + "/target";
      o.args = {"--target", url_};
    }
    o.args.insert(o.args.end(), extra.begin(), extra.end());
    Mount(o);
    store_ = OpenTarget(url_, s3_);
    ASSERT_NE(store_, nullptr);
  }
  RunResult Ctl(const std::vector<std::string>& args, double timeout_s = 120) {
    return Scribectl(state(), args, timeout_s);
  }
  json Manifest(const std::string& name) {
    auto g = store_->Get(CheckpointManifestKey(name));
    if (!g.ok()) {
      ADD_FAILURE() << "manifest of " << name << ": " << g.status().ToString();
      return nullptr;
    }
    return json::parse(g->body, nullptr, false);
  }
  // Entries of the manifest under set/, by path.
  static std::map<std::string, json> SetEntries(const json& m) {
    std::map<std::string, json> out;
    if (!m.is_object()) return out;
    for (const auto& e : m["entries"])
      if (e["path"].get<std::string>().rfind("set/", 0) == 0) out[e["path"]] = e;
    return out;
  }
  // Checks the manifest against the objects in the target (and, when
  // local_too, against DATADIR). Returns the generations it names.
  std::set<int64_t> Verify(const std::string& name, bool local_too) {
    std::set<int64_t> gens;
    json m = Manifest(name);
    if (!m.is_object()) {
      ADD_FAILURE() << name << ": manifest does not parse";
      return gens;
    }
    EXPECT_EQ(m["format"], "scribefs-checkpoint");
    EXPECT_EQ(m["name"], name);
    EXPECT_GT(m["journal_seq"].get<int64_t>(), 0);
    auto entries = SetEntries(m);
    EXPECT_EQ(entries.size(), static_cast<size_t>(kFiles))
        << name << ": " << m.dump().substr(0, 2000);
    for (const auto& [path, e] : entries) {
      auto obj = store_->Get(e["key"].get<std::string>());
      if (!obj.ok()) {
        ADD_FAILURE() << name << ": " << path << ": " << obj.status().ToString();
        continue;
      }
      std::string sha = Sha256Hex(obj->body);
      EXPECT_EQ(sha, e["sha256"].get<std::string>())
          << name << ": object " << path << " differs from the manifest";
      EXPECT_EQ(obj->body.size(), e["size"].get<uint64_t>()) << name << ": " << path;
      EXPECT_EQ(e["type"], "file");
      if (local_too) {
        auto local = it::ReadFile(data(path));
        EXPECT_TRUE(local.has_value()) << path;
        if (local) {
          EXPECT_EQ(Sha256Hex(*local), e["sha256"].get<std::string>())
              << name << ": DATADIR's " << path << " differs from the manifest";
        }
      }
      gens.insert(GenOf(obj->body));
    }
    return gens;
  }

  std::optional<S3Server> s3_;
  std::string bucket_, prefix_, url_;
  std::unique_ptr<ObjectStore> store_;
};

TEST_F(CheckpointTest, HooksGiveApplicationConsistentCheckpoints) {
  MountWithTarget();
  if (HasFatalFailure()) return;
  ASSERT_EQ(mkdir(mp("set").c_str(), 0755), 0);
  std::string ctl = root() + "/ctl";
  ASSERT_EQ(mkdir(ctl.c_str(), 0755), 0);
  Writers writers(mp());
  writers.Start(/*allow_quiesce=*/true);

  // The application side of the hooks: quiesce on "pre", verify and let go
  // on "post" (the checkpoint's own pause is over by then; our writers are
  // still parked, so the target must still match the manifest).
  std::atomic<bool> done{false};
  std::mutex mu;
  std::string current;
  std::map<std::string, std::set<int64_t>> gens;
  std::map<std::string, int64_t> quiesced_at;
  auto exists = [](const std::string& p) {
    struct stat st;
    return stat(p.c_str(), &st) == 0;
  };
  std::thread app([&] {
    while (!done) {
      if (exists(ctl + "/pre")) {
        unlink((ctl + "/pre").c_str());
        int64_t g = writers.Quiesce();
        std::lock_guard lk(mu);
        quiesced_at[current] = g;
        it::WriteFile(ctl + "/pre.ok", "");
      }
      if (exists(ctl + "/post")) {
        unlink((ctl + "/post").c_str());
        std::string name;
        {
          std::lock_guard lk(mu);
          name = current;
        }
        auto g = Verify(name, /*local_too=*/true);
        {
          std::lock_guard lk(mu);
          gens[name] = g;
        }
        writers.Release();
        it::WriteFile(ctl + "/post.ok", "");
      }
      std::this_thread::sleep_for(5ms);
    }
  });
  // Bounded: a hook must never outlive a test that died (at most 60 s).
  auto hook = [&](const std::string& what) {
    std::string ok = ctl + "/" + what + ".ok";
    return "touch " + ctl + "/" + what + " && i=0; while [ ! -e " + ok +
           " ] && [ $i -lt 6000 ]; do sleep 0.01; i=$((i+1)); done; [ -e " + ok + " ] && rm -f " +
           ok;
  };
  std::vector<double> held;
  for (int k = 1; k <= 5; ++k) {
    std::this_thread::sleep_for(400ms);
    std::string name = "consistent-" + std::to_string(k);
    {
      std::lock_guard lk(mu);
      current = name;
    }
    RunResult r = Ctl({"--json", "checkpoint", name, "--wait", "--timeout", "60", "--pre", hook("pre"),
                       "--post", hook("post")});
    EXPECT_EQ(r.exit_code, 0) << name << ": " << r.Describe();
    json j = JsonOut(r);
    if (j.is_object() && j["held_ms"].is_number()) held.push_back(j["held_ms"].get<double>());
  }
  done = true;
  app.join();
  int64_t rounds = writers.rounds();
  writers.Stop();
  EXPECT_EQ(writers.error(), "");
  EXPECT_GE(rounds, 5) << "the writers hardly ran";
  for (int k = 1; k <= 5; ++k) {
    std::string name = "consistent-" + std::to_string(k);
    ASSERT_TRUE(gens.count(name)) << name << " was not verified (post hook did not run?)";
    EXPECT_EQ(gens[name].size(), 1u) << name << " mixes generations";
    if (gens[name].size() == 1) {
      EXPECT_EQ(*gens[name].begin(), quiesced_at[name])
          << name << " does not hold the generation the application had when it quiesced";
    }
  }
  // Listed in the journal and in the target.
  json list = JsonOut(Ctl({"--json", "checkpoints"}));
  EXPECT_EQ(list["journal"].size(), 5u);
  EXPECT_EQ(list["target"].size(), 5u);
  std::string hs;
  for (double h : held) hs += std::to_string(h) + " ";
  RecordProperty("held_ms", hs);
}

TEST_F(CheckpointTest, CheckpointInsideAPauseMatchesTargetAndDatadir) {
  MountWithTarget();
  if (HasFatalFailure()) return;
  ASSERT_EQ(mkdir(mp("set").c_str(), 0755), 0);
  Writers writers(mp());
  writers.Start(/*allow_quiesce=*/false);  // they never wait for us
  for (int k = 1; k <= 3; ++k) {
    std::this_thread::sleep_for(500ms);
    RunResult p = Ctl({"pause", "--timeout", "120"});
    ASSERT_EQ(p.exit_code, 0) << p.Describe();
    std::string name = "paused-" + std::to_string(k);
    RunResult r = Ctl({"--json", "checkpoint", name, "--wait", "--timeout", "60"});
    EXPECT_EQ(r.exit_code, 0) << r.Describe();
    // Still paused: target == manifest == DATADIR, file by file.
    Verify(name, /*local_too=*/true);
    EXPECT_EQ(JsonOut(Ctl({"--json", "status"}))["daemon"]["pause"]["paused"], true);
    ASSERT_EQ(Ctl({"resume"}).exit_code, 0);
  }
  writers.Stop();
  EXPECT_EQ(writers.error(), "");
}

TEST_F(CheckpointTest, ManifestDescribesEveryObjectAndReservedKeysAreSafe) {
  MountWithTarget();
  if (HasFatalFailure()) return;
  ASSERT_EQ(mkdir(mp("dir").c_str(), 0750), 0);
  ASSERT_TRUE(it::WriteFile(mp("dir/file"), "hello", 0640));
  ASSERT_EQ(symlink("dir/file", mp("link").c_str()), 0);
  RunResult r = Ctl({"--json", "checkpoint", "first", "--wait"});
  ASSERT_EQ(r.exit_code, 0) << r.Describe();
  json m = Manifest("first");
  ASSERT_TRUE(m.is_object());
  std::map<std::string, json> by_path;
  for (const auto& e : m["entries"]) by_path[e["path"]] = e;
  ASSERT_TRUE(by_path.count("dir") && by_path.count("dir/file") && by_path.count("link"))
      << m.dump();
  EXPECT_EQ(by_path["dir"]["type"], "dir");
  EXPECT_EQ(by_path["dir"]["key"], "dir/");
  EXPECT_EQ(by_path["dir"]["mode"].get<uint32_t>() & 07777, 0750u);
  EXPECT_EQ(by_path["dir/file"]["type"], "file");
  EXPECT_EQ(by_path["dir/file"]["size"], 5);
  EXPECT_EQ(by_path["dir/file"]["sha256"], Sha256Hex("hello"));
  EXPECT_EQ(by_path["dir/file"]["mode"].get<uint32_t>() & 07777, 0640u);
  struct stat st;
  ASSERT_EQ(lstat(data("dir/file").c_str(), &st), 0);
  EXPECT_EQ(by_path["dir/file"]["mtime_ns"].get<int64_t>(), it::MtimeNs(st));
  EXPECT_EQ(by_path["dir/file"]["uid"], st.st_uid);
  EXPECT_EQ(by_path["link"]["type"], "symlink");
  for (const auto& k : {"etag", "version_id", "gid"}) EXPECT_TRUE(by_path["dir/file"].contains(k));
  EXPECT_EQ(m["paths"], m["entries"].size());
  EXPECT_EQ(m["target"], url_);

  // A local .scribefs/ (here posing as a manifest) is journaled but never
  // uploaded over scribefs's own keys.
  ASSERT_EQ(mkdir(mp(".scribefs").c_str(), 0755), 0);
  ASSERT_EQ(mkdir(mp(".scribefs/checkpoints").c_str(), 0755), 0);
  ASSERT_TRUE(it::WriteFile(mp(".scribefs/checkpoints/first.json"), "forged"));
  ASSERT_TRUE(it::WriteFile(mp(".scribefs/checkpoints/forged.json"), "{}"));
  ASSERT_EQ(Ctl({"flush", "--timeout", "60"}).exit_code, 0);
  json again = Manifest("first");
  ASSERT_TRUE(again.is_object()) << "the manifest was overwritten";
  EXPECT_EQ(again["name"], "first");
  json list = JsonOut(Ctl({"--json", "checkpoints"}));
  EXPECT_EQ(list["target"].size(), 1u) << list.dump();
  // Deleting the local directory deletes nothing of ours either.
  ASSERT_EQ(unlink(mp(".scribefs/checkpoints/first.json").c_str()), 0);
  ASSERT_EQ(unlink(mp(".scribefs/checkpoints/forged.json").c_str()), 0);
  ASSERT_EQ(rmdir(mp(".scribefs/checkpoints").c_str()), 0);
  ASSERT_EQ(rmdir(mp(".scribefs").c_str()), 0);
  ASSERT_EQ(Ctl({"flush", "--timeout", "60"}).exit_code, 0);
  EXPECT_TRUE(Manifest("first").is_object());
  // The checkpoint record.
  ASSERT_EQ(Unmount(), 0);
  bool found = false;
  for (const auto& rec : Records()) {
    if (rec.op != Op::kCheckpoint) continue;
    found = true;
    json d = json::parse(rec.detail);
    EXPECT_EQ(d["name"], "first");
    EXPECT_EQ(d["manifest_key"], ".scribefs/checkpoints/first.json");
    EXPECT_EQ(d["paths"], m["paths"]);
    EXPECT_TRUE(d["held_ms"].is_number());
    EXPECT_EQ(rec.state, "done");
  }
  EXPECT_TRUE(found);
}

// A checkpoint of many paths (issue 10, item 9). Its manifest is written
// after writers resume: with manifest writing slowed down by the test hook
// ($SCRIBEFS_TEST_MANIFEST_DELAY_MS), a write issued right after the
// checkpoint's pause began still completes at once, long before the
// checkpoint does (a hold that lasts through the manifest makes it wait the
// whole delay). Restore reads the manifest back to the tree as it was.
TEST_F(CheckpointTest, ManyPathsManifestIsWrittenAfterWritersResume) {
  constexpr int kDirs = 15, kPerDir = 100;
  constexpr int kDelayMs = 2000;
  setenv("SCRIBEFS_TEST_MANIFEST_DELAY_MS", std::to_string(kDelayMs).c_str(), 1);
  MountWithTarget();
  unsetenv("SCRIBEFS_TEST_MANIFEST_DELAY_MS");
  if (HasFatalFailure()) return;
  for (int d = 0; d < kDirs; ++d) {
    std::string dir = "many/d" + std::to_string(d);
    if (d == 0) ASSERT_EQ(mkdir(mp("many").c_str(), 0755), 0);
    ASSERT_EQ(mkdir(mp(dir).c_str(), 0750), 0);
    for (int i = 0; i < kPerDir; ++i)
      ASSERT_TRUE(it::WriteFile(mp(dir + "/f" + std::to_string(i)),
                                "file " + std::to_string(d * kPerDir + i) + "\n", 0640));
  }
  ASSERT_EQ(Ctl({"flush", "--timeout", "120"}).exit_code, 0);
  auto tree_at_checkpoint = it::ListTree(data());
  int64_t seq_before = 0;
  for (const Record& r : Records()) seq_before = std::max(seq_before, r.seq);

  std::atomic<bool> done{false};
  RunResult ck;
  std::thread checkpoint([&] {
    ck = Ctl({"--json", "checkpoint", "many", "--wait"}, 120);
    done = true;
  });
  // Wait for the checkpoint's pause record, then write through the mount.
  bool paused = false;
  for (int i = 0; i < 1000 && !paused && !done; ++i) {
    for (const Record& r : Records())
      if (r.seq > seq_before && r.op == Op::kPause) paused = true;
    if (!paused) std::this_thread::sleep_for(5ms);
  }
  EXPECT_TRUE(paused) << "no pause record seen";
  std::string late = mp("late");
  const char* late_path = late.c_str();
  auto t0 = std::chrono::steady_clock::now();
  Child writer([late_path] {
    int fd = open(late_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) return errno;
    if (write(fd, "late\n", 5) != 5) return errno ? errno : EIO;
    return close(fd) == 0 ? 0 : errno;
  });
  auto status = writer.Wait(60);
  double write_ms =
      std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  bool checkpoint_done_at_write = done;
  checkpoint.join();
  ASSERT_EQ(status, std::optional<int>(0));
  EXPECT_LT(write_ms, kDelayMs / 2) << "a write was held while the manifest was written";
  EXPECT_FALSE(checkpoint_done_at_write) << "the write completed only after the checkpoint";
  ASSERT_EQ(ck.exit_code, 0) << ck.Describe();
  json a = JsonOut(ck);
  EXPECT_LT(a["held_ms"].get<double>(), kDelayMs / 2) << a.dump();
  EXPECT_GE(a["manifest_ms"].get<double>(), kDelayMs) << a.dump();
  const size_t paths = 1 + kDirs + kDirs * kPerDir;  // many/, its dirs and files
  EXPECT_EQ(a["paths"].get<size_t>(), paths) << a.dump();

  json m = Manifest("many");
  ASSERT_TRUE(m.is_object());
  EXPECT_EQ(m["paths"].get<size_t>(), paths);
  EXPECT_EQ(m["entries"].size(), paths);
  std::string prev;
  for (const auto& e : m["entries"]) {  // sorted by path
    EXPECT_LT(prev, e["path"].get<std::string>());
    prev = e["path"];
  }

  // Restore reads it back to the tree as it was (without "late").
  std::string dest = root() + "/restored";
  RunResult r = Ctl({"--json", "restore", "--same-owner", "--to", dest, "--checkpoint", "many"});
  ASSERT_EQ(r.exit_code, 0) << r.Describe();
  auto restored = it::ListTree(dest);
  ASSERT_EQ(restored.size(), tree_at_checkpoint.size());
  for (const auto& [rel, st] : tree_at_checkpoint) {
    auto got = restored.find(rel);
    ASSERT_NE(got, restored.end()) << rel << " not restored";
    EXPECT_EQ(got->second.st_mode, st.st_mode) << rel;
    EXPECT_EQ(got->second.st_size, S_ISDIR(st.st_mode) ? got->second.st_size : st.st_size) << rel;
    if (S_ISREG(st.st_mode)) {
      EXPECT_EQ(it::ReadFile(dest + "/" + rel), it::ReadFile(data(rel))) << rel;
      EXPECT_EQ(it::MtimeNs(got->second), it::MtimeNs(st)) << rel;
    }
  }
}

#ifdef SCRIBEFS_CHECKPOINT_S3
TEST_F(CheckpointTest, VersionedBucketKeepsCheckpointsRestorable) {
  MountWithTarget(/*versioned=*/true);
  if (HasFatalFailure()) return;
  constexpr int kN = 5;
  for (int i = 0; i < kN; ++i)
    ASSERT_TRUE(it::WriteFile(mp("v" + std::to_string(i)), Content(i, 1)));
  RunResult r = Ctl({"--json", "checkpoint", "before", "--wait"});
  ASSERT_EQ(r.exit_code, 0) << r.Describe();
  json m = Manifest("before");
  ASSERT_TRUE(m.is_object());
  // Overwrite everything, and wait until the target has the new contents.
  for (int i = 0; i < kN; ++i)
    ASSERT_TRUE(it::WriteFile(mp("v" + std::to_string(i)), Content(i, 2)));
  ASSERT_EQ(Ctl({"flush", "--timeout", "60"}).exit_code, 0);
  int checked = 0;
  for (const auto& e : m["entries"]) {
    std::string path = e["path"];
    if (path.rfind("v", 0) != 0) continue;
    int i = atoi(path.c_str() + 1);
    ASSERT_TRUE(e["version_id"].is_string()) << "no version id in the manifest: " << e.dump();
    auto now = store_->Get(path);
    ASSERT_TRUE(now.ok());
    EXPECT_EQ(GenOf(now->body), 2) << "the overwrite did not reach the target";
    std::string out = root() + "/fetched-" + path;
    RunResult g = Aws(*s3_, {"get-object", "--bucket", bucket_, "--key", prefix_ + "/" + path,
                             // "=": an RGW version id may begin with "-".
                             "--version-id=" + e["version_id"].get<std::string>(), out});
    ASSERT_EQ(g.exit_code, 0) << g.Describe();
    auto body = it::ReadFile(out);
    ASSERT_TRUE(body.has_value());
    EXPECT_EQ(Sha256Hex(*body), e["sha256"].get<std::string>()) << path;
    EXPECT_EQ(*body, Content(i, 1)) << path;
    checked++;
  }
  EXPECT_EQ(checked, kN);
}
#endif

// Temporary manifest files in the state directory (".checkpoint-NAME.*")
// of a daemon killed while it wrote one: the next daemon removes them once
// it holds the state directory's lock, and leaves everything else there alone.
std::vector<std::string> CheckpointTemps(const std::string& dir) {
  std::vector<std::string> out;
  for (const auto& e : std::filesystem::directory_iterator(dir)) {
    std::string n = e.path().filename().string();
    if (n.rfind(".checkpoint-", 0) == 0) out.push_back(n);
  }
  return out;
}

TEST_F(CheckpointTest, TempManifestOfAKilledDaemonIsRemovedAtStart) {
  setenv("SCRIBEFS_TEST_MANIFEST_DELAY_MS", "20000", 1);
  MountWithTarget();
  unsetenv("SCRIBEFS_TEST_MANIFEST_DELAY_MS");
  if (HasFatalFailure()) return;
  ASSERT_TRUE(it::WriteFile(mp("f"), "f\n", 0644));
  ASSERT_EQ(Ctl({"flush", "--timeout", "60"}).exit_code, 0);
  std::thread checkpoint([&] { Ctl({"checkpoint", "killed", "--wait"}, 60); });
  // Wait until the daemon is writing the manifest (its temp file exists).
  bool writing = false;
  for (int i = 0; i < 1000 && !writing; ++i) {
    writing = !CheckpointTemps(state()).empty();
    if (!writing) std::this_thread::sleep_for(10ms);
  }
  KillDaemon();
  checkpoint.join();
  ASSERT_TRUE(writing) << "no temporary manifest seen in " << state();
  ASSERT_EQ(CheckpointTemps(state()).size(), 1u) << "the kill removed it already";
  ASSERT_TRUE(it::WriteFile(state("notes.txt"), "mine\n", 0600));
  ASSERT_EQ(mkdir(state(".checkpoint-not-a-file").c_str(), 0700), 0);
  Unmount();  // the dead mount
  // (The check for objects the killed daemon left in flight, which flush
  // waits for, after 1 s rather than the default 30.)
  MountWithTarget(false, {"--crash-check-delay", "1"});
  if (HasFatalFailure()) return;
  // The checkpoint was captured before the kill: the restarted daemon
  // stores it (flush waits for that), writing a manifest of its own.
  ASSERT_EQ(Ctl({"flush", "--timeout", "60"}).exit_code, 0);
  EXPECT_EQ(CheckpointTemps(state()), std::vector<std::string>{".checkpoint-not-a-file"});
  EXPECT_EQ(it::ReadFile(state("notes.txt")), std::optional<std::string>("mine\n"));
  EXPECT_TRUE(store_->Head(CheckpointManifestKey("killed")).ok());
  RunResult r = Ctl({"checkpoint", "killed"});
  EXPECT_NE(r.exit_code, 0) << "stored after the restart: the name is taken; " << r.Describe();
}

}  // namespace
}  // namespace scribefs::ctltest
