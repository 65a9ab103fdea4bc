// Changes made in DATADIR while scribefs is not mounted (issue 5): mount,
// write, flush, unmount; then create, modify, truncate, chmod, delete and
// rename files and directories directly in DATADIR; mount again (the start-up
// scan journals what changed), flush, and the bucket on the RGW that the
// CTest fixture "rgw" starts must hold exactly the new state: `scribectl
// verify` says identical, and the AWS CLI lists exactly the expected keys
// with the expected sizes and ETags (MD5 of the content, single PUTs).
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>

#include "tests/control/control_util.h"
#include "uploader/digest.h"

namespace scribefs::ctltest {
namespace {

class OfflineChangesTest : public it::MountTest {
 protected:
  void MountS3() {
    Options o;
    o.args = {"--target", "s3://" + bucket_, "--endpoint", s3_->endpoint, "--region", s3_->region};
    Mount(o);
  }
  RunResult Ctl(const std::vector<std::string>& args, double timeout_s = 120) {
    return Scribectl(state(), args, timeout_s);
  }
  std::optional<S3Server> s3_;
  std::string bucket_;
};

struct Want {
  uint64_t size = 0;
  std::string md5;  // files only
};

// What the bucket must hold for the tree at root: key -> size (and MD5).
std::map<std::string, Want> ExpectedKeys(const std::string& root) {
  std::map<std::string, Want> out;
  for (const auto& [path, st] : it::ListTree(root)) {
    if (S_ISDIR(st.st_mode)) {
      out[path + "/"] = {};
    } else if (S_ISLNK(st.st_mode)) {
      out[path] = {uint64_t(st.st_size), ""};
    } else {
      auto body = it::ReadFile(root + "/" + path);
      auto md5 = Md5(body ? *body : "");
      out[path] = {uint64_t(st.st_size), md5.ok() ? HexEncode(*md5) : ""};
    }
  }
  return out;
}

TEST_F(OfflineChangesTest, ChangesWhileUnmountedReachTheBucket) {
  s3_ = GetS3Server();
  ASSERT_TRUE(s3_.has_value());
  bucket_ = MakeBucket(*s3_, "scribefs-offline", false);
  ASSERT_FALSE(bucket_.empty());
  ExportCredentials(*s3_);

  ASSERT_NO_FATAL_FAILURE(MountS3());
  ASSERT_TRUE(it::WriteFile(mp("keep.txt"), "keep\n"));
  ASSERT_TRUE(it::WriteFile(mp("modify.txt"), "old content\n"));
  ASSERT_TRUE(it::WriteFile(mp("samesize.bin"), it::Pattern(200000, 1)));
  ASSERT_TRUE(it::WriteFile(mp("delete.txt"), "delete me\n"));
  ASSERT_TRUE(it::WriteFile(mp("trunc.txt"), "truncate me\n"));
  ASSERT_TRUE(it::WriteFile(mp("chmod.txt"), "chmod me\n"));
  for (const char* d : {"d", "d/sub", "e", "rmme"}) ASSERT_EQ(mkdir(mp(d).c_str(), 0755), 0);
  ASSERT_TRUE(it::WriteFile(mp("d/x"), "x\n"));
  ASSERT_TRUE(it::WriteFile(mp("d/sub/y"), "y\n"));
  ASSERT_TRUE(it::WriteFile(mp("e/z"), "z\n"));
  ASSERT_EQ(symlink("keep.txt", mp("oldlink").c_str()), 0);
  RunResult r = Ctl({"flush", "--timeout", "60"});
  ASSERT_EQ(r.exit_code, 0) << r.Describe();
  ASSERT_EQ(Unmount(), 0);
  r = Ctl({"verify"});
  ASSERT_EQ(r.exit_code, 0) << "before the offline changes: " << r.Describe() << "\n" << r.out;

  // Behind scribefs's back.
  ASSERT_TRUE(it::WriteFile(data("new.txt"), "new\n"));
  ASSERT_EQ(mkdir(data("nd").c_str(), 0700), 0);
  ASSERT_EQ(mkdir(data("nd/empty").c_str(), 0755), 0);
  ASSERT_TRUE(it::WriteFile(data("nd/f"), "nd/f\n"));
  ASSERT_TRUE(it::WriteFile(data("modify.txt"), "new and longer content\n"));
  {
    int fd = open(data("samesize.bin").c_str(), O_WRONLY | O_CLOEXEC);
    ASSERT_GE(fd, 0);
    ASSERT_EQ(pwrite(fd, "CHANGED", 7, 100000), 7);
    close(fd);
  }
  ASSERT_EQ(unlink(data("delete.txt").c_str()), 0);
  ASSERT_EQ(truncate(data("trunc.txt").c_str(), 0), 0);
  ASSERT_EQ(chmod(data("chmod.txt").c_str(), 0600), 0);
  ASSERT_EQ(rename(data("d").c_str(), data("d2").c_str()), 0);
  ASSERT_EQ(rename(data("e/z").c_str(), data("e/z2").c_str()), 0);
  ASSERT_EQ(rmdir(data("rmme").c_str()), 0);
  ASSERT_EQ(unlink(data("oldlink").c_str()), 0);
  ASSERT_EQ(symlink("new.txt", data("newlink").c_str()), 0);

  // Not yet in the bucket: verify sees the differences.
  r = Ctl({"--json", "verify"});
  EXPECT_EQ(r.exit_code, 6) << r.Describe() << "\n" << r.out;

  ASSERT_NO_FATAL_FAILURE(MountS3());
  r = Ctl({"flush", "--timeout", "60"});
  ASSERT_EQ(r.exit_code, 0) << r.Describe();
  r = Ctl({"--json", "verify"});
  EXPECT_EQ(r.exit_code, 0) << r.Describe() << "\n" << r.out;
  json j = JsonOut(r);
  if (j.is_object()) {
    EXPECT_TRUE(j["identical"].get<bool>()) << j.dump(1);
  }
  ASSERT_EQ(Unmount(), 0);

  // The AWS CLI, independently: exactly these keys, sizes and contents.
  r = Aws(*s3_, {"list-objects-v2", "--bucket", bucket_});
  ASSERT_EQ(r.exit_code, 0) << r.Describe();
  std::map<std::string, Want> listed;
  if (!r.out.empty()) {
    json l = json::parse(r.out, nullptr, false);
    ASSERT_TRUE(l.is_object()) << r.out;
    for (const auto& o : l.value("Contents", json::array())) {
      std::string etag = o.value("ETag", "");
      if (etag.size() >= 2 && etag.front() == '"') etag = etag.substr(1, etag.size() - 2);
      std::string key = o.value("Key", "");
      if (key.rfind(".scribefs/", 0) == 0) continue;  // history, checkpoints: not the mirror
      listed[key] = {o.value("Size", uint64_t(0)), etag};
    }
  }
  auto want = ExpectedKeys(data());
  std::vector<std::string> problems;
  for (const auto& [key, w] : want) {
    auto it = listed.find(key);
    if (it == listed.end()) {
      problems.push_back("missing " + key);
      continue;
    }
    if (it->second.size != w.size)
      problems.push_back(key + ": size " + std::to_string(it->second.size) + ", want " +
                         std::to_string(w.size));
    if (!w.md5.empty() && it->second.md5 != w.md5)
      problems.push_back(key + ": ETag " + it->second.md5 + ", want " + w.md5);
  }
  for (const auto& [key, l] : listed)
    if (!want.count(key)) problems.push_back("extra " + key);
  EXPECT_TRUE(problems.empty()) << [&] {
    std::string s;
    for (const auto& p : problems) s += p + "\n";
    return s;
  }();
  // The removed names in particular.
  for (const char* gone :
       {"delete.txt", "d/", "d/x", "d/sub/", "d/sub/y", "e/z", "rmme/", "oldlink"})
    EXPECT_EQ(listed.count(gone), 0u) << gone;
  for (const char* added :
       {"new.txt", "nd/", "nd/empty/", "nd/f", "d2/", "d2/x", "d2/sub/y", "e/z2", "newlink"})
    EXPECT_EQ(listed.count(added), 1u) << added;
  // chmod reached the metadata.
  r = Aws(*s3_, {"head-object", "--bucket", bucket_, "--key", "chmod.txt"});
  ASSERT_EQ(r.exit_code, 0) << r.Describe();
  json h = json::parse(r.out, nullptr, false);
  ASSERT_TRUE(h.is_object()) << r.out;
  EXPECT_EQ(h["Metadata"].value("mode", ""), std::to_string(S_IFREG | 0600)) << r.out;
}

}  // namespace
}  // namespace scribefs::ctltest
