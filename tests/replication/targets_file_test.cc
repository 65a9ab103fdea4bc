// Several targets at once (issue 16), on file:// targets: one Replicator per
// target (uploader/target_set.h), each with its own mode, excludes and state
// in the journal; a target added to a populated tree is filled from it
// without a request to the others.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <vector>

#include "history/layout.h"
#include "tests/replication/e2e_scenario.h"
#include "tests/replication/replication_fixture.h"

namespace scribefs::rep {
namespace {

class SeveralTargets : public ReplicationTest {
 protected:
  // A --config file with one [target NAME] section per entry of `sections`
  // (each "name", then its "key = value" lines).
  std::string WriteConfig(const std::vector<std::vector<std::string>>& sections) {
    std::string path = root() + "/scribefs.conf";
    std::ofstream f(path);
    for (const auto& s : sections) {
      f << "[target " << s[0] << "]\n";
      for (size_t i = 1; i < s.size(); ++i) f << s[i] << "\n";
    }
    return path;
  }
  // The daemon's status (scribectl --json status): each target's uploader.
  nlohmann::json Uploaders() {
    it::RunResult r = Ctl({"--json", "status"});
    EXPECT_EQ(r.exit_code, 0) << r.Describe();
    auto j = nlohmann::json::parse(r.out, nullptr, false);
    if (!j.is_object() || !j["daemon"].is_object()) return nlohmann::json::array();
    return j["daemon"]["uploaders"];
  }
  static const nlohmann::json& Named(const nlohmann::json& uploaders, const std::string& name) {
    for (const auto& u : uploaders)
      if (u.value("name", "") == name) return u;
    static const nlohmann::json none;
    ADD_FAILURE() << "no uploader named " << name << " in " << uploaders.dump();
    return none;
  }
};

// A sync local copy and an async second one: close returns once the sync
// target has the file; after a mixed workload both equal DATADIR, but for
// the path excluded on one target only.
TEST_F(SeveralTargets, SyncAndAsyncTargetsBothEqualTheTreeWithTheirOwnExcludes) {
  std::string usb = root() + "/usb", off = root() + "/off";
  std::string conf =
      WriteConfig({{"usb", "url = file://" + usb, "mode = sync"},
                   {"off", "url = file://" + off, "mode = async", "exclude = scratch.tmp"}});
  Options o;
  o.args = {"--config", conf};
  ASSERT_NO_FATAL_FAILURE(Mount(o));
  // Sync: the close waited for usb (not for off).
  ASSERT_TRUE(it::WriteFile(mp("first.txt"), "first"));
  struct stat st;
  EXPECT_EQ(stat((usb + "/first.txt").c_str(), &st), 0) << "close returned before usb had it";

  ASSERT_EQ(mkdir(mp("dir").c_str(), 0755), 0);
  for (int i = 0; i < 30; ++i)
    ASSERT_TRUE(it::WriteFile(mp("dir/f" + std::to_string(i)), "content " + std::to_string(i)));
  ASSERT_TRUE(it::WriteFile(mp("scratch.tmp"), "only on usb"));
  ASSERT_EQ(rename(mp("dir/f1").c_str(), mp("moved").c_str()), 0);
  ASSERT_EQ(unlink(mp("dir/f2").c_str()), 0);
  ASSERT_TRUE(it::WriteFile(mp("dir/f3"), "rewritten"));
  ASSERT_TRUE(Flush(60));

  ASSERT_NO_FATAL_FAILURE(VerifyFileMirror(usb, ExpectedObjects(data())));
  ASSERT_NO_FATAL_FAILURE(VerifyFileMirror(off, ExpectedObjects(data(), {"scratch.tmp"})));
  EXPECT_NE(stat((off + "/scratch.tmp").c_str(), &st), 0);
  nlohmann::json up = Uploaders();
  ASSERT_EQ(up.size(), 2u) << up.dump();
  EXPECT_EQ(Named(up, "usb").value("mode", ""), "sync");
  EXPECT_EQ(Named(up, "off").value("mode", ""), "async");
  ASSERT_EQ(Unmount(), 0);
  // scribectl stats: each target's counters as its uploader last noted them.
  it::RunResult r = Ctl({"--json", "stats"});
  ASSERT_EQ(r.exit_code, 0) << r.Describe();
  auto stats = nlohmann::json::parse(r.out, nullptr, false);
  ASSERT_TRUE(stats.is_object()) << r.out;
  EXPECT_TRUE(stats["uploader"].is_null()) << "no single uploader's note: " << r.out;
  ASSERT_TRUE(stats["uploaders"].is_array()) << r.out;
  ASSERT_EQ(stats["uploaders"].size(), 2u) << r.out;
  for (const auto& t : stats["uploaders"]) {
    ASSERT_TRUE(t["uploader"].is_object()) << r.out;
    EXPECT_GE(t["uploader"].value("uploads", 0), 30) << t.dump();
  }

  // scribectl verify checks every target, each with its own excludes; a file
  // lost from one target is a difference there only.
  it::RunResult v = Ctl({"--json", "verify"});
  EXPECT_EQ(v.exit_code, 0) << v.Describe();
  auto vj = nlohmann::json::parse(v.out, nullptr, false);
  ASSERT_TRUE(vj.is_object() && vj["targets"].is_array()) << v.out;
  ASSERT_EQ(vj["targets"].size(), 2u) << v.out;
  EXPECT_EQ(vj["targets"][0]["name"], "usb");
  EXPECT_EQ(vj["targets"][1]["name"], "off");
  for (const auto& t : vj["targets"]) {
    EXPECT_EQ(t["exit_code"], 0) << t.dump();
    EXPECT_EQ(t["identical"], true) << t.dump();
  }
  ASSERT_EQ(unlink((off + "/dir/f4").c_str()), 0);
  v = Ctl({"--json", "verify"});
  EXPECT_EQ(v.exit_code, 6) << v.Describe();
  vj = nlohmann::json::parse(v.out, nullptr, false);
  ASSERT_TRUE(vj.is_object() && vj["targets"].is_array()) << v.out;
  ASSERT_EQ(vj["targets"].size(), 2u) << v.out;
  EXPECT_EQ(vj["targets"][0]["exit_code"], 0) << v.out;
  EXPECT_EQ(vj["targets"][1]["exit_code"], 6) << v.out;
  EXPECT_EQ(vj["targets"][1]["missing"], nlohmann::json({"dir/f4"})) << v.out;
  v = Ctl({"verify"});
  EXPECT_EQ(v.exit_code, 6) << v.Describe();
  EXPECT_NE(v.out.find("== target usb =="), std::string::npos) << v.out;
  EXPECT_NE(v.out.find("== target off =="), std::string::npos) << v.out;
  // --target picks one.
  EXPECT_EQ(Ctl({"verify", "--target", "usb"}).exit_code, 0);
}

// A target added to a mount whose tree already holds 10,000 files gets all of
// them; the targets that had them get no request but those any restart
// makes (a second target, then a third). History is off: with it, the old target's timeline gets
// one segment without entries over the new target's records (skipped there), one small PUT (README,
// "Several targets"), which is not the data this counts.
TEST_F(SeveralTargets, AnAddedTargetIsFilledFromTheTreeWithoutARequestToTheOthers) {
  constexpr int kDirs = 100, kFiles = 10000;
  for (int d = 0; d < kDirs; ++d) {
    std::string dir = data("d" + std::to_string(d));
    ASSERT_EQ(mkdir(dir.c_str(), 0755), 0);
    for (int i = d; i < kFiles; i += kDirs)
      ASSERT_TRUE(it::WriteFile(dir + "/f" + std::to_string(i), std::to_string(i)));
  }
  std::string a = root() + "/a", b = root() + "/b";
  ASSERT_NO_FATAL_FAILURE(MountWithTarget("file://" + a, {"--history", "off"}));
  ASSERT_TRUE(Flush(300));
  ASSERT_EQ(Unmount(), 0);
  // What a start costs a target by itself (a look for stale uploads): the
  // same restart without a new target.
  ASSERT_NO_FATAL_FAILURE(MountWithTarget("file://" + a, {"--history", "off"}));
  ASSERT_TRUE(Flush(60));
  nlohmann::json alone = Uploaders();
  ASSERT_EQ(alone.size(), 1u) << alone.dump();
  const int64_t start_requests = alone[0].value("requests", int64_t(-1));
  EXPECT_EQ(alone[0].value("uploads", -1), 0) << alone.dump();
  ASSERT_EQ(Unmount(), 0);

  ASSERT_NO_FATAL_FAILURE(
      MountWithTarget("file://" + a, {"--target", "file://" + b, "--history", "off"}));
  ASSERT_TRUE(Flush(300));
  ASSERT_NO_FATAL_FAILURE(VerifyFileMirror(b, ExpectedObjects(data())));
  nlohmann::json up = Uploaders();
  ASSERT_EQ(up.size(), 2u) << up.dump();
  const nlohmann::json& old_one = up[0];
  const nlohmann::json& new_one = up[1];
  EXPECT_EQ(old_one.value("requests", int64_t(-1)), start_requests) << old_one.dump();
  EXPECT_EQ(old_one.value("uploads", -1), 0) << old_one.dump();
  EXPECT_GE(new_one.value("uploads", 0), kFiles) << new_one.dump();
  ASSERT_EQ(Unmount(), 0);
  ASSERT_NO_FATAL_FAILURE(VerifyFileMirror(a, ExpectedObjects(data())));

  // A third target: filled alone; the two that hold the tree get only what
  // any start costs a target.
  std::string c = root() + "/c";
  ASSERT_NO_FATAL_FAILURE(MountWithTarget(
      "file://" + a, {"--target", "file://" + b, "--target", "file://" + c, "--history", "off"}));
  ASSERT_TRUE(Flush(300));
  ASSERT_NO_FATAL_FAILURE(VerifyFileMirror(c, ExpectedObjects(data())));
  up = Uploaders();
  ASSERT_EQ(up.size(), 3u) << up.dump();
  for (int i : {0, 1}) {
    EXPECT_EQ(up[i].value("requests", int64_t(-1)), start_requests) << up[i].dump();
    EXPECT_EQ(up[i].value("uploads", -1), 0) << up[i].dump();
  }
  EXPECT_GE(up[2].value("uploads", 0), kFiles) << up[2].dump();
  ASSERT_EQ(Unmount(), 0);
}

// Automatic prune runs on every target's history, and `scribectl rescan`
// compares DATADIR with what every target holds: a file written behind the
// mount that the first target excludes still reaches the second.
TEST_F(SeveralTargets, PruneAndRescanServeEveryTarget) {
  std::string usb = root() + "/usb", off = root() + "/off";
  std::string conf = WriteConfig({{"usb", "url = file://" + usb, "mode = async", "exclude = *.tmp"},
                                  {"off", "url = file://" + off, "mode = async"}});
  Options o;
  o.args = {"--config", conf, "--retention", "0", "--prune-grace", "1s", "--prune-interval", "2s"};
  ASSERT_NO_FATAL_FAILURE(Mount(o));
  const std::string content = RandomBytes(100000, 31);
  const std::string chunk = history::ChunkKey(Sha256Hex(content));
  ASSERT_TRUE(it::WriteFile(mp("x.bin"), content));
  ASSERT_TRUE(it::WriteFile(mp("kept"), "kept"));
  ASSERT_TRUE(Flush(60));
  struct stat st;
  ASSERT_EQ(stat((usb + "/" + chunk).c_str(), &st), 0) << chunk;
  ASSERT_EQ(stat((off + "/" + chunk).c_str(), &st), 0) << chunk;
  ASSERT_EQ(unlink(mp("x.bin").c_str()), 0);
  ASSERT_TRUE(Flush(60));
  // Older than the grace, then pruned by each target's own task.
  bool pruned = false;
  for (int i = 0; i < 200 && !pruned; ++i) {
    pruned =
        stat((usb + "/" + chunk).c_str(), &st) != 0 && stat((off + "/" + chunk).c_str(), &st) != 0;
    if (!pruned) std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  EXPECT_NE(stat((usb + "/" + chunk).c_str(), &st), 0) << "usb's history was not pruned";
  EXPECT_NE(stat((off + "/" + chunk).c_str(), &st), 0) << "off's history was not pruned";

  // Behind the mount's back: a file usb excludes, and one for both.
  ASSERT_TRUE(it::WriteFile(data() + "/behind.tmp", "written behind the mount"));
  ASSERT_TRUE(it::WriteFile(data() + "/behind", "written behind the mount too"));
  it::RunResult r = Ctl({"--json", "rescan"});
  ASSERT_EQ(r.exit_code, 0) << r.Describe();
  auto j = nlohmann::json::parse(r.out, nullptr, false);
  ASSERT_TRUE(j.is_object() && j["targets"].is_array()) << r.out;
  ASSERT_EQ(j["targets"].size(), 2u) << r.out;
  EXPECT_EQ(j["targets"][0]["name"], "usb");
  EXPECT_EQ(j["targets"][0]["new"], 1) << "behind: " << r.out;
  EXPECT_EQ(j["targets"][1]["name"], "off");
  EXPECT_EQ(j["targets"][1]["new"], 1) << "behind.tmp, which usb excludes: " << r.out;
  ASSERT_TRUE(Flush(60));
  ASSERT_NO_FATAL_FAILURE(VerifyFileMirror(usb, ExpectedObjects(data(), {"behind.tmp"})));
  ASSERT_NO_FATAL_FAILURE(VerifyFileMirror(off, ExpectedObjects(data())));
  ASSERT_EQ(Unmount(), 0);
}

}  // namespace
}  // namespace scribefs::rep
