// `scribectl restore` end to end: the real daemon on a real mount replicates a
// tree to a file:// target, or (compiled with SCRIBEFS_RESTORE_S3) to the RGW
// that the CTest fixture "rgw" starts; the real scribectl binary restores it
// into an empty directory, and the restored tree must equal the source:
// content, modes, owners, mtimes, symlinks, empty and nested directories, a
// multipart file. Also: checkpoints (a versioned bucket restores overwritten
// files; an unversioned target names the paths that changed), resume, --path,
// the destination guard, Ctrl-C, and (S3 only) hostile keys put into the
// bucket by another client.
#include <fcntl.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <iostream>
#include <set>
#include <thread>
#include <utility>

#include "tests/control/control_util.h"
#include "uploader/digest.h"

namespace scribefs::ctltest {
namespace {

#ifdef SCRIBEFS_RESTORE_S3
constexpr bool kS3 = true;
#else
constexpr bool kS3 = false;
#endif

constexpr int64_t kT1 = 1700000000123456789;
constexpr int64_t kT2 = 1650000000000000007;

// What a restore must reproduce of one entry.
struct Node {
  char type = '?';  // f d l p
  mode_t mode = 0;  // permission bits
  uid_t uid = 0;
  gid_t gid = 0;
  uint64_t size = 0;
  int64_t mtime_ns = 0;  // files and symlinks (directories: see DirMtimesMatchTheTarget)
  std::string content;   // SHA-256 of a file, or a symlink's target
  bool operator==(const Node&) const = default;
};

std::string Describe(const Node& n) {
  char buf[256];
  snprintf(buf, sizeof buf, "%c mode=%o uid=%u gid=%u size=%llu mtime=%lld %s", n.type, n.mode,
           n.uid, n.gid, static_cast<unsigned long long>(n.size),
           static_cast<long long>(n.mtime_ns), n.content.substr(0, 16).c_str());
  return buf;
}

std::string FileSha(const std::string& path) {
  auto body = it::ReadFile(path);
  return body ? Sha256Hex(*body) : "(unreadable)";
}

std::map<std::string, Node> Snapshot(const std::string& root) {
  std::map<std::string, Node> out;
  for (const auto& [rel, st] : it::ListTree(root)) {
    if (rel == ".scribefs" || rel.rfind(".scribefs/", 0) == 0) continue;
    Node n;
    n.mode = st.st_mode & 07777;
    n.uid = st.st_uid;
    n.gid = st.st_gid;
    if (S_ISDIR(st.st_mode)) {
      n.type = 'd';
    } else if (S_ISLNK(st.st_mode)) {
      n.type = 'l';
      n.mode = 0;
      char buf[PATH_MAX];
      ssize_t len = readlink((root + "/" + rel).c_str(), buf, sizeof buf);
      n.content.assign(buf, len > 0 ? len : 0);
      n.mtime_ns = it::MtimeNs(st);
    } else if (S_ISFIFO(st.st_mode)) {
      n.type = 'p';
      n.mtime_ns = it::MtimeNs(st);
    } else {
      n.type = 'f';
      n.size = st.st_size;
      n.content = FileSha(root + "/" + rel);
      n.mtime_ns = it::MtimeNs(st);
    }
    out[rel] = n;
  }
  return out;
}

// Differences between two snapshots, one line each.
std::vector<std::string> Diff(const std::map<std::string, Node>& want,
                              const std::map<std::string, Node>& got) {
  std::vector<std::string> out;
  for (const auto& [p, n] : want) {
    auto it = got.find(p);
    if (it == got.end()) {
      out.push_back(p + ": missing");
    } else if (!(it->second == n)) {
      out.push_back(p + ": want " + Describe(n) + "\n      got  " + Describe(it->second));
    }
  }
  for (const auto& [p, n] : got)
    if (!want.count(p)) out.push_back(p + ": unexpected (" + Describe(n) + ")");
  return out;
}

std::string Lines(const std::vector<std::string>& v) {
  std::string out;
  for (size_t i = 0; i < v.size() && i < 30; ++i) out += "\n  " + v[i];
  return out;
}

bool SetMtime(const std::string& path, int64_t ns) {
  struct timespec t[2] = {{0, UTIME_OMIT}, {static_cast<time_t>(ns / 1000000000), ns % 1000000000}};
  return utimensat(AT_FDCWD, path.c_str(), t, AT_SYMLINK_NOFOLLOW) == 0;
}

class RestoreE2eTest : public it::MountTest {
 protected:
  // history: false mounts with --history off, so that a checkpoint is
  // restored from its manifest and the mirror only (the path a target
  // written without history takes).
  void MountWithTarget(bool versioned = false, bool history = true) {
    Options o;
    if (kS3) {
      s3_ = GetS3Server();
      ASSERT_TRUE(s3_.has_value());
      bucket_ = MakeBucket(*s3_, "scribefs-restore", versioned);
      ASSERT_FALSE(bucket_.empty());
      url_ = "s3://" + bucket_ + "/m";
      ExportCredentials(*s3_);
      o.args = {"--target", url_, "--endpoint", s3_->endpoint, "--region", s3_->region};
    } else {
      url_ = "file://" + root() + "/target";
      o.args = {"--target", url_};
    }
    o.args.insert(o.args.end(), {"--part-size", "5"});
    if (!history) o.args.insert(o.args.end(), {"--history", "off"});
    Mount(o);
  }
  RunResult Ctl(const std::vector<std::string>& args, double timeout_s = 120) {
    return Scribectl(state(), args, timeout_s);
  }
  // `scribectl --json restore ARGS`, its JSON answer (nullptr if none).
  json Restore(const std::vector<std::string>& args, int want_exit) {
    std::vector<std::string> a = {"--json", "restore"};
    a.insert(a.end(), args.begin(), args.end());
    RunResult r = Ctl(a);
    EXPECT_EQ(r.exit_code, want_exit) << r.Describe();
    if (r.out.empty()) return nullptr;
    return JsonOut(r);
  }
  void Flush() {
    RunResult r = Ctl({"flush", "--timeout", "60"});
    ASSERT_EQ(r.exit_code, 0) << r.Describe();
  }
  // Files of several sizes (one multipart at --part-size 5), modes, owners,
  // mtimes, symlinks, a FIFO, empty and nested directories.
  void MakeTree() {
    ASSERT_EQ(mkdir(mp("docs").c_str(), 0755), 0);
    ASSERT_EQ(mkdir(mp("docs/deep").c_str(), 0750), 0);
    ASSERT_EQ(mkdir(mp("docs/deep/er").c_str(), 0755), 0);
    ASSERT_EQ(mkdir(mp("empty").c_str(), 0700), 0);
    ASSERT_EQ(mkdir(mp("docs/deep/er/empty2").c_str(), 0755), 0);
    ASSERT_TRUE(it::WriteFile(mp("zero"), "", 0644));
    ASSERT_TRUE(it::WriteFile(mp("one"), "1", 0600));
    ASSERT_TRUE(it::WriteFile(mp("docs/a.txt"), "alpha\n", 0640));
    ASSERT_TRUE(it::WriteFile(mp("docs/deep/er/4k"), it::Pattern(4096, 1), 0644));
    ASSERT_TRUE(it::WriteFile(mp("docs/run.sh"), "#!/bin/sh\necho hi\n", 0755));
    ASSERT_TRUE(it::WriteFile(mp("mib"), it::Pattern(1 << 20, 2), 0644));
    ASSERT_TRUE(it::WriteFile(mp("big.bin"), it::Pattern(12 * 1024 * 1024 + 12345, 3), 0644));
    ASSERT_EQ(chmod(mp("docs/a.txt").c_str(), 0640), 0);
    ASSERT_EQ(chmod(mp("one").c_str(), 0600), 0);
    ASSERT_EQ(chown(mp("one").c_str(), 1234, 5678), 0);
    ASSERT_EQ(symlink("docs/a.txt", mp("rel-link").c_str()), 0);
    ASSERT_EQ(symlink("/etc/hostname", mp("abs-link").c_str()), 0);
    ASSERT_EQ(symlink("nowhere/at/all", mp("docs/dangling").c_str()), 0);
    ASSERT_EQ(mkfifo(mp("docs/fifo").c_str(), 0620), 0);
    ASSERT_TRUE(SetMtime(mp("docs/a.txt"), kT1));
    ASSERT_TRUE(SetMtime(mp("big.bin"), kT2));
  }
  std::string Dest(const std::string& name = "restored") const { return root() + "/" + name; }

  std::optional<S3Server> s3_;
  std::string bucket_, url_;
};

TEST_F(RestoreE2eTest, RoundTripReproducesTheTree) {
  MountWithTarget();
  if (HasFatalFailure()) return;
  MakeTree();
  if (HasFatalFailure()) return;
  Flush();
  auto want = Snapshot(data());
  ASSERT_EQ(want.size(), 16u);
  json j = Restore({"--to", Dest(), "--same-owner"}, 0);
  ASSERT_TRUE(j.is_object());
  EXPECT_EQ(j["restored"], 16) << j.dump();
  EXPECT_EQ(j["failed"].size(), 0u) << j.dump();
  EXPECT_EQ(j["target"], url_);
  EXPECT_GE(j["bytes"].get<uint64_t>(), 13u << 20);
  auto diff = Diff(want, Snapshot(Dest()));
  EXPECT_TRUE(diff.empty()) << "restored tree differs:" << Lines(diff);

  // Directory mtimes are what the target stores for them (the uploader
  // stores a directory's attributes when its mode or owner changes).
  auto store = OpenTarget(url_, s3_);
  ASSERT_NE(store, nullptr);
  for (const char* d : {"docs", "docs/deep", "empty", "docs/deep/er/empty2"}) {
    auto h = store->Head(std::string(d) + "/");
    ASSERT_TRUE(h.ok()) << d << ": " << h.status().ToString();
    struct stat st;
    ASSERT_EQ(lstat((Dest() + "/" + d).c_str(), &st), 0);
    EXPECT_EQ(std::to_string(it::MtimeNs(st)), h->metadata["scribefs-mtime-ns"]) << d;
  }
}

TEST_F(RestoreE2eTest, WorksWithoutTheDaemonFromTheTargetAlone) {
  MountWithTarget();
  if (HasFatalFailure()) return;
  MakeTree();
  if (HasFatalFailure()) return;
  Flush();
  auto want = Snapshot(data());
  ASSERT_EQ(Unmount(), 0);
  std::vector<std::string> argv = {ScribectlBin(), "restore", "--same-owner", "--to", Dest(),
                                   "--target",     url_};
  if (kS3) argv.insert(argv.end(), {"--endpoint", s3_->endpoint});
  unsetenv("SCRIBEFS_STATE_DIR");
  RunResult r = it::RunCommand(argv, 120);
  ASSERT_EQ(r.exit_code, 0) << r.Describe();
  EXPECT_NE(r.out.find("16 restored"), std::string::npos) << r.out;
  auto diff = Diff(want, Snapshot(Dest()));
  EXPECT_TRUE(diff.empty()) << Lines(diff);
}

// Whoever can write the target chooses the metadata. Objects claiming a
// set-user-ID root file, another user's set-user-ID file and /dev/mem's twin
// (char 1,1): by default restored as the user running scribectl (root here)
// without set-user-ID bits, the device left out and named; with --same-owner
// --special, as stored.
TEST_F(RestoreE2eTest, HostileMetadataGetsNoPrivilegeUnlessTrusted) {
  MountWithTarget();
  if (HasFatalFailure()) return;
  ASSERT_TRUE(it::WriteFile(mp("plain"), "plain", 0644));
  Flush();
  auto store = OpenTarget(url_, s3_);
  ASSERT_NE(store, nullptr);
  auto meta = [](mode_t mode, uid_t uid) {
    return Metadata{{"mode", std::to_string(mode)},
                    {"uid", std::to_string(uid)},
                    {"gid", std::to_string(uid)},
                    {"mtime", "1700000000"}};
  };
  const std::string sh = "#!/bin/sh\nid\n";
  ASSERT_TRUE(store->Put("suid-root", Payload::FromMemory(sh), meta(S_IFREG | 04755, 0)).ok());
  ASSERT_TRUE(store->Put("suid-other", Payload::FromMemory(sh), meta(S_IFREG | 04755, 4321)).ok());
  Metadata dev = meta(S_IFCHR | 0666, 0);
  dev["rdev"] = std::to_string(makedev(1, 1));
  ASSERT_TRUE(store->Put("mem", Payload::FromMemory(""), dev).ok());

  json j = Restore({"--to", Dest()}, 0);
  ASSERT_TRUE(j.is_object());
  EXPECT_EQ(j["failed"].size(), 0u) << j.dump();
  ASSERT_EQ(j["left_out"].size(), 1u) << j.dump();
  EXPECT_EQ(j["left_out"][0]["path"], "mem");
  EXPECT_NE(j["left_out"][0]["reason"].get<std::string>().find("--special"), std::string::npos);
  struct stat st;
  EXPECT_NE(lstat((Dest() + "/mem").c_str(), &st), 0) << "a device node was created";
  for (const char* p : {"suid-root", "suid-other"}) {
    ASSERT_EQ(lstat((Dest() + "/" + p).c_str(), &st), 0) << p;
    EXPECT_EQ(st.st_mode, S_IFREG | 0755u) << p;
    EXPECT_EQ(st.st_uid, geteuid()) << p;
  }
  // The human summary names it too.
  RunResult human = Ctl({"restore", "--to", Dest("human")});
  EXPECT_EQ(human.exit_code, 0) << human.Describe();
  EXPECT_NE(human.out.find("1 left out"), std::string::npos) << human.out;
  EXPECT_NE(human.out.find("LEFT OUT mem: a character device (1, 1)"), std::string::npos)
      << human.out;

  json t = Restore({"--to", Dest("trusted"), "--same-owner", "--special"}, 0);
  ASSERT_TRUE(t.is_object());
  EXPECT_EQ(t["failed"].size(), 0u) << t.dump();
  EXPECT_EQ(t["left_out"].size(), 0u) << t.dump();
  ASSERT_EQ(lstat((Dest("trusted") + "/suid-other").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode, S_IFREG | 04755u);
  EXPECT_EQ(st.st_uid, 4321u);
  ASSERT_EQ(lstat((Dest("trusted") + "/mem").c_str(), &st), 0);
  EXPECT_TRUE(S_ISCHR(st.st_mode));
  EXPECT_EQ(st.st_rdev, makedev(1, 1));
}

TEST_F(RestoreE2eTest, ResumeSkipsWhatIsThereAndRepairsWhatIsNot) {
  MountWithTarget();
  if (HasFatalFailure()) return;
  MakeTree();
  if (HasFatalFailure()) return;
  Flush();
  auto want = Snapshot(data());
  json first = Restore({"--to", Dest(), "--same-owner"}, 0);
  ASSERT_TRUE(first.is_object());
  json again = Restore({"--to", Dest(), "--same-owner"}, 0);
  ASSERT_TRUE(again.is_object());
  EXPECT_EQ(again["restored"], 0) << again.dump();
  EXPECT_EQ(again["skipped"], 16) << again.dump();
  EXPECT_LT(again["bytes"].get<uint64_t>(), 1024u) << "only symlink targets are read again";

  // Corrupt one file without changing its size or mtime, and remove another.
  std::string victim = Dest() + "/docs/deep/er/4k";
  struct stat st;
  ASSERT_EQ(stat(victim.c_str(), &st), 0);
  {
    int fd = open(victim.c_str(), O_WRONLY | O_CLOEXEC);
    ASSERT_GE(fd, 0);
    ASSERT_EQ(pwrite(fd, "CORRUPT", 7, 100), 7);
    close(fd);
  }
  struct timespec t[2] = {st.st_atim, st.st_mtim};
  ASSERT_EQ(utimensat(AT_FDCWD, victim.c_str(), t, 0), 0);
  ASSERT_EQ(unlink((Dest() + "/mib").c_str()), 0);
  json fix = Restore({"--to", Dest(), "--same-owner"}, 0);
  ASSERT_TRUE(fix.is_object());
  // The two files, and docs/deep/er whose mtime the repair changed (the root
  // directory has no attributes of its own to restore).
  EXPECT_EQ(fix["restored"], 3) << fix.dump();
  auto diff = Diff(want, Snapshot(Dest()));
  EXPECT_TRUE(diff.empty()) << Lines(diff);
}

TEST_F(RestoreE2eTest, PathLimitsTheRestore) {
  MountWithTarget();
  if (HasFatalFailure()) return;
  MakeTree();
  if (HasFatalFailure()) return;
  Flush();
  json j = Restore({"--to", Dest(), "--same-owner", "--path", "docs/deep"}, 0);
  ASSERT_TRUE(j.is_object());
  EXPECT_EQ(j["restored"], 4) << j.dump();  // deep/, deep/er/, 4k, empty2/
  std::set<std::string> names;
  for (const auto& [rel, st] : it::ListTree(Dest())) names.insert(rel);
  EXPECT_EQ(names, (std::set<std::string>{"docs", "docs/deep", "docs/deep/er", "docs/deep/er/4k",
                                          "docs/deep/er/empty2"}));
}

TEST_F(RestoreE2eTest, RefusesTheLiveMountAndItsDatadir) {
  MountWithTarget();
  if (HasFatalFailure()) return;
  ASSERT_TRUE(it::WriteFile(mp("f"), "x"));
  Flush();
  for (const std::string& to : {data(), mnt(), mnt("sub"), root()}) {
    RunResult r = Ctl({"restore", "--to", to});
    EXPECT_EQ(r.exit_code, 2) << to << ": " << r.Describe();
    EXPECT_NE(r.err.find("refusing to restore"), std::string::npos) << r.err;
  }
  EXPECT_FALSE(it::ReadFile(mnt("sub/f")).has_value()) << "nothing written";
  RunResult missing = Ctl({"restore"});
  EXPECT_EQ(missing.exit_code, 2) << "--to is required: " << missing.Describe();
}

TEST_F(RestoreE2eTest, CheckpointOfAnUnversionedTargetNamesWhatChanged) {
  MountWithTarget(/*versioned=*/false, /*history=*/false);
  if (HasFatalFailure()) return;
  ASSERT_TRUE(it::WriteFile(mp("same.txt"), "stays"));
  ASSERT_TRUE(it::WriteFile(mp("over.txt"), "before"));
  ASSERT_TRUE(it::WriteFile(mp("gone.txt"), "deleted later"));
  RunResult c = Ctl({"checkpoint", "cp1", "--wait"});
  ASSERT_EQ(c.exit_code, 0) << c.Describe();
  ASSERT_TRUE(it::WriteFile(mp("over.txt"), "after!"));
  ASSERT_EQ(unlink(mp("gone.txt").c_str()), 0);
  Flush();
  json j = Restore({"--to", Dest(), "--same-owner", "--checkpoint", "cp1"}, 1);
  ASSERT_TRUE(j.is_object());
  std::map<std::string, std::string> failed;
  for (const auto& f : j["failed"]) failed[f["path"]] = f["error"];
  EXPECT_EQ(failed.size(), 2u) << j.dump();
  EXPECT_NE(failed["over.txt"].find("changed in the target since checkpoint \"cp1\""),
            std::string::npos)
      << j.dump();
  EXPECT_NE(failed["gone.txt"].find("deleted from the target since checkpoint \"cp1\""),
            std::string::npos)
      << j.dump();
  EXPECT_EQ(it::ReadFile(Dest("restored/same.txt")), "stays");
  EXPECT_FALSE(it::ReadFile(Dest("restored/over.txt")).has_value()) << "nothing written for it";
}

#ifdef SCRIBEFS_RESTORE_S3
TEST_F(RestoreE2eTest, CheckpointOfAVersionedBucketRestoresTheTreeOfThatTime) {
  MountWithTarget(/*versioned=*/true);
  if (HasFatalFailure()) return;
  MakeTree();
  if (HasFatalFailure()) return;
  Flush();
  auto at_checkpoint = Snapshot(data());
  RunResult c = Ctl({"checkpoint", "before", "--wait"});
  ASSERT_EQ(c.exit_code, 0) << c.Describe();
  // Overwrite (small and multipart), delete, add, chmod, rename.
  ASSERT_TRUE(it::WriteFile(mp("docs/a.txt"), "changed content\n"));
  ASSERT_TRUE(it::WriteFile(mp("big.bin"), it::Pattern(6 * 1024 * 1024, 9)));
  ASSERT_EQ(unlink(mp("mib").c_str()), 0);
  ASSERT_TRUE(it::WriteFile(mp("new-file"), "new"));
  ASSERT_EQ(chmod(mp("docs/run.sh").c_str(), 0700), 0);
  ASSERT_EQ(rename(mp("zero").c_str(), mp("docs/zero-moved").c_str()), 0);
  ASSERT_EQ(unlink(mp("rel-link").c_str()), 0);
  ASSERT_EQ(symlink("elsewhere", mp("rel-link").c_str()), 0);
  Flush();
  json j = Restore({"--to", Dest(), "--same-owner", "--checkpoint", "before"}, 0);
  ASSERT_TRUE(j.is_object());
  EXPECT_EQ(j["failed"].size(), 0u) << j.dump();
  EXPECT_EQ(j["checkpoint"], "before");
  auto diff = Diff(at_checkpoint, Snapshot(Dest()));
  EXPECT_TRUE(diff.empty()) << "restored checkpoint differs from the tree at checkpoint time:"
                            << Lines(diff);
  // Resumable too: everything is skipped, nothing downloaded.
  json again = Restore({"--to", Dest(), "--same-owner", "--checkpoint", "before"}, 0);
  ASSERT_TRUE(again.is_object());
  EXPECT_EQ(again["restored"], 0) << again.dump();
  EXPECT_EQ(again["bytes"], 0) << again.dump();
}

// Keys put into the bucket by another client that would escape DIR.
TEST_F(RestoreE2eTest, HostileKeysAreRefusedAndNothingIsWrittenOutside) {
  MountWithTarget();
  if (HasFatalFailure()) return;
  ASSERT_TRUE(it::WriteFile(mp("good.txt"), "good"));
  Flush();
  std::string canary = root() + "/canary";
  ASSERT_EQ(mkdir(canary.c_str(), 0755), 0);
  std::string body = root() + "/body";
  ASSERT_TRUE(it::WriteFile(body, "evil"));
  std::string link_body = root() + "/link-body";
  ASSERT_TRUE(it::WriteFile(link_body, canary));
  // "m/" is the mount's prefix: these keys are m/../x etc.
  const std::vector<std::string> hostile = {"../x", "/etc/scribefs-restore-evil", "a/../../x",
                                            "a//b", "link/evil"};
  for (const auto& k : hostile) {
    RunResult r = Aws(*s3_, {"put-object", "--bucket", bucket_, "--key", "m/" + k, "--body", body});
    ASSERT_EQ(r.exit_code, 0) << k << ": " << r.Describe();
  }
  RunResult r = Aws(*s3_, {"put-object", "--bucket", bucket_, "--key", "m/link", "--body",
                           link_body, "--metadata", "mode=41471"});  // S_IFLNK | 0777
  ASSERT_EQ(r.exit_code, 0) << r.Describe();
  // What the server stored under those names (it may normalize some).
  auto store = OpenTarget(url_, s3_);
  ASSERT_NE(store, nullptr);
  auto listed = store->ListAll({});
  ASSERT_TRUE(listed.ok());
  std::set<std::string> keys;
  for (const auto& e : *listed) keys.insert(e.key);
  for (const auto& k : hostile) EXPECT_TRUE(keys.count(k)) << "the server did not keep " << k;

  std::string dest = root() + "/parent/dest";
  json j = Restore({"--to", dest}, 7);
  ASSERT_TRUE(j.is_object());
  std::set<std::string> refused;
  for (const auto& x : j["refused"]) refused.insert(x["key"]);
  for (const auto& k : hostile) EXPECT_TRUE(refused.count(k)) << k << " not refused: " << j.dump();
  EXPECT_EQ(j["failed"].size(), 0u) << j.dump();
  EXPECT_EQ(it::ReadFile(dest + "/good.txt"), "good");
  EXPECT_TRUE(it::ListTree(canary).empty()) << "written through the symlink";
  std::set<std::string> parent;
  for (const auto& [rel, st] : it::ListTree(root() + "/parent")) parent.insert(rel);
  EXPECT_EQ(parent, (std::set<std::string>{"dest", "dest/good.txt", "dest/link"}));
  struct stat st;
  EXPECT_NE(lstat("/etc/scribefs-restore-evil", &st), 0);
  EXPECT_NE(lstat((root() + "/x").c_str(), &st), 0);
}

// Ctrl-C in the middle: exit 130, no temporary file left, and every file
// under its real name is complete.
TEST_F(RestoreE2eTest, InterruptLeavesOnlyCompleteFiles) {
  MountWithTarget();
  if (HasFatalFailure()) return;
  ASSERT_EQ(mkdir(mp("many").c_str(), 0755), 0);
  for (int i = 0; i < 80; ++i)
    ASSERT_TRUE(it::WriteFile(mp("many/f" + std::to_string(i)), it::Pattern(512 * 1024, i)));
  Flush();
  auto want = Snapshot(data());
  pid_t pid = fork();
  if (pid == 0) {
    execl(ScribectlBin().c_str(), "scribectl", "--state-dir", state().c_str(), "restore", "--to",
          Dest().c_str(), "-j", "1", static_cast<char*>(nullptr));
    _exit(127);
  }
  ASSERT_GT(pid, 0);
  // Interrupt once the first files are in place.
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  while (it::ListTree(Dest() + "/many").size() < 3 && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  kill(pid, SIGINT);
  auto status = it::WaitChild(pid, 60);
  ASSERT_TRUE(status.has_value());
  EXPECT_TRUE(*status == 0 || *status == 130) << *status;
  printf("[ restore  ] exit status %d\n", *status);
  for (const auto& [rel, st] : it::ListTree(Dest())) {
    EXPECT_EQ(rel.find("scribefs-restore"), std::string::npos) << "temporary file left: " << rel;
    if (S_ISREG(st.st_mode)) {
      EXPECT_EQ(FileSha(Dest() + "/" + rel), want[rel].content) << rel << " is incomplete";
    }
  }
}
#endif

#ifndef SCRIBEFS_RESTORE_S3  // file:// only: 10,000 uploads to RGW would take minutes
// Runs argv with stdout and stderr to err_path; its exit status and its
// maximum resident set in KiB (wait4's rusage of that one child).
std::pair<int, long> RunMeasured(const std::vector<std::string>& argv,
                                 const std::string& err_path) {
  std::vector<char*> args;
  for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  pid_t pid = fork();
  if (pid == 0) {
    int fd = open(err_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd >= 0) {
      dup2(fd, 1);
      dup2(fd, 2);
    }
    execv(args[0], args.data());
    _exit(127);
  }
  int status = 0;
  struct rusage ru {};
  if (pid < 0 || wait4(pid, &status, 0, &ru) != pid) return {-1, 0};
  int code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  return {code, ru.ru_maxrss};
}

// A checkpoint of many paths: restore reads its manifest streamed (to a
// temporary file, then entry by entry), so restoring one path of it takes
// about the memory of a restore without a checkpoint, not that of the whole
// manifest parsed at once (its text and JSON tree: tens of MiB here).
TEST_F(RestoreE2eTest, ManifestOfManyPathsIsReadInBoundedMemory) {
  constexpr int kDirs = 6, kPerDir = 1000;
  // Made in DATADIR before the mount: the start-up scan journals them.
  const std::string tail(200, 'n');  // long names: a larger manifest per path
  ASSERT_EQ(mkdir(data("many").c_str(), 0755), 0);
  for (int d = 0; d < kDirs; ++d) {
    std::string dir = "many/d" + std::to_string(d);
    ASSERT_EQ(mkdir(data(dir).c_str(), 0755), 0);
    for (int i = 0; i < kPerDir; ++i)
      ASSERT_TRUE(it::WriteFile(data(dir + "/f" + std::to_string(i) + "-" + tail), "", 0644));
  }
  MountWithTarget();
  if (HasFatalFailure()) return;
  Flush();
  if (HasFatalFailure()) return;
  RunResult c = Ctl({"checkpoint", "many", "--wait"}, 120);
  ASSERT_EQ(c.exit_code, 0) << c.Describe();
  const std::string one = "many/d3/f7-" + tail;
  auto run = [&](const std::string& to, bool checkpoint) {
    std::vector<std::string> argv = {ScribectlBin(), "--state-dir", state(), "restore",
                                     "--to",         Dest(to),      "--path", one};
    if (checkpoint) argv.insert(argv.end(), {"--checkpoint", "many"});
    auto [code, kib] = RunMeasured(argv, root() + "/" + to + ".log");
    EXPECT_EQ(code, 0) << it::ReadFile(root() + "/" + to + ".log").value_or("");
    EXPECT_TRUE(it::ReadFile(Dest(to) + "/" + one).has_value()) << to;
    return kib;
  };
  long plain = run("plain", false);
  long from_manifest = run("from-manifest", true);
  std::cout << "max RSS of scribectl restore: " << from_manifest << " KiB with the manifest, "
            << plain << " KiB without\n";
  // The whole-document parse took some 17 MiB more than the plain restore
  // here (28 MiB with 10,000 paths of 150-character names).
  EXPECT_LT(from_manifest, plain + 8 * 1024)
      << "max RSS: " << from_manifest << " KiB with the manifest of " << kDirs * kPerDir
      << " paths, " << plain << " KiB without";
}
#endif

}  // namespace
}  // namespace scribefs::ctltest
