// scribectl verify on a tree the real uploader produced: mount, write through
// the mount, scribectl flush, unmount; then tamper with the target (through
// an ObjectStore, and with the AWS CLI on S3) and with DATADIR behind the
// daemon's back, and check that verify names every difference. Runs against a
// file:// target, or (compiled with SCRIBEFS_VERIFY_S3) against the RGW the
// CTest fixture "rgw" starts, with a key prefix.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <set>

#include "tests/control/control_util.h"

namespace scribefs::ctltest {
namespace {

#ifdef SCRIBEFS_VERIFY_S3
constexpr bool kS3 = true;
#else
constexpr bool kS3 = false;
#endif

constexpr int kExitDifferences = 6;

std::set<std::string> Strings(const json& arr) {
  std::set<std::string> out;
  if (arr.is_array())
    for (const auto& v : arr) out.insert(v.is_string() ? v.get<std::string>() : v.dump());
  return out;
}

// path -> reason of the "different" array.
std::map<std::string, std::string> Reasons(const json& j) {
  std::map<std::string, std::string> out;
  if (j.contains("different"))
    for (const auto& d : j["different"]) out[d.value("path", "")] = d.value("reason", "");
  return out;
}

class VerifyTest : public it::MountTest {
 protected:
  // Mounts data() on mnt() replicating to a fresh target, with --exclude cache.
  void MountWithTarget() {
    Options o;
    if (kS3) {
      s3_ = GetS3Server();
      ASSERT_TRUE(s3_.has_value());
      bucket_ = MakeBucket(*s3_, "scribefs-verify", false);
      ASSERT_FALSE(bucket_.empty());
      url_ = "s3://" + bucket_ + "/m";
      ExportCredentials(*s3_);
      o.args = {"--target", url_, "--endpoint", s3_->endpoint, "--region", s3_->region};
    } else {
      url_ = "file://" + root() + "/target";
      o.args = {"--target", url_};
    }
    o.args.insert(o.args.end(), {"--exclude", "cache"});
    Mount(o);
    store_ = OpenTarget(url_, s3_);
    ASSERT_NE(store_, nullptr);
  }
  RunResult Ctl(const std::vector<std::string>& args, double timeout_s = 120) {
    return Scribectl(state(), args, timeout_s);
  }
  // verify --json with extra args; checks the exit code and returns the JSON.
  json VerifyJson(const std::vector<std::string>& extra, int want_exit) {
    std::vector<std::string> args = {"--json", "verify"};
    args.insert(args.end(), extra.begin(), extra.end());
    RunResult r = Ctl(args);
    EXPECT_EQ(r.exit_code, want_exit) << r.Describe() << "\nstdout: " << r.out;
    return JsonOut(r);
  }
  // Removes one object with the AWS CLI on S3 (an independent client), else the store.
  void DeleteObject(const std::string& key) {
    if (kS3) {
      RunResult r = Aws(*s3_, {"delete-object", "--bucket", bucket_, "--key", "m/" + key});
      ASSERT_EQ(r.exit_code, 0) << r.Describe();
    } else {
      ASSERT_TRUE(store_->Delete(key).ok());
    }
  }

  // The tree every test starts from, written through the mount and uploaded.
  void MakeTree() {
    ASSERT_TRUE(it::WriteFile(mp("a.txt"), "alpha\n"));
    ASSERT_EQ(mkdir(mp("docs").c_str(), 0755), 0);
    ASSERT_TRUE(it::WriteFile(mp("docs/b.txt"), "bravo\n"));
    ASSERT_TRUE(it::WriteFile(mp("docs/c.txt"), "charlie\n"));
    ASSERT_TRUE(it::WriteFile(mp("same.bin"), it::Pattern(300000, 1)));
    ASSERT_TRUE(it::WriteFile(mp("grow.txt"), "grow\n"));
    ASSERT_TRUE(it::WriteFile(mp("mode.txt"), "mode\n"));
    ASSERT_TRUE(it::WriteFile(mp("kind"), "a file for now\n"));
    ASSERT_TRUE(it::WriteFile(mp("empty.txt"), ""));
    ASSERT_EQ(symlink("a.txt", mp("link").c_str()), 0);
    ASSERT_EQ(mkdir(mp("empty").c_str(), 0750), 0);
    ASSERT_EQ(mkfifo(mp("fifo").c_str(), 0640), 0);
    // Excluded: never uploaded, and ignored by verify.
    ASSERT_TRUE(it::WriteFile(mp("swap.swp"), "editor swap\n"));
    ASSERT_EQ(mkdir(mp("cache").c_str(), 0755), 0);
    ASSERT_TRUE(it::WriteFile(mp("cache/x"), "cached\n"));
    RunResult f = Ctl({"flush", "--timeout", "60"});
    ASSERT_EQ(f.exit_code, 0) << f.Describe();
  }

  std::optional<S3Server> s3_;
  std::string bucket_, url_;
  std::unique_ptr<ObjectStore> store_;
};

TEST_F(VerifyTest, IdenticalTreeThenEveryKindOfDifference) {
  ASSERT_NO_FATAL_FAILURE(MountWithTarget());
  ASSERT_NO_FATAL_FAILURE(MakeTree());

  // Identical while mounted (reads go through DATADIR), full and quick.
  json j = VerifyJson({}, 0);
  ASSERT_TRUE(j.is_object());
  EXPECT_TRUE(j["identical"].get<bool>()) << j.dump(1);
  // a.txt docs/ docs/b.txt docs/c.txt same.bin grow.txt mode.txt kind
  // empty.txt link empty/ fifo
  EXPECT_EQ(j["checked"].get<int>(), 12) << j.dump(1);
  EXPECT_GE(j["bytes_compared"].get<int>(), 300000);
  j = VerifyJson({"--quick"}, 0);
  ASSERT_TRUE(j.is_object());
  EXPECT_TRUE(j["identical"].get<bool>()) << j.dump(1);
  EXPECT_EQ(j["bytes_compared"].get<int>(), 0);
  ASSERT_EQ(Unmount(), 0);

  // Reserved prefix and excluded names in the target: ignored too.
  ASSERT_TRUE(store_->Put(".scribefs/checkpoints/fake.json", Payload::FromMemory("{}"), {}).ok());
  ASSERT_TRUE(store_->Put("other.swp", Payload::FromMemory("x"), {}).ok());
  ASSERT_TRUE(store_->Put("cache/y", Payload::FromMemory("y"), {}).ok());
  ASSERT_TRUE(it::WriteFile(data("more.swp"), "x"));
  ASSERT_EQ(mkdir(data(".scribefs").c_str(), 0755), 0);
  ASSERT_TRUE(it::WriteFile(data(".scribefs/local"), "x"));
  j = VerifyJson({}, 0);
  ASSERT_TRUE(j.is_object());
  EXPECT_TRUE(j["identical"].get<bool>()) << j.dump(1);

  // Without the mount's journal: --target and --dir (default excludes,
  // plus --exclude cache as the daemon had).
  {
    std::vector<std::string> argv = {ScribectlBin(), "--json", "verify",    "--target", url_,
                                     "--dir",        data(),   "--exclude", "cache"};
    if (kS3) argv.insert(argv.end(), {"--endpoint", s3_->endpoint, "--region", s3_->region});
    RunResult r = it::RunCommand(argv, 120);
    EXPECT_EQ(r.exit_code, 0) << r.Describe() << "\n" << r.out;
    argv = {ScribectlBin(), "verify", "--target", url_};
    r = it::RunCommand(argv, 60);
    EXPECT_EQ(r.exit_code, 2) << "no --dir: " << r.Describe();
  }

  // Tamper. Target side:
  DeleteObject("docs/b.txt");  // missing
  DeleteObject("empty/");      // missing (an empty directory's marker)
  ASSERT_TRUE(store_->Put("stray.txt", Payload::FromMemory("stray"), {}).ok());  // extra
  // Local side, behind the daemon's back:
  struct stat st;
  ASSERT_EQ(stat(data("same.bin").c_str(), &st), 0);
  ASSERT_TRUE(it::WriteFile(data("same.bin"), it::Pattern(300000, 2)));  // same size, mtime
  struct timespec times[2] = {st.st_atim, st.st_mtim};
  ASSERT_EQ(utimensat(AT_FDCWD, data("same.bin").c_str(), times, 0), 0);
  ASSERT_TRUE(it::WriteFile(data("grow.txt"), "grow, and grow more\n"));  // size
  ASSERT_EQ(unlink(data("link").c_str()), 0);
  ASSERT_EQ(symlink("docs/c.txt", data("link").c_str()), 0);  // symlink target
  ASSERT_EQ(chmod(data("mode.txt").c_str(), 0600), 0);        // mode
  ASSERT_EQ(unlink(data("kind").c_str()), 0);
  ASSERT_EQ(mkdir(data("kind").c_str(), 0755), 0);  // type: directory here, file there

  j = VerifyJson({}, kExitDifferences);
  ASSERT_TRUE(j.is_object());
  EXPECT_FALSE(j["identical"].get<bool>());
  EXPECT_EQ(Strings(j["missing"]), (std::set<std::string>{"docs/b.txt", "empty/"})) << j.dump(1);
  EXPECT_EQ(Strings(j["extra"]), (std::set<std::string>{"stray.txt"})) << j.dump(1);
  auto reasons = Reasons(j);
  std::set<std::string> paths;
  for (const auto& [p, r] : reasons) paths.insert(p);
  EXPECT_EQ(paths, (std::set<std::string>{"grow.txt", "kind/", "link", "mode.txt", "same.bin"}))
      << j.dump(1);
  EXPECT_NE(reasons["same.bin"].find("content"), std::string::npos) << reasons["same.bin"];
  EXPECT_EQ(reasons["same.bin"].find("size"), std::string::npos) << reasons["same.bin"];
  EXPECT_NE(reasons["grow.txt"].find("size: local 20, target 5"), std::string::npos)
      << reasons["grow.txt"];
  EXPECT_NE(reasons["link"].find("symlink target: local 'docs/c.txt', target 'a.txt'"),
            std::string::npos)
      << reasons["link"];
  EXPECT_NE(reasons["mode.txt"].find("mode: local 0600, target 0644"), std::string::npos)
      << reasons["mode.txt"];
  EXPECT_NE(reasons["kind/"].find("type"), std::string::npos) << reasons["kind/"];
  EXPECT_TRUE(j["errors"].empty()) << j.dump(1);

  // --quick: by size and mtime only, so same size + same mtime passes.
  j = VerifyJson({"--quick"}, kExitDifferences);
  ASSERT_TRUE(j.is_object());
  reasons = Reasons(j);
  EXPECT_EQ(reasons.count("same.bin"), 0u) << j.dump(1);
  EXPECT_EQ(reasons.count("grow.txt"), 1u) << j.dump(1);
  EXPECT_EQ(reasons.count("mode.txt"), 1u) << j.dump(1);
  EXPECT_EQ(j["bytes_compared"].get<int>(), 0);

  // --path: only that subtree (or file).
  j = VerifyJson({"--path", "/docs/"}, kExitDifferences);
  ASSERT_TRUE(j.is_object());
  EXPECT_EQ(Strings(j["missing"]), (std::set<std::string>{"docs/b.txt"})) << j.dump(1);
  EXPECT_TRUE(j["extra"].empty() && j["different"].empty()) << j.dump(1);
  EXPECT_EQ(j["checked"].get<int>(), 3) << j.dump(1);  // docs/ docs/b.txt docs/c.txt
  j = VerifyJson({"--path", "a.txt"}, 0);
  ASSERT_TRUE(j.is_object());
  EXPECT_EQ(j["checked"].get<int>(), 1) << j.dump(1);

  // People's output: a summary line and the paths, at most --limit per kind.
  RunResult r = Ctl({"verify", "--limit", "1"});
  EXPECT_EQ(r.exit_code, kExitDifferences) << r.Describe();
  EXPECT_NE(r.out.find("DIFFERENT: 13 paths compared"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("missing    docs/b.txt\n"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("missing    ... and 1 more"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("extra      stray.txt\n"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("different  grow.txt: size"), std::string::npos) << r.out;
  if (kS3) {
    EXPECT_EQ(r.out.find(s3_->secret_key), std::string::npos);
    EXPECT_EQ(r.err.find(s3_->secret_key), std::string::npos);
  }
}

// An object written by another tool (no scribefs metadata) differs; a
// directory that cannot be read is an error (exit 1), not a difference.
// file:// only (the target is rewritten by hand): not compiled into the RGW
// binary, rather than reported there as skipped.
#ifndef SCRIBEFS_VERIFY_S3
TEST_F(VerifyTest, ForeignObjectAndUnreadableDirectory) {
  ASSERT_NO_FATAL_FAILURE(MountWithTarget());
  ASSERT_TRUE(it::WriteFile(mp("a.txt"), "alpha\n"));
  RunResult f = Ctl({"flush", "--timeout", "60"});
  ASSERT_EQ(f.exit_code, 0) << f.Describe();
  ASSERT_EQ(Unmount(), 0);
  // The same bytes, copied in by hand: no sidecar, so no metadata.
  it::RemoveTree(root() + "/target");
  ASSERT_EQ(mkdir((root() + "/target").c_str(), 0755), 0);
  ASSERT_TRUE(it::WriteFile(root() + "/target/a.txt", "alpha\n"));
  json j = VerifyJson({}, kExitDifferences);
  ASSERT_TRUE(j.is_object());
  EXPECT_NE(Reasons(j)["a.txt"].find("metadata: no x-amz-meta-mode"), std::string::npos)
      << j.dump(1);
  RunResult r = Ctl({"verify", "--dir", root() + "/no-such-dir"});
  EXPECT_EQ(r.exit_code, 1) << r.Describe();
}
#endif  // SCRIBEFS_VERIFY_S3

}  // namespace
}  // namespace scribefs::ctltest
