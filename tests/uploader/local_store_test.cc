// LocalStore: the contract suite, plus what only a directory can show.
#include "uploader/local_store.h"

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <set>

#include "tests/uploader/store_contract.h"
#include "tests/uploader/test_util.h"

namespace scribefs {
namespace {

using testing_util::ReadFile;
using testing_util::TempDir;

class LocalMaker : public StoreMaker {
 public:
  std::unique_ptr<ObjectStore> Make() override {
    if (dir_.path().empty()) {
      ADD_FAILURE() << "mkdtemp failed";
      return nullptr;
    }
    auto store = LocalStore::Open(dir_.path() + "/target");
    if (!store.ok()) {
      ADD_FAILURE() << store.status().ToString();
      return nullptr;
    }
    return std::move(store).value();
  }

 private:
  TempDir dir_;
};

INSTANTIATE_TEST_SUITE_P(Local, StoreContract,
                         ::testing::Values(StoreParam{
                             "local", [] { return std::make_unique<LocalMaker>(); }}),
                         StoreParamName);

class LocalStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    root_ = dir_.path() + "/target";
    auto s = LocalStore::Open(root_);
    ASSERT_TRUE(s.ok()) << s.status().ToString();
    store_ = std::move(s).value();
  }
  TempDir dir_;
  std::string root_;
  std::unique_ptr<LocalStore> store_;
};

bool IsDir(const std::string& p) {
  struct stat st {};
  return lstat(p.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}
bool Exists(const std::string& p) {
  struct stat st {};
  return lstat(p.c_str(), &st) == 0;
}

TEST_F(LocalStoreTest, LayoutIsPlainFilesAndDirectories) {
  ASSERT_TRUE(store_->Put("a/b/c", Payload::FromMemory("data"), {{"mode", "33188"}}).ok());
  ASSERT_TRUE(store_->Put("dir/", Payload::FromMemory(""), {}).ok());
  EXPECT_EQ(ReadFile(root_ + "/a/b/c"), "data");
  EXPECT_EQ(store_->PathOf("a/b/c"), root_ + "/a/b/c");
  EXPECT_TRUE(IsDir(root_ + "/dir"));
  // Nothing but the objects and the store's own hidden directory.
  EXPECT_TRUE(IsDir(root_ + "/.scribefs-local"));
}

TEST_F(LocalStoreTest, NeverFollowsASymlinkOutOfTheRoot) {
  TempDir outside;
  ASSERT_EQ(symlink(outside.path().c_str(), (root_ + "/evil").c_str()), 0);
  auto put = store_->Put("evil/x", Payload::FromMemory("escaped"), {});
  EXPECT_FALSE(put.ok());
  EXPECT_FALSE(Exists(outside.path() + "/x"));
  EXPECT_TRUE(store_->Head("evil/x").status().not_found());
  // A symlink as the object itself is not an object either.
  ASSERT_EQ(symlink("/etc/hostname", (root_ + "/link").c_str()), 0);
  EXPECT_TRUE(store_->Get("link").status().not_found());
  auto listed = store_->ListAll({});
  ASSERT_TRUE(listed.ok());
  EXPECT_TRUE(listed->empty());
  // Overwriting the link's name replaces the link, never writes through it.
  ASSERT_TRUE(store_->Put("link", Payload::FromMemory("new"), {}).ok());
  EXPECT_EQ(ReadFile(root_ + "/link"), "new");
  EXPECT_NE(ReadFile("/etc/hostname"), "new");
}

TEST_F(LocalStoreTest, ReservedNamesAreRefused) {
  auto put = store_->Put(".scribefs-local/meta/x", Payload::FromMemory("x"), {});
  EXPECT_EQ(put.status().code(), EINVAL) << put.status().ToString();
  EXPECT_TRUE(store_->Put(".scribefs-localx", Payload::FromMemory("x"), {}).ok());
}

TEST_F(LocalStoreTest, SidecarThatNoLongerMatchesIsIgnored) {
  ASSERT_TRUE(store_->Put("k", Payload::FromMemory("abc"), {{"mode", "33188"}}).ok());
  // Someone edits the file by hand (new inode, as editors do).
  ASSERT_TRUE(testing_util::WriteFile(root_ + "/k.new", "xyz!").valid());
  ASSERT_EQ(rename((root_ + "/k.new").c_str(), (root_ + "/k").c_str()), 0);
  auto head = store_->Head("k");
  ASSERT_TRUE(head.ok()) << head.status().ToString();
  EXPECT_EQ(head->etag, testing_util::Md5Hex("xyz!"));
  EXPECT_TRUE(head->metadata.empty());
}

TEST_F(LocalStoreTest, DeletePrunesEmptyParentsButKeepsMarkers) {
  ASSERT_TRUE(store_->Put("p/q/r", Payload::FromMemory("x"), {}).ok());
  ASSERT_TRUE(store_->Put("keep/", Payload::FromMemory(""), {}).ok());
  ASSERT_TRUE(store_->Put("keep/s/t", Payload::FromMemory("x"), {}).ok());
  ASSERT_TRUE(store_->Delete("p/q/r").ok());
  EXPECT_FALSE(Exists(root_ + "/p"));
  ASSERT_TRUE(store_->Delete("keep/s/t").ok());
  EXPECT_FALSE(Exists(root_ + "/keep/s"));
  EXPECT_TRUE(IsDir(root_ + "/keep"));
}

TEST_F(LocalStoreTest, ObjectAndDirectoryOfTheSameNameConflict) {
  ASSERT_TRUE(store_->Put("x/y", Payload::FromMemory("1"), {}).ok());
  auto put = store_->Put("x", Payload::FromMemory("2"), {});
  ASSERT_FALSE(put.ok());
  EXPECT_EQ(put.status().code(), EISDIR) << put.status().ToString();
  auto under_file = store_->Put("x/y/z", Payload::FromMemory("3"), {});
  ASSERT_FALSE(under_file.ok());
  EXPECT_EQ(under_file.status().code(), ENOTDIR) << under_file.status().ToString();
}

TEST_F(LocalStoreTest, MultipartStateSurvivesReopen) {
  auto id = store_->CreateMultipartUpload("m", {{"mode", "1"}});
  ASSERT_TRUE(id.ok());
  ASSERT_TRUE(store_->UploadPart("m", *id, 1, Payload::FromMemory("abc")).ok());
  store_.reset();
  auto again = LocalStore::Open(root_);
  ASSERT_TRUE(again.ok());
  auto uploads = (*again)->ListMultipartUploads("");
  ASSERT_TRUE(uploads.ok());
  ASSERT_EQ(uploads->size(), 1u);
  auto done = (*again)->CompleteMultipartUpload("m", *id, {{1, testing_util::Md5Hex("abc")}});
  ASSERT_TRUE(done.ok()) << done.status().ToString();
  EXPECT_EQ(ReadFile(root_ + "/m"), "abc");
}

// Runs `cmd` as an unprivileged user (uid = gid = `uid`, no groups); its exit status.
int RunAs(uid_t uid, const std::string& cmd) {
  std::string full = "setpriv --reuid=" + std::to_string(uid) + " --regid=" + std::to_string(uid) +
                     " --clear-groups -- " + cmd + " >/dev/null 2>&1";
  int rc = system(full.c_str());
  return WIFEXITED(rc) ? WEXITSTATUS(rc) : 128;
}

mode_t ModeOf(const std::string& p) {
  struct stat st {};
  return lstat(p.c_str(), &st) == 0 ? st.st_mode : 0;
}

// The replica must not show a file to more people than the source did (it
// may sit on a USB disk): a 0600 file of "nobody" stays unreadable for
// everybody else, directories made only as parents and the store's own
// directory are private, and no set-user-ID bit is recreated.
TEST_F(LocalStoreTest, ReplicaKeepsModesAndOwnersSoPrivateFilesStayPrivate) {
  if (geteuid() != 0) GTEST_SKIP() << "needs root (chown, setpriv)";
  constexpr uid_t kNobody = 65534, kOther = 65533;
  // Let other users reach the root: only the objects' own modes protect them.
  ASSERT_EQ(chmod(dir_.path().c_str(), 0755), 0);
  ASSERT_EQ(chmod(root_.c_str(), 0755), 0);
  ASSERT_TRUE(
      store_
          ->Put("home/", Payload::FromMemory(""),
                {{"mode", std::to_string(S_IFDIR | 0755)}, {"uid", "65534"}, {"gid", "65534"}})
          .ok());
  const Metadata private_file = {
      {"mode", std::to_string(S_IFREG | 0600)}, {"uid", "65534"}, {"gid", "65534"}};
  ASSERT_TRUE(store_->Put("home/secret", Payload::FromMemory("s3cret"), private_file).ok());
  ASSERT_TRUE(store_
                  ->Put("home/public", Payload::FromMemory("hello"),
                        {{"mode", std::to_string(S_IFREG | 0644)}, {"uid", "0"}, {"gid", "0"}})
                  .ok());
  ASSERT_TRUE(store_
                  ->Put("implied/deep/file", Payload::FromMemory("x"),
                        {{"mode", std::to_string(S_IFREG | 0644)}, {"uid", "0"}, {"gid", "0"}})
                  .ok());
  ASSERT_TRUE(store_
                  ->Put("suid", Payload::FromMemory("#!/bin/sh\n"),
                        {{"mode", std::to_string(S_IFREG | 04777)}, {"uid", "0"}, {"gid", "0"}})
                  .ok());
  // Multipart goes through the same commit.
  auto id = store_->CreateMultipartUpload("home/big", private_file);
  ASSERT_TRUE(id.ok());
  ASSERT_TRUE(store_->UploadPart("home/big", *id, 1, Payload::FromMemory("abc")).ok());
  ASSERT_TRUE(
      store_->CompleteMultipartUpload("home/big", *id, {{1, testing_util::Md5Hex("abc")}}).ok());

  const std::string secret = root_ + "/home/secret";
  struct stat st {};
  ASSERT_EQ(lstat(secret.c_str(), &st), 0);
  EXPECT_EQ(st.st_uid, kNobody);
  EXPECT_EQ(st.st_gid, kNobody);
  EXPECT_EQ(st.st_mode & 07777, 0600u);
  EXPECT_EQ(ModeOf(root_ + "/home/big") & 07777, 0600u);
  EXPECT_NE(RunAs(kOther, "cat " + secret), 0) << "another user can read a 0600 file's replica";
  EXPECT_NE(RunAs(kOther, "cat " + root_ + "/home/big"), 0);
  EXPECT_EQ(RunAs(kNobody, "cat " + secret), 0) << "its owner cannot read it";
  EXPECT_EQ(RunAs(kOther, "cat " + root_ + "/home/public"), 0) << "a 0644 file stays readable";
  // Nobody but the store writes into the replica.
  EXPECT_EQ(ModeOf(root_ + "/home/public") & 07777, 0644u);
  EXPECT_EQ(ModeOf(root_ + "/suid") & 07777, 0755u);
  // Directories made only as parents of a key, and the store's own directory.
  EXPECT_EQ(ModeOf(root_ + "/implied") & 077, 0u);
  EXPECT_EQ(ModeOf(root_ + "/implied/deep") & 077, 0u);
  EXPECT_NE(RunAs(kOther, "cat " + root_ + "/implied/deep/file"), 0);
  EXPECT_EQ(ModeOf(root_ + "/.scribefs-local") & 077, 0u);
  EXPECT_EQ(ModeOf(root_ + "/.scribefs-local/meta/home/secret.obj.json") & 077, 0u);
  EXPECT_NE(RunAs(kOther, "ls " + root_ + "/.scribefs-local/meta"), 0);
  // The metadata read back is what was stored, whatever the file's own mode.
  auto head = store_->Head("home/secret");
  ASSERT_TRUE(head.ok()) << head.status().ToString();
  EXPECT_EQ(head->metadata, private_file);
}

// Any name the filesystem takes (255 bytes) is an object name too: the
// sidecar of a long leaf must not make the key unstorable.
TEST_F(LocalStoreTest, LongestNamesHaveSidecarsToo) {
  const std::string dir(255, 'd'), leaf(255, 'f'), mid(230, 'm');
  const Metadata meta = {{"mode", std::to_string(S_IFREG | 0640)}};
  ASSERT_TRUE(store_->Put(dir + "/", Payload::FromMemory(""), {}).ok());
  auto put = store_->Put(dir + "/" + leaf, Payload::FromMemory("long"), meta);
  ASSERT_TRUE(put.ok()) << put.status().ToString();
  ASSERT_TRUE(store_->Put(mid, Payload::FromMemory("mid"), meta).ok());
  auto head = store_->Head(dir + "/" + leaf);
  ASSERT_TRUE(head.ok()) << head.status().ToString();
  EXPECT_EQ(head->metadata, meta);
  EXPECT_EQ(store_->Head(mid)->metadata, meta);
  auto listed = store_->ListAll({});
  ASSERT_TRUE(listed.ok());
  std::set<std::string> keys;
  for (const auto& e : *listed) keys.insert(e.key);
  EXPECT_EQ(keys, (std::set<std::string>{dir + "/", dir + "/" + leaf, mid}));
  ASSERT_TRUE(store_->Delete(dir + "/" + leaf).ok());
  EXPECT_TRUE(store_->Head(dir + "/" + leaf).status().not_found());
}

TEST(LocalStoreOpen, ANewRootIsPrivate) {
  TempDir dir;
  auto store = LocalStore::Open(dir.path() + "/fresh");
  ASSERT_TRUE(store.ok()) << store.status().ToString();
  EXPECT_EQ(ModeOf(dir.path() + "/fresh") & 077, 0u);
}

TEST(LocalStoreOpen, NeedsAnAbsolutePathWithAnExistingParent) {
  EXPECT_EQ(LocalStore::Open("relative/path").status().code(), EINVAL);
  EXPECT_EQ(LocalStore::Open("/nonexistent-scribefs-parent/a/b").status().code(), ENOENT);
}

}  // namespace
}  // namespace scribefs
