// LocalStore: the contract suite, plus what only a directory can show.
#include "uploader/local_store.h"

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

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

TEST(LocalStoreOpen, NeedsAnAbsolutePathWithAnExistingParent) {
  EXPECT_EQ(LocalStore::Open("relative/path").status().code(), EINVAL);
  EXPECT_EQ(LocalStore::Open("/nonexistent-scribefs-parent/a/b").status().code(), ENOENT);
}

}  // namespace
}  // namespace scribefs
