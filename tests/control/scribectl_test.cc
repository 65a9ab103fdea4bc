// scribectl's control commands against a real daemon: every command's --json
// output parses (success and failure), the exit codes (4 daemon not running,
// 3 no state, 2 bad name, 1 failure), --help for each command, and the
// checkpoint hooks (--pre failing means no checkpoint; --post always runs and
// sees the result).
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <fstream>

#include "tests/control/control_util.h"

namespace scribefs::ctltest {
namespace {

const std::vector<std::string> kCommands = {"status", "pause", "resume", "checkpoint",
                                            "checkpoints", "flush", "retry", "rescan"};

class ScribectlTest : public it::MountTest {
 protected:
  void MountWithTarget() {
    Options o;
    o.args = {"--target", "file://" + root() + "/target"};
    Mount(o);
  }
  RunResult Ctl(const std::vector<std::string>& args, double timeout_s = 60) {
    return Scribectl(state(), args, timeout_s);
  }
};

TEST_F(ScribectlTest, EveryCommandsJsonParses) {
  MountWithTarget();
  ASSERT_TRUE(it::WriteFile(mp("file"), "content"));
  struct Case {
    std::vector<std::string> args;
    int exit_code;
    std::vector<std::string> keys;
  } cases[] = {
      {{"status"}, 0, {"running", "daemon", "journal"}},
      {{"flush", "--timeout", "30"}, 0, {"ok", "seq", "waited_ms"}},
      {{"pause", "--timeout", "30"}, 0, {"ok", "seq", "drain_ms", "until_ns"}},
      {{"pause"}, 1, {"ok", "error", "code"}},  // already paused
      {{"resume"}, 0, {"ok", "seq", "held_ms", "held_ops"}},
      {{"resume"}, 1, {"ok", "error"}},  // not paused
      {{"checkpoint", "first"}, 0, {"ok", "name", "seq", "paths", "held_ms", "manifest_key"}},
      {{"checkpoint", "first"}, 1, {"ok", "error"}},  // duplicate
      {{"checkpoints"}, 0, {"journal", "target"}},
      {{"retry"}, 0, {"ok", "requeued"}},
      {{"stats"}, 0, {"records", "pending_records"}},
  };
  for (const auto& c : cases) {
    std::vector<std::string> args = {"--json"};
    args.insert(args.end(), c.args.begin(), c.args.end());
    RunResult r = Ctl(args);
    std::string what = c.args[0] + (c.args.size() > 1 ? " " + c.args[1] : "");
    EXPECT_EQ(r.exit_code, c.exit_code) << what << ": " << r.Describe();
    json j = JsonOut(r);
    ASSERT_TRUE(j.is_object()) << what;
    for (const auto& k : c.keys)
      EXPECT_TRUE(j.contains(k)) << what << " lacks " << k << ": " << r.out;
  }
  json st = JsonOut(Ctl({"--json", "status"}));
  EXPECT_EQ(st["running"], true);
  EXPECT_EQ(st["daemon"]["target"], "file://" + root() + "/target");
  EXPECT_EQ(st["journal"]["last_checkpoint"]["name"], "first");
  // The human forms work too.
  for (const auto& cmd : {"status", "checkpoints"}) {
    RunResult r = Ctl({cmd});
    EXPECT_EQ(r.exit_code, 0) << cmd << ": " << r.Describe();
    EXPECT_FALSE(r.out.empty());
  }
}

TEST_F(ScribectlTest, HelpForEachCommand) {
  for (const auto& cmd : kCommands) {
    RunResult r = it::RunCommand({ScribectlBin(), cmd, "--help"});
    EXPECT_EQ(r.exit_code, 0) << cmd << ": " << r.Describe();
    EXPECT_NE(r.out.find("--json"), std::string::npos) << cmd << " --help does not mention --json";
    EXPECT_NE(r.out.find("Exit codes"), std::string::npos) << cmd;
  }
}

TEST_F(ScribectlTest, ExitCodeWhenTheDaemonIsNotRunning) {
  MountWithTarget();
  ASSERT_EQ(Unmount(), 0);  // state and journal remain, no daemon
  for (const auto& cmd : kCommands) {
    std::vector<std::string> args = {cmd};
    if (cmd == "checkpoint") args.push_back("cp");
    RunResult r = Ctl(args);
    EXPECT_EQ(r.exit_code, 4) << cmd << ": " << r.Describe();
    EXPECT_NE(r.err.find("not running"), std::string::npos) << cmd << ": " << r.err;
    args.insert(args.begin(), "--json");
    r = Ctl(args);
    EXPECT_EQ(r.exit_code, 4) << cmd << " --json: " << r.Describe();
  }
  // status and checkpoints still show what the journal knows.
  json st = JsonOut(Ctl({"--json", "status"}));
  EXPECT_EQ(st["running"], false);
  EXPECT_TRUE(st["journal"].is_object());
  // No state at all: exit 3.
  RunResult r = Scribectl(root() + "/no-such-state", {"status"});
  EXPECT_EQ(r.exit_code, 3) << r.Describe();
}

TEST_F(ScribectlTest, CheckpointNamesAndTargets) {
  Mount();  // journal only: no target
  RunResult r = Ctl({"--json", "checkpoint", "nightly"});
  EXPECT_EQ(r.exit_code, 1) << r.Describe();
  EXPECT_EQ(JsonOut(r)["code"], "no_target");
  ASSERT_EQ(Unmount(), 0);
  MountWithTarget();
  for (const std::string& bad :
       std::vector<std::string>{"../x", "a/b", ".hidden", "", "sp ace", std::string(101, 'n')}) {
    r = Ctl({"checkpoint", bad});
    EXPECT_EQ(r.exit_code, 2) << "'" << bad << "': " << r.Describe();
  }
  EXPECT_EQ(Ctl({"checkpoint", std::string(100, 'n')}).exit_code, 0);
  EXPECT_EQ(Ctl({"checkpoint", "v1.2_final-3", "--wait"}).exit_code, 0);
  struct stat st;
  EXPECT_EQ(stat((root() + "/target/.scribefs/checkpoints/v1.2_final-3.json").c_str(), &st), 0);
}

TEST_F(ScribectlTest, Hooks) {
  MountWithTarget();
  std::string log = root() + "/hooks.log";
  auto hook = [&](const std::string& what) {
    return "echo " + what + " $SCRIBEFS_HOOK $SCRIBEFS_CHECKPOINT $SCRIBEFS_CHECKPOINT_RESULT >> " +
           log;
  };
  // --pre fails: no checkpoint, --post runs and sees "failed".
  RunResult r = Ctl(
      {"--json", "checkpoint", "h1", "--pre", hook("pre") + "; exit 3", "--post", hook("post")});
  EXPECT_EQ(r.exit_code, 1) << r.Describe();
  json j = JsonOut(r);
  EXPECT_EQ(j["ok"], false);
  EXPECT_EQ(j["pre_exit"], 3);
  EXPECT_EQ(j["post_exit"], 0);
  EXPECT_EQ(it::ReadFile(log).value_or(""), "pre pre h1\npost post h1 failed\n");
  EXPECT_EQ(JsonOut(Ctl({"--json", "checkpoints"}))["journal"].size(), 0u) << "checkpoint taken";
  // Success: pre, checkpoint, post in this order; hook output stays off stdout.
  unlink(log.c_str());
  r = Ctl({"--json", "checkpoint", "h2", "--wait", "--pre", hook("pre") + "; echo noise", "--post",
           hook("post")});
  EXPECT_EQ(r.exit_code, 0) << r.Describe();
  j = JsonOut(r);
  EXPECT_EQ(j["ok"], true);
  EXPECT_NE(r.err.find("noise"), std::string::npos) << "hook output should go to stderr";
  EXPECT_EQ(it::ReadFile(log).value_or(""), "pre pre h2\npost post h2 ok\n");
  // The pause was over when --post ran.
  // A failing --post turns success into exit 1 (the checkpoint exists).
  r = Ctl({"checkpoint", "h3", "--wait", "--post", "exit 7"});
  EXPECT_EQ(r.exit_code, 1) << r.Describe();
  EXPECT_NE(r.err.find("post"), std::string::npos);
  j = JsonOut(Ctl({"--json", "checkpoints"}));
  EXPECT_EQ(j["journal"].size(), 2u) << j.dump();
  EXPECT_EQ(j["target"].size(), 2u) << j.dump();
}

TEST_F(ScribectlTest, CheckpointInsideAPauseKeepsThePause) {
  MountWithTarget();
  ASSERT_TRUE(it::WriteFile(mp("f"), "x"));
  ASSERT_EQ(Ctl({"pause"}).exit_code, 0);
  RunResult r = Ctl({"--json", "checkpoint", "within"});
  ASSERT_EQ(r.exit_code, 0) << r.Describe();
  json j = JsonOut(r);
  EXPECT_TRUE(j.contains("within_pause")) << j.dump();
  EXPECT_EQ(JsonOut(Ctl({"--json", "status"}))["daemon"]["pause"]["paused"], true)
      << "a checkpoint taken inside a pause must leave the pause in place";
  EXPECT_EQ(Ctl({"resume"}).exit_code, 0);
}

TEST_F(ScribectlTest, FlushAndCheckpointTimeOutWithExitCode5) {
  // A target that never answers: uploads are retried without end.
  setenv("AWS_ACCESS_KEY_ID", "test", 1);
  setenv("AWS_SECRET_ACCESS_KEY", "test", 1);
  Options o;
  o.args = {"--target", "s3://bucket", "--endpoint", "http://127.0.0.1:9"};
  Mount(o);
  ASSERT_TRUE(it::WriteFile(mp("f"), "x"));
  RunResult r = Ctl({"--json", "flush", "--timeout", "2"});
  EXPECT_EQ(r.exit_code, 5) << r.Describe();
  json j = JsonOut(r);
  EXPECT_EQ(j["ok"], false);
  EXPECT_EQ(j["code"], "timeout");
  auto t = std::chrono::steady_clock::now();
  // The checkpoint is captured at once; --wait gives up waiting for it to
  // be stored (it stays captured).
  r = Ctl({"--json", "checkpoint", "never", "--wait", "--timeout", "2"});
  EXPECT_EQ(r.exit_code, 5) << r.Describe();
  EXPECT_EQ(JsonOut(r)["state"], "captured") << r.Describe();
  EXPECT_LT(std::chrono::steady_clock::now() - t, std::chrono::seconds(40));
  // Writes go on, nothing recorded.
  EXPECT_TRUE(it::WriteFile(mp("g"), "y"));
  j = JsonOut(Ctl({"--json", "status"}));
  EXPECT_EQ(j["daemon"]["pause"]["paused"], false);
  EXPECT_TRUE(j["journal"]["last_checkpoint"].is_null());
}

// The daemon's messages name its request fields (timeout_s); what a person
// reads names the option they typed (--timeout). With --json the error is a
// JSON object on stderr as well.
TEST_F(ScribectlTest, ErrorsNameOptionsNotJsonFields) {
  MountWithTarget();
  for (const std::string cmd : {"pause", "checkpoint"}) {
    std::vector<std::string> args = {cmd, "--timeout", "999999"};
    if (cmd == "checkpoint") args.push_back("big");
    RunResult r = Ctl(args);
    EXPECT_EQ(r.exit_code, 2) << r.Describe();  // above --max-pause: a usage error
    EXPECT_NE(r.err.find("--timeout must be > 0 and at most"), std::string::npos) << r.err;
    EXPECT_EQ(r.err.find("timeout_s"), std::string::npos) << r.err;
    args.insert(args.begin(), "--json");
    r = Ctl(args);
    json e = json::parse(r.err.substr(0, r.err.find('\n')), nullptr, false);
    ASSERT_TRUE(e.is_object()) << r.err;
    EXPECT_EQ(e["exit_code"], 2);
    EXPECT_NE(e["error"].get<std::string>().find("--timeout"), std::string::npos) << r.err;
  }
}

// A journal-only mount (no --target) says so instead of showing its records
// as pending and ageing forever.
TEST_F(ScribectlTest, JournalOnlyStatusSaysNoTarget) {
  Mount();
  ASSERT_TRUE(it::WriteFile(mp("file"), "content"));
  RunResult r = Ctl({"status"});
  ASSERT_EQ(r.exit_code, 0) << r.Describe();
  EXPECT_NE(r.out.find("no target (journal only)"), std::string::npos) << r.out;
  EXPECT_EQ(r.out.find("oldest"), std::string::npos) << r.out;
}

}  // namespace
}  // namespace scribefs::ctltest
