// Verify() (tools/verify.h) against a file:// target filled by hand with the
// uploader's layout: content compared in several ranged chunks, metadata,
// quick mode, excludes. The end-to-end tests with the real uploader are in
// tests/verify/.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "tools/verify.h"
#include "uploader/local_store.h"

namespace scribefs::ctl {
namespace {

std::string Bytes(size_t n, char seed) {
  std::string s(n, '\0');
  for (size_t i = 0; i < n; ++i) s[i] = char(seed + i * 7 + i / 251);
  return s;
}

class VerifyEngineTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/scribefs-verify-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    root_ = tmpl;
    dir_ = root_ + "/data";
    ASSERT_EQ(mkdir(dir_.c_str(), 0755), 0);
    auto s = LocalStore::Open(root_ + "/target");
    ASSERT_TRUE(s.ok()) << s.status().ToString();
    store_ = std::move(s.value());
  }
  void TearDown() override { std::filesystem::remove_all(root_); }

  // A local file and its object, as the uploader stores them.
  void Both(const std::string& rel, const std::string& content) {
    std::ofstream(dir_ + "/" + rel, std::ios::binary) << content;
    Upload(rel, content);
  }
  void Upload(const std::string& rel, const std::string& content) {
    struct stat st;
    ASSERT_EQ(lstat((dir_ + "/" + rel).c_str(), &st), 0);
    Metadata m = {{"mode", std::to_string(st.st_mode)},
                  {"uid", std::to_string(st.st_uid)},
                  {"gid", std::to_string(st.st_gid)},
                  {"mtime", std::to_string(st.st_mtim.tv_sec)},
                  {"scribefs-mtime-ns",
                   std::to_string(int64_t(st.st_mtim.tv_sec) * 1000000000 + st.st_mtim.tv_nsec)}};
    std::string key = S_ISDIR(st.st_mode) ? rel + "/" : rel;
    ASSERT_TRUE(store_->Put(key, Payload::FromMemory(content), m).ok());
  }
  VerifyReport Run(bool quick = false, ExcludeFilter filter = ExcludeFilter(DefaultExcludes())) {
    VerifyConfig c;
    c.quick = quick;
    c.chunk_size = 1000;  // several ranged GETs per file
    c.workers = 3;
    auto r = Verify(store_.get(), dir_, filter, c);
    EXPECT_TRUE(r.ok()) << r.status().ToString();
    return r.ok() ? *r : VerifyReport{};
  }

  std::string root_, dir_;
  std::unique_ptr<LocalStore> store_;
};

TEST_F(VerifyEngineTest, ContentInChunksMetadataAndQuick) {
  Both("big", Bytes(10500, 'a'));
  Both("small", "x");
  Both("empty", "");
  ASSERT_EQ(mkdir((dir_ + "/d").c_str(), 0700), 0);
  Upload("d", "");
  ASSERT_EQ(symlink("small", (dir_ + "/ln").c_str()), 0);
  Upload("ln", "small");
  VerifyReport r = Run();
  EXPECT_TRUE(r.identical()) << (r.different.empty() ? "" : r.different[0].reason);
  EXPECT_EQ(r.checked, 5u);
  EXPECT_EQ(r.bytes_compared, 10501u);

  // The last chunk differs; size and mtime kept.
  std::string changed = Bytes(10500, 'a');
  changed[10499] ^= 1;
  struct stat st;
  ASSERT_EQ(stat((dir_ + "/big").c_str(), &st), 0);
  std::ofstream(dir_ + "/big", std::ios::binary) << changed;
  struct timespec times[2] = {st.st_atim, st.st_mtim};
  ASSERT_EQ(utimensat(AT_FDCWD, (dir_ + "/big").c_str(), times, 0), 0);
  r = Run();
  ASSERT_EQ(r.different.size(), 1u);
  EXPECT_EQ(r.different[0].path, "big");
  EXPECT_EQ(r.different[0].reason.rfind("content: SHA-256 local ", 0), 0u) << r.different[0].reason;
  EXPECT_TRUE(Run(true).identical());  // quick cannot see it

  // An empty object for a non-empty file, and a longer one for an empty file.
  ASSERT_TRUE(store_->Put("small", Payload::FromMemory(""), {}).ok());
  ASSERT_TRUE(store_->Put("empty", Payload::FromMemory("zz"), {}).ok());
  r = Run();
  ASSERT_EQ(r.different.size(), 3u);
  EXPECT_EQ(r.different[1].path, "empty");
  EXPECT_EQ(r.different[1].reason.rfind("size: local 0, target 2", 0), 0u) << r.different[1].reason;
  EXPECT_EQ(r.different[2].path, "small");
  EXPECT_EQ(r.different[2].reason.rfind("size: local 1, target 0", 0), 0u) << r.different[2].reason;
  EXPECT_TRUE(r.errors.empty());

  // Directory mode.
  ASSERT_EQ(chmod((dir_ + "/d").c_str(), 0755), 0);
  r = Run(true);
  bool found = false;
  for (const auto& d : r.different)
    if (d.path == "d/") found = d.reason == "mode: local 0755, target 0700";
  EXPECT_TRUE(found);
}

TEST_F(VerifyEngineTest, ExcludesReservedAndPrefix) {
  Both("a", "a");
  ASSERT_EQ(mkdir((dir_ + "/logs").c_str(), 0755), 0);
  Upload("logs", "");
  Both("logs/x.tmp", "local only");  // excluded by logs/*.tmp
  ASSERT_TRUE(store_->Put("logs/y.tmp", Payload::FromMemory("target only"), {}).ok());
  ASSERT_EQ(mkdir((dir_ + "/cache").c_str(), 0755), 0);  // excluded directory: all below too
  std::ofstream(dir_ + "/cache/z") << "z";
  ASSERT_TRUE(store_->Put("cache/w", Payload::FromMemory("w"), {}).ok());
  ASSERT_TRUE(store_->Put(".scribefs/checkpoints/c.json", Payload::FromMemory("{}"), {}).ok());
  std::ofstream(dir_ + "/e.swp") << "swap";
  ExcludeFilter f({"logs/*.tmp", "cache", "*.swp"});
  VerifyReport r = Run(false, f);
  EXPECT_TRUE(r.identical()) << (r.extra.empty() ? "" : r.extra[0]) << " "
                             << (r.missing.empty() ? "" : r.missing[0]);
  EXPECT_EQ(r.checked, 2u);  // a, logs/
  // Without the excludes they show up (the reserved prefix never does).
  r = Run(false, ExcludeFilter());
  EXPECT_EQ(r.missing, (std::vector<std::string>{"cache/", "cache/z", "e.swp"}));
  EXPECT_EQ(r.extra, (std::vector<std::string>{"cache/w", "logs/y.tmp"}));

  VerifyConfig c;
  c.prefix = "logs";
  auto p = Verify(store_.get(), dir_, ExcludeFilter(), c);
  ASSERT_TRUE(p.ok());
  EXPECT_EQ(p->checked, 3u);  // logs/ logs/x.tmp logs/y.tmp
  EXPECT_EQ(p->extra, (std::vector<std::string>{"logs/y.tmp"}));

  EXPECT_EQ(*NormalizeVerifyPrefix("/a/b/"), "a/b");
  EXPECT_EQ(*NormalizeVerifyPrefix("/"), "");
  EXPECT_FALSE(NormalizeVerifyPrefix("a/../b").ok());
  EXPECT_FALSE(NormalizeVerifyPrefix("a//b").ok());
}

}  // namespace
}  // namespace scribefs::ctl
