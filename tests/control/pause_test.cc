// Pause points on a real mount, driven with scribectl: writer processes
// started while paused do not complete their write/create/rename/unlink until
// the resume (nothing reaches DATADIR meanwhile), while reads and ls go on;
// the auto-thaw; pauses that do not nest; an unmount (SIGTERM) while paused.
#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <memory>
#include <thread>

#include "tests/control/control_util.h"

namespace scribefs::ctltest {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

double SecondsSince(Clock::time_point t) {
  return std::chrono::duration<double>(Clock::now() - t).count();
}

json Detail(const Record& r) {
  json d = json::parse(r.detail, nullptr, false);
  return d.is_object() ? d : json::object();
}

const Record* Last(const std::vector<Record>& rs, Op op) {
  const Record* out = nullptr;
  for (const auto& r : rs)
    if (r.op == op) out = &r;
  return out;
}

int64_t FirstSeq(const std::vector<Record>& rs, Op op, const std::string& path) {
  for (const auto& r : rs)
    if (r.op == op && r.path == path) return r.seq;
  return 0;
}

// Child bodies: plain syscalls only (they run after fork()).
int WriteExisting(const char* path) {
  int fd = open(path, O_WRONLY);
  if (fd < 0) return errno;
  if (write(fd, "CHANGED", 7) != 7) return errno;
  return close(fd) == 0 ? 0 : errno;
}
int CreateNew(const char* path) {
  int fd = open(path, O_WRONLY | O_CREAT | O_EXCL, 0644);
  if (fd < 0) return errno;
  if (write(fd, "new", 3) != 3) return errno;
  return close(fd) == 0 ? 0 : errno;
}

class PauseTest : public it::MountTest {
 protected:
  void SetUp() override {
    MountTest::SetUp();
    if (HasFatalFailure()) return;
    for (const char* d : {"a", "b", "c", "d", "r"}) ASSERT_EQ(mkdir(data(d).c_str(), 0755), 0);
    ASSERT_TRUE(it::WriteFile(data("a/existing"), "original"));
    ASSERT_TRUE(it::WriteFile(data("c/x"), "x"));
    ASSERT_TRUE(it::WriteFile(data("d/z"), "z"));
    for (int i = 0; i < 5; ++i)
      ASSERT_TRUE(it::WriteFile(data("r/f" + std::to_string(i)), "read me " + std::to_string(i)));
    Mount();
  }
  RunResult Ctl(const std::vector<std::string>& args, double timeout_s = 60) {
    return Scribectl(state(), args, timeout_s);
  }
  // A read-only command that must finish quickly during the pause.
  void ExpectQuick(const std::vector<std::string>& argv, const std::string& expect_in_out = "") {
    auto t = Clock::now();
    RunResult r = it::RunCommand(argv, 10);
    EXPECT_FALSE(r.timed_out) << argv[0] << " " << argv.back() << " blocked during the pause";
    EXPECT_EQ(r.exit_code, 0) << argv[0] << " " << argv.back() << ": " << r.Describe();
    EXPECT_LT(SecondsSince(t), 2.0) << argv[0] << " " << argv.back() << " was slowed down";
    if (!expect_in_out.empty()) {
      EXPECT_NE(r.out.find(expect_in_out), std::string::npos) << r.Describe();
    }
  }
};

TEST_F(PauseTest, WritersWaitForResumeWhileReadsContinue) {
  RunResult p = Ctl({"pause", "--timeout", "60"});
  ASSERT_EQ(p.exit_code, 0) << p.Describe();
  // Paths computed before fork.
  std::string existing = mp("a/existing"), created = mp("b/new"), from = mp("c/x"), to = mp("c/y"),
              gone = mp("d/z");
  Child writer([&] { return WriteExisting(existing.c_str()); });
  Child creator([&] { return CreateNew(created.c_str()); });
  Child renamer([&] { return rename(from.c_str(), to.c_str()) == 0 ? 0 : errno; });
  Child unlinker([&] { return unlink(gone.c_str()) == 0 ? 0 : errno; });
  std::this_thread::sleep_for(1s);
  EXPECT_FALSE(writer.Exited()) << "write+close completed during the pause";
  EXPECT_FALSE(creator.Exited()) << "create completed during the pause";
  EXPECT_FALSE(renamer.Exited()) << "rename completed during the pause";
  EXPECT_FALSE(unlinker.Exited()) << "unlink completed during the pause";
  // Nothing reached DATADIR.
  EXPECT_EQ(it::ReadFile(data("a/existing")).value_or("?"), "original");
  struct stat st;
  EXPECT_NE(lstat(data("b/new").c_str(), &st), 0);
  EXPECT_EQ(lstat(data("c/x").c_str(), &st), 0);
  EXPECT_NE(lstat(data("c/y").c_str(), &st), 0);
  EXPECT_EQ(lstat(data("d/z").c_str(), &st), 0);

  // Reads, stat and ls are not held. (Not checked, see README "Pause
  // points": a directory whose create/rename/unlink waits stays locked by
  // the kernel, and close(2) of a file whose cached writes wait, waits too.)
  ExpectQuick({"cat", mp("r/f3")}, "read me 3");
  ExpectQuick({"ls", "-la", mp()}, "r");
  ExpectQuick({"ls", "-la", mp("r")}, "f4");
  ExpectQuick({"ls", "-la", mp("a")}, "existing");
  ExpectQuick({"stat", mp("a/existing")});
  ExpectQuick({"find", mp("r")});
  ExpectQuick({"sh", "-c", "for f in " + mp("r") + "/*; do cat $f; done"}, "read me 0");
  json status = JsonOut(Ctl({"--json", "status"}));
  ASSERT_TRUE(status.is_object());
  EXPECT_EQ(status["daemon"]["pause"]["paused"], true);
  EXPECT_GE(status["daemon"]["pause"]["held_ops"].get<int>(), 4) << status.dump();

  RunResult r = Ctl({"resume"});
  ASSERT_EQ(r.exit_code, 0) << r.Describe();
  for (Child* c : {&writer, &creator, &renamer, &unlinker}) {
    auto s = c->Wait(10);
    ASSERT_TRUE(s.has_value()) << "a held operation did not complete after the resume";
    EXPECT_EQ(*s, 0) << strerror(*s);
  }
  EXPECT_EQ(it::ReadFile(data("a/existing")).value_or("?").substr(0, 7), "CHANGED");
  EXPECT_EQ(it::ReadFile(data("b/new")).value_or("?"), "new");
  EXPECT_EQ(lstat(data("c/y").c_str(), &st), 0);
  EXPECT_NE(lstat(data("d/z").c_str(), &st), 0);

  ASSERT_EQ(Unmount(), 0);
  auto rs = Records();
  const Record* pause = Last(rs, Op::kPause);
  const Record* resume = Last(rs, Op::kResume);
  ASSERT_TRUE(pause && resume);
  EXPECT_EQ(Detail(*resume)["reason"], "command");
  EXPECT_GE(Detail(*resume)["held_ops"].get<int>(), 4);
  // Every held change is journaled after the resume.
  for (auto [op, path] : std::vector<std::pair<Op, std::string>>{
           {Op::kCreate, "b/new"}, {Op::kRename, "c/x"}, {Op::kUnlink, "d/z"}}) {
    int64_t seq = FirstSeq(rs, op, path);
    EXPECT_GT(seq, resume->seq) << OpName(op) << " " << path;
  }
  bool wrote_after = false;
  for (const auto& rec : rs)
    if (rec.path == "a/existing" && rec.op == Op::kWrite) wrote_after |= rec.seq > resume->seq;
  EXPECT_TRUE(wrote_after) << "the held write is not journaled after the resume";
  for (const auto& rec : rs)
    if (rec.seq > pause->seq && rec.seq < resume->seq)
      ADD_FAILURE() << "a record between pause and resume: " << it::Dump(rec);
}

TEST_F(PauseTest, HeldOperationsDoNotTakeTheWorkerThreads) {
  // Two FUSE worker threads, eight held writers: reads still get served,
  // because held requests are queued, not parked on a worker.
  ASSERT_EQ(Unmount(), 0);
  // One directory each: creates in one directory would queue on its lock in
  // the kernel and never reach the daemon together.
  for (int i = 0; i < 8; ++i) ASSERT_EQ(mkdir(data("m" + std::to_string(i)).c_str(), 0755), 0);
  Options o;
  o.args = {"--threads", "2"};
  Mount(o);
  ASSERT_EQ(Ctl({"pause", "--timeout", "60"}).exit_code, 0);
  std::vector<std::string> paths;
  for (int i = 0; i < 8; ++i) paths.push_back(mp("m" + std::to_string(i) + "/new"));
  std::vector<std::unique_ptr<Child>> writers;
  for (const auto& p : paths)
    writers.push_back(std::make_unique<Child>([&p] { return CreateNew(p.c_str()); }));
  std::this_thread::sleep_for(500ms);
  for (auto& w : writers) EXPECT_FALSE(w->Exited());
  json st = JsonOut(Ctl({"--json", "status"}));
  ASSERT_TRUE(st.is_object());
  EXPECT_EQ(st["daemon"]["pause"]["held_ops"], 8) << st.dump();
  for (int i = 0; i < 5; ++i) ExpectQuick({"cat", mp("r/f" + std::to_string(i))}, "read me");
  ExpectQuick({"ls", mp("r")}, "f0");
  ASSERT_EQ(Ctl({"resume"}).exit_code, 0);
  for (auto& w : writers) {
    auto s = w->Wait(10);
    ASSERT_TRUE(s.has_value());
    EXPECT_EQ(*s, 0);
  }
  for (int i = 0; i < 8; ++i)
    EXPECT_EQ(it::ReadFile(data("m" + std::to_string(i) + "/new")).value_or("?"), "new");
}

TEST_F(PauseTest, AutoThawAfterTimeout) {
  auto start = Clock::now();
  RunResult p = Ctl({"pause", "--timeout", "2"});
  ASSERT_EQ(p.exit_code, 0) << p.Describe();
  std::string created = mp("b/late");
  Child creator([&] { return CreateNew(created.c_str()); });
  std::this_thread::sleep_for(1s);
  EXPECT_FALSE(creator.Exited()) << "create completed 1 s into a 2 s pause";
  auto s = creator.Wait(10);
  ASSERT_TRUE(s.has_value()) << "writer still held long after the timeout";
  EXPECT_EQ(*s, 0);
  double took = SecondsSince(start);
  EXPECT_GE(took, 1.8);
  EXPECT_LT(took, 6.0);
  RunResult r = Ctl({"resume"});
  EXPECT_EQ(r.exit_code, 1) << "resume after the auto-thaw: " << r.Describe();
  ASSERT_EQ(Unmount(), 0);
  auto rs = Records();
  const Record* resume = Last(rs, Op::kResume);
  ASSERT_NE(resume, nullptr);
  EXPECT_EQ(Detail(*resume)["reason"], "timeout") << it::Dump(*resume);
  EXPECT_GT(FirstSeq(rs, Op::kCreate, "b/late"), resume->seq);
}

TEST_F(PauseTest, PausesDoNotNest) {
  ASSERT_EQ(Ctl({"pause"}).exit_code, 0);
  RunResult again = Ctl({"--json", "pause"});
  EXPECT_EQ(again.exit_code, 1) << again.Describe();
  json j = JsonOut(again);
  EXPECT_EQ(j["ok"], false);
  EXPECT_EQ(j["code"], "paused");
  EXPECT_NE(again.err.find("already paused"), std::string::npos) << again.err;
  EXPECT_EQ(Ctl({"resume"}).exit_code, 0);
  EXPECT_EQ(Ctl({"resume"}).exit_code, 1) << "resume when not paused";
  // Bad timeouts are usage errors (scribectl) or refused (daemon).
  EXPECT_EQ(Ctl({"pause", "--timeout", "0"}).exit_code, 2);
  RunResult too_long = Ctl({"pause", "--timeout", "999999"});
  EXPECT_EQ(too_long.exit_code, 2) << too_long.Describe();
  // Nothing is left paused.
  EXPECT_EQ(JsonOut(Ctl({"--json", "status"}))["daemon"]["pause"]["paused"], false);
}

TEST_F(PauseTest, MaxPauseIsConfigurable) {
  ASSERT_EQ(Unmount(), 0);
  Options o;
  o.args = {"--max-pause", "5"};
  Mount(o);
  EXPECT_EQ(Ctl({"pause", "--timeout", "6"}).exit_code, 2);
  EXPECT_EQ(Ctl({"pause", "--timeout", "5"}).exit_code, 0);
  EXPECT_EQ(Ctl({"resume"}).exit_code, 0);
}

TEST_F(PauseTest, UnmountWhilePausedReleasesHeldOperations) {
  ASSERT_EQ(Ctl({"pause", "--timeout", "120"}).exit_code, 0);
  // One operation (a write after the create would find the session gone:
  // SIGTERM ends serving once the held operations are answered).
  std::string created = mp("b/held");
  Child creator([&] { return mkdir(created.c_str(), 0755) == 0 ? 0 : errno; });
  std::this_thread::sleep_for(500ms);
  ASSERT_FALSE(creator.Exited());
  auto t = Clock::now();
  ASSERT_EQ(kill(daemon_pid(), SIGTERM), 0);
  auto s = creator.Wait(20);
  ASSERT_TRUE(s.has_value()) << "the held create is still waiting after SIGTERM";
  EXPECT_EQ(*s, 0) << strerror(*s);
  EXPECT_EQ(Unmount(), 0) << "daemon exit status";
  EXPECT_LT(SecondsSince(t), 20);
  auto rs = Records();
  const Record* resume = Last(rs, Op::kResume);
  ASSERT_NE(resume, nullptr);
  EXPECT_EQ(Detail(*resume)["reason"], "unmount");
  struct stat st;
  EXPECT_EQ(stat(data("b/held").c_str(), &st), 0);
  EXPECT_TRUE(S_ISDIR(st.st_mode));
}

}  // namespace
}  // namespace scribefs::ctltest
