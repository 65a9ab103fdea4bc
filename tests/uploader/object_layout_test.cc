// The object layout (uploader/object_layout.h): keys, metadata, the reserved
// prefix, the manifest format and the walk of DATADIR, on real files in a
// temp directory. No store, no mount.
#include "uploader/object_layout.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <cstdio>
#include <map>
#include <set>

#include "common/unique_fd.h"
#include "tests/uploader/test_util.h"

namespace scribefs {
namespace {

TEST(ObjectLayout, KeysMirrorPathsAndDirectoriesAreMarkers) {
  EXPECT_EQ(ObjectKey("a/b.txt", false), "a/b.txt");
  EXPECT_EQ(ObjectKey("a/b", true), "a/b/");
  EXPECT_EQ(PathOfKey("a/b/"), "a/b");
  EXPECT_EQ(PathOfKey("a/b"), "a/b");
  EXPECT_TRUE(IsMarkerKey("a/"));
  EXPECT_FALSE(IsMarkerKey("a"));
  EXPECT_EQ(ObjectTypeOf(S_IFREG | 0644), "file");
  EXPECT_EQ(ObjectTypeOf(S_IFDIR | 0755), "dir");
  EXPECT_EQ(ObjectTypeOf(S_IFLNK | 0777), "symlink");
  EXPECT_EQ(ObjectTypeOf(S_IFIFO | 0600), "special");
  EXPECT_EQ(ObjectTypeOf(S_IFCHR | 0600), "special");
}

TEST(ObjectLayout, ReservedPrefixIsTheTopLevelScribefsDirectoryOnly) {
  EXPECT_TRUE(IsReservedPath(".scribefs"));
  EXPECT_TRUE(IsReservedPath(".scribefs/checkpoints/x.json"));
  EXPECT_FALSE(IsReservedPath(".scribefsx"));
  EXPECT_FALSE(IsReservedPath("a/.scribefs"));
  EXPECT_FALSE(IsReservedPath(""));
  EXPECT_TRUE(IsReservedPath(std::string(kCheckpointKeyPrefix) + "c.json"));
}

TEST(ObjectLayout, MetadataIsS3fsCompatibleAndRoundTrips) {
  struct stat st {};
  st.st_mode = S_IFREG | 0640;
  st.st_uid = 1001;
  st.st_gid = 1002;
  st.st_mtim = {1700000000, 123456789};
  Metadata m = EncodeMetadata(st);
  EXPECT_EQ(m, (Metadata{{"mode", std::to_string(S_IFREG | 0640)},
                         {"uid", "1001"},
                         {"gid", "1002"},
                         {"mtime", "1700000000"},
                         {"scribefs-mtime-ns", "1700000000123456789"}}));
  DecodedMetadata d = DecodeMetadata(m);
  EXPECT_EQ(d.mode, uint64_t(S_IFREG | 0640));
  EXPECT_EQ(d.uid, 1001u);
  EXPECT_EQ(d.gid, 1002u);
  EXPECT_EQ(d.mtime_ns, 1700000000123456789);
  EXPECT_TRUE(d.mtime_exact);
  EXPECT_FALSE(d.rdev);

  st.st_mode = S_IFCHR | 0600;
  st.st_rdev = makedev(4, 5);
  m = EncodeMetadata(st);
  ASSERT_TRUE(m.count("rdev"));
  EXPECT_EQ(DecodeMetadata(m).rdev, uint64_t(makedev(4, 5)));
}

TEST(ObjectLayout, DecodeTakesSecondsFromOtherToolsAndRejectsGarbage) {
  // s3fs writes whole seconds only.
  DecodedMetadata d = DecodeMetadata({{"mode", "33188"}, {"mtime", "1600000000"}});
  EXPECT_EQ(d.mtime_ns, 1600000000000000000);
  EXPECT_FALSE(d.mtime_exact);
  // Not entirely digits: absent, never half-parsed.
  d = DecodeMetadata({{"mode", "12x"}, {"uid", "-1"}, {"gid", " 5"}, {"mtime", ""}});
  EXPECT_FALSE(d.mode);
  EXPECT_FALSE(d.uid);
  EXPECT_FALSE(d.gid);
  EXPECT_FALSE(d.mtime_ns);
  // Seconds that would overflow nanoseconds.
  EXPECT_FALSE(DecodeMetadata({{"mtime", "99999999999999"}}).mtime_ns);
  EXPECT_EQ(MetaUint({{"x", "42"}}, "x"), 42u);
  EXPECT_FALSE(MetaUint({}, "x"));
}

TEST(ObjectLayout, ManifestRoundTrips) {
  ManifestHeader h{"nightly", 1700000000123000000, 42, "file:///t"};
  std::vector<ManifestEntry> in = {
      {"d", "d/", "dir", 0, S_IFDIR | 0755, 0, 0, 5, "e0", "", ""},
      {"d/f", "d/f", "file", 3, S_IFREG | 0644, 1, 2, 7, "e1", "abc", "v1"}};
  auto j = ManifestJson(h, in);
  EXPECT_EQ(j["format"], "scribefs-checkpoint");
  EXPECT_EQ(j["version"], 1);
  EXPECT_EQ(j["time"], "2023-11-14T22:13:20.123Z");
  EXPECT_EQ(j["paths"], 2);
  EXPECT_TRUE(j["entries"][0]["sha256"].is_null());
  EXPECT_TRUE(j["entries"][0]["version_id"].is_null());
  auto out = ParseManifest(j.dump(), "m");
  ASSERT_TRUE(out.ok()) << out.status().message();
  EXPECT_EQ(out->target, "file:///t");
  ASSERT_EQ(out->entries.size(), 2u);
  const ManifestEntry& f = out->entries[1];
  EXPECT_EQ(f.path, "d/f");
  EXPECT_EQ(f.key, "d/f");
  EXPECT_EQ(f.type, "file");
  EXPECT_EQ(f.size, 3u);
  EXPECT_EQ(f.mode, uint32_t(S_IFREG | 0644));
  EXPECT_EQ(f.uid, 1u);
  EXPECT_EQ(f.gid, 2u);
  EXPECT_EQ(f.mtime_ns, 7);
  EXPECT_EQ(f.etag, "e1");
  EXPECT_EQ(f.sha256, "abc");
  EXPECT_EQ(f.version_id, "v1");
  EXPECT_TRUE(f.has_attributes);
  EXPECT_EQ(out->entries[0].sha256, "");
}

// The streamed manifest (checkpoints of millions of paths) is byte for byte
// the document ManifestJson builds, so old and new readers read it; and it
// refuses an entry count other than the one it announced.
TEST(ObjectLayout, ManifestWriterWritesTheSameBytesAsTheDocument) {
  ManifestHeader h{"nightly", 1700000000123000000, 42, "file:///t"};
  std::vector<ManifestEntry> in = {
      {"d", "d/", "dir", 0, S_IFDIR | 0755, 0, 0, 5, "e0", "", ""},
      {"d/f", "d/f", "file", 3, S_IFREG | 0644, 1, 2, 7, "e1", "abc", "v1"},
      {"d/\xff\xfe bad", "d/\xff\xfe bad", "file", 1, S_IFREG | 0600, 0, 0, 9, "e2", "x", ""}};
  std::string expected =
      ManifestJson(h, in).dump(-1, ' ', false, nlohmann::ordered_json::error_handler_t::replace);
  for (size_t n : {size_t{0}, in.size()}) {
    std::vector<ManifestEntry> entries(in.begin(), in.begin() + n);
    std::string want =
        ManifestJson(h, entries).dump(-1, ' ', false, nlohmann::ordered_json::error_handler_t::replace);
    FILE* f = tmpfile();
    ASSERT_NE(f, nullptr);
    ManifestWriter w(fileno(f), h, n);
    for (const ManifestEntry& e : entries) ASSERT_TRUE(w.Add(e).ok());
    ASSERT_TRUE(w.Finish().ok());
    EXPECT_EQ(w.bytes(), want.size());
    std::string got(want.size() + 16, '\0');
    ssize_t len = pread(fileno(f), got.data(), got.size(), 0);
    fclose(f);
    ASSERT_GE(len, 0);
    got.resize(static_cast<size_t>(len));
    EXPECT_EQ(got, want);
    if (n > 0) {
      EXPECT_EQ(got, expected);
      auto parsed = ParseManifest(got, "m");
      ASSERT_TRUE(parsed.ok()) << parsed.status().message();
      EXPECT_EQ(parsed->entries.size(), n);
    }
  }
  FILE* f = tmpfile();
  ASSERT_NE(f, nullptr);
  ManifestWriter fewer(fileno(f), h, 2);
  ASSERT_TRUE(fewer.Add(in[0]).ok());
  EXPECT_FALSE(fewer.Finish().ok());
  ManifestWriter more(fileno(f), h, 1);
  ASSERT_TRUE(more.Add(in[0]).ok());
  EXPECT_FALSE(more.Add(in[1]).ok());
  fclose(f);
}

TEST(ObjectLayout, ManifestParseErrorsNameTheManifest) {
  auto err = [](const std::string& body) {
    auto r = ParseManifest(body, "the manifest M");
    EXPECT_FALSE(r.ok()) << body;
    return r.ok() ? std::string() : r.status().message();
  };
  EXPECT_NE(err("not json").find("the manifest M is not JSON"), std::string::npos);
  EXPECT_NE(err(R"({"format":"x","version":1,"entries":[]})").find("not a scribefs checkpoint"),
            std::string::npos);
  EXPECT_NE(err(R"({"format":"scribefs-checkpoint","version":2,"entries":[]})")
                .find("unsupported format version"),
            std::string::npos);
  EXPECT_NE(err(R"({"format":"scribefs-checkpoint","version":1})").find("has no entries"),
            std::string::npos);
  EXPECT_NE(err(R"({"format":"scribefs-checkpoint","version":1,"entries":[{"path":"a"}]})")
                .find("entry 1 is malformed"),
            std::string::npos);
  // Attributes missing: parsed, flagged (the reader decides).
  auto r = ParseManifest(
      R"({"format":"scribefs-checkpoint","version":1,"entries":[{"path":"a","key":"a","type":"file"}]})",
      "m");
  ASSERT_TRUE(r.ok());
  ASSERT_EQ(r->entries.size(), 1u);
  EXPECT_FALSE(r->entries[0].has_attributes);
}

// ReadManifest streams from a file: the entries come one by one; the errors
// are ParseManifest's, header errors before entry errors (the header may
// follow the entries), and a second entries list is refused.
TEST(ObjectLayout, ReadManifestStreamsFromAFile) {
  auto read = [](const std::string& body, std::vector<std::string>* paths, std::string* target) {
    FILE* f = tmpfile();
    EXPECT_NE(f, nullptr);
    EXPECT_EQ(fwrite(body.data(), 1, body.size(), f), body.size());
    fflush(f);
    lseek(fileno(f), 0, SEEK_SET);
    Status s = ReadManifest(fileno(f), "the manifest M", target, [&](ManifestEntry&& e) {
      paths->push_back(e.path);
      return e.path == "stop" ? Status::Error(EINVAL, "stopped at " + e.path) : Status::Ok();
    });
    fclose(f);
    return s;
  };
  ManifestHeader h{"nightly", 1700000000123000000, 42, "file:///t"};
  std::vector<ManifestEntry> in;
  for (int i = 0; i < 3; ++i)
    in.push_back({"p" + std::to_string(i), "p" + std::to_string(i), "file", 1, 0644, 0, 0, 5});
  std::vector<std::string> paths;
  std::string target;
  ASSERT_TRUE(read(ManifestJson(h, in).dump(), &paths, &target).ok());
  EXPECT_EQ(paths, (std::vector<std::string>{"p0", "p1", "p2"}));
  EXPECT_EQ(target, "file:///t");

  // Keys sorted (nlohmann::json): the entries come before the header.
  paths.clear();
  Status s = read(R"({"entries":[{"path":"a"}],"format":"x","version":1})", &paths, &target);
  EXPECT_NE(s.message().find("not a scribefs checkpoint"), std::string::npos) << s.message();
  s = read(R"({"entries":[{"path":"a"}],"format":"scribefs-checkpoint","version":1})", &paths,
           &target);
  EXPECT_NE(s.message().find("the manifest M: entry 1 is malformed"), std::string::npos);
  s = read(R"({"format":"scribefs-checkpoint","version":1,"entries":[],"entries":[]})", &paths,
           &target);
  EXPECT_NE(s.message().find("more than one entries list"), std::string::npos) << s.message();
  s = read(R"({"format":"scribefs-checkpoint","version":1,"entries":{}})", &paths, &target);
  EXPECT_NE(s.message().find("has no entries"), std::string::npos) << s.message();
  s = read(R"({"format":"scribefs-checkpoint","version":1,"entries":[)", &paths, &target);
  EXPECT_NE(s.message().find("is not JSON"), std::string::npos) << s.message();
  // The caller's error stops the hand-over; the first error is the result.
  paths.clear();
  s = read(R"({"format":"scribefs-checkpoint","version":1,"entries":[)"
           R"({"path":"stop","key":"stop","type":"file"},{"path":"b","key":"b","type":"file"}]})",
           &paths, &target);
  EXPECT_EQ(s.message(), "stopped at stop");
  EXPECT_EQ(paths, std::vector<std::string>{"stop"});
}

class WalkTest : public ::testing::Test {
 protected:
  void SetUp() override {
    fd_ = UniqueFd(open(root_.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    ASSERT_TRUE(fd_);
  }
  void Mkdir(const std::string& rel) { ASSERT_EQ(mkdir((root_ + "/" + rel).c_str(), 0755), 0); }
  void Touch(const std::string& rel) {
    UniqueFd f(open((root_ + "/" + rel).c_str(), O_CREAT | O_WRONLY | O_CLOEXEC, 0644));
    ASSERT_TRUE(f);
  }
  testing_util::TempDir tmp_;
  const std::string root_ = tmp_.path();
  UniqueFd fd_;
};

TEST_F(WalkTest, VisitsEverythingOnceWithoutFollowingSymlinks) {
  Mkdir("a");
  Mkdir("a/b");
  Touch("a/b/f");
  Touch("top");
  Mkdir("outside");
  Touch("outside/x");
  ASSERT_EQ(symlink("../outside", (root_ + "/a/link").c_str()), 0);
  std::map<std::string, mode_t> seen;
  std::vector<std::string> errors;
  WalkCallbacks cb;
  cb.visit = [&](const std::string& p, const struct stat& st) {
    EXPECT_TRUE(seen.emplace(p, st.st_mode & S_IFMT).second) << p;
    return true;
  };
  cb.error = [&](const std::string& where, const Status& s) { errors.push_back(where); };
  ASSERT_TRUE(WalkTree(fd_.get(), "", cb).ok());
  EXPECT_EQ(seen, (std::map<std::string, mode_t>{{"a", S_IFDIR},
                                                  {"a/b", S_IFDIR},
                                                  {"a/b/f", S_IFREG},
                                                  {"a/link", S_IFLNK},
                                                  {"top", S_IFREG},
                                                  {"outside", S_IFDIR},
                                                  {"outside/x", S_IFREG}}));
  EXPECT_TRUE(errors.empty());

  // From a subdirectory; a skipped directory is not entered, and a visit
  // that says no keeps the walk out of that directory.
  seen.clear();
  cb.skip = [](const std::string& p) { return p == "a/b"; };
  ASSERT_TRUE(WalkTree(fd_.get(), "a", cb).ok());
  EXPECT_EQ(seen, (std::map<std::string, mode_t>{{"a/link", S_IFLNK}}));
  seen.clear();
  cb.skip = nullptr;
  cb.visit = [&](const std::string& p, const struct stat& st) {
    seen.emplace(p, st.st_mode & S_IFMT);
    return p != "a";
  };
  ASSERT_TRUE(WalkTree(fd_.get(), "", cb).ok());
  EXPECT_FALSE(seen.count("a/b"));
  EXPECT_TRUE(seen.count("outside/x"));
}

TEST_F(WalkTest, StartMustBeADirectoryBeneathTheRoot) {
  Touch("f");
  Mkdir("d");
  ASSERT_EQ(symlink("d", (root_ + "/l").c_str()), 0);
  WalkCallbacks cb;
  EXPECT_EQ(WalkTree(fd_.get(), "missing", cb).code(), ENOENT);
  EXPECT_EQ(WalkTree(fd_.get(), "f", cb).code(), ENOTDIR);
  EXPECT_FALSE(WalkTree(fd_.get(), "l", cb).ok());  // a symlink is not followed
  EXPECT_FALSE(WalkTree(fd_.get(), "../", cb).ok());
}

TEST_F(WalkTest, ListDirNamesOneDirectory) {
  Mkdir("d");
  Touch("d/x");
  Touch("d/y");
  auto names = ListDir(fd_.get(), "d");
  ASSERT_TRUE(names.ok());
  EXPECT_EQ(std::set<std::string>(names->begin(), names->end()),
            (std::set<std::string>{"x", "y"}));
  EXPECT_FALSE(ListDir(fd_.get(), "nope").ok());
}

}  // namespace
}  // namespace scribefs
