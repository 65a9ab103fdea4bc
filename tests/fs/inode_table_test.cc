// InodeTable and Inode's per-file state without a mount: the state an open,
// dirty or unlinked file needs is made on first use and freed once the file
// is clean and closed again; names (aliases) keep their order.
#include "fs/inode_table.h"

#include <gtest/gtest.h>

#include <thread>

namespace scribefs {
namespace {

struct InodeTableTest : ::testing::Test {
  InodeTable table{1, 2};
  std::shared_ptr<Inode> File(ino_t ino, const std::string& name, const std::string& handle = "") {
    return table.Reference(1, ino, S_IFREG | 0644, handle, table.root(), name);
  }
};

TEST_F(InodeTableTest, StateIsMadeOnFirstUseAndFreedWhenIdle) {
  auto f = File(10, "a");
  uint64_t base = Inode::ActiveCount();
  EXPECT_FALSE(f->PinIfActive());  // a cached, clean, closed file holds none
  {
    ActivePin a = f->Pin();
    ASSERT_TRUE(a);
    EXPECT_EQ(Inode::ActiveCount(), base + 1);
    EXPECT_TRUE(f->PinIfActive());
  }
  // Nothing in it: freed with the last pin.
  EXPECT_FALSE(f->PinIfActive());
  EXPECT_EQ(Inode::ActiveCount(), base);
}

TEST_F(InodeTableTest, StateStaysWhileDirtyOpenOrUnlinked) {
  auto f = File(11, "b");
  uint64_t base = Inode::ActiveCount();
  {
    ActivePin a = f->Pin();
    std::lock_guard lk(a->mu);
    a->dirty.dirty = true;
    a->dirty.write_gen = 7;
  }
  {
    ActivePin a = f->PinIfActive();
    ASSERT_TRUE(a) << "a dirty file's state was freed";
    std::lock_guard lk(a->mu);
    EXPECT_EQ(a->dirty.write_gen, 7u);
    a->dirty.dirty = false;
    a->dirty.pending.Add(0, 10);  // ranges not yet committed keep it too
  }
  ASSERT_TRUE(f->PinIfActive());
  {
    ActivePin a = f->Pin();
    std::lock_guard lk(a->mu);
    a->dirty.pending.Clear();
  }
  EXPECT_FALSE(f->PinIfActive());
  {
    ActivePin a = f->Pin();
    std::lock_guard lk(a->fds_mu);
    a->open_fds.push_back(42);
  }
  ASSERT_TRUE(f->PinIfActive()) << "an open file's state was freed";
  {
    ActivePin a = f->Pin();
    std::lock_guard lk(a->fds_mu);
    a->open_fds.clear();
    struct stat st = {};
    a->gone_attr = st;
  }
  ASSERT_TRUE(f->PinIfActive()) << "an unlinked file's attributes were lost";
  EXPECT_EQ(Inode::ActiveCount(), base + 1);
  {
    ActivePin a = f->Pin();
    a->gone_attr.reset();
  }
  EXPECT_FALSE(f->PinIfActive());
  EXPECT_EQ(Inode::ActiveCount(), base);
}

TEST_F(InodeTableTest, PinsFromManyThreadsAgree) {
  auto f = File(12, "c");
  uint64_t base = Inode::ActiveCount();
  std::vector<std::thread> threads;
  for (int t = 0; t < 8; ++t)
    threads.emplace_back([&] {
      for (int i = 0; i < 20000; ++i) {
        ActivePin a = f->Pin();
        std::lock_guard lk(a->mu);
        a->dirty.write_gen++;
      }
    });
  for (auto& t : threads) t.join();
  EXPECT_FALSE(f->PinIfActive());
  EXPECT_EQ(Inode::ActiveCount(), base);
}

TEST_F(InodeTableTest, AliasesKeepOrderAndNewestNameWins) {
  auto dir = table.Reference(1, 20, S_IFDIR | 0755, "", table.root(), "d");
  auto f = File(21, "one");
  table.AddAlias(*f, dir, "two");
  table.AddAlias(*f, table.root(), "three");
  EXPECT_EQ(table.PathOf(*f), "three");
  EXPECT_EQ(table.PathsOf(*f), (std::vector<std::string>{"three", "d/two", "one"}));
  table.RemoveAlias(*f, table.root().get(), "three");
  EXPECT_EQ(table.PathsOf(*f), (std::vector<std::string>{"d/two", "one"}));
  table.MoveAlias(*f, table.root().get(), "one", dir, "four");
  EXPECT_EQ(table.PathsOf(*f), (std::vector<std::string>{"d/four", "d/two"}));
  table.RemoveAlias(*f, dir.get(), "four");
  table.RemoveAlias(*f, dir.get(), "two");
  EXPECT_EQ(table.PathOf(*f), std::nullopt);
  EXPECT_TRUE(table.PathsOf(*f).empty());
  // Past the bound, the oldest name goes.
  for (int i = 0; i < 10; ++i) table.AddAlias(*f, dir, "n" + std::to_string(i));
  auto paths = table.PathsOf(*f);
  ASSERT_EQ(paths.size(), 8u);
  EXPECT_EQ(paths.front(), "d/n9");
  EXPECT_EQ(paths.back(), "d/n2");
}

TEST_F(InodeTableTest, AReusedInodeNumberWithAnotherHandleIsANewInode) {
  auto a = File(30, "x", "handle-generation-1");
  auto same = File(30, "x", "handle-generation-1");
  EXPECT_EQ(a, same);
  auto reborn = File(30, "x", "handle-generation-2");
  EXPECT_NE(a, reborn);
  EXPECT_EQ(table.detached(), 1u);
}

TEST_F(InodeTableTest, ForgottenInodesLeaveTheTable) {
  size_t before = table.size();
  auto dir = table.Reference(1, 40, S_IFDIR | 0755, "", table.root(), "d");
  auto f = table.Reference(1, 41, S_IFREG | 0644, "", dir, "f");
  EXPECT_EQ(table.size(), before + 2);
  uint64_t fid = table.FuseId(f.get()), did = table.FuseId(dir.get());
  f.reset();
  dir.reset();
  table.Forget(did, 1);  // still named by its child: kept
  EXPECT_EQ(table.size(), before + 2);
  table.Forget(fid, 1);  // the child goes, and the parent with it
  EXPECT_EQ(table.size(), before);
}

}  // namespace
}  // namespace scribefs
