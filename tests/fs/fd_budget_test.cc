// FdBudget: the limits it derives from RLIMIT_NOFILE, and that users, then
// root, are refused with EMFILE at their share, and get slots back on release.
#include "fs/fd_budget.h"

#include <gtest/gtest.h>

#include <cerrno>
#include <vector>

namespace scribefs {
namespace {

TEST(FdBudgetTest, LimitsLeaveAReserveAndARootShare) {
  // 256 descriptors, a directory cache of 32: the daemon keeps 128 + 32 at
  // most, half the limit; root keeps an eighth of the rest.
  FdBudget::Limits l = FdBudget::ForRlimit(256, FdBudget::DirCacheFor(256, 1024));
  EXPECT_EQ(FdBudget::DirCacheFor(256, 1024), 32u);
  EXPECT_EQ(l.root, 128u);
  EXPECT_EQ(l.user, 112u);
  FdBudget::Limits big = FdBudget::ForRlimit(1 << 20, 1024);
  EXPECT_EQ(big.root, (1u << 20) - 128 - 1024);
  EXPECT_LT(big.user, big.root);
  EXPECT_EQ(FdBudget::DirCacheFor(1 << 20, 1024), 1024u);
  FdBudget::Limits tiny = FdBudget::ForRlimit(4, 0);
  EXPECT_EQ(tiny.root, 2u);
  EXPECT_LE(tiny.user, tiny.root);
}

TEST(FdBudgetTest, UsersThenRootAreRefusedWithEmfile) {
  FdBudget b(FdBudget::Limits{10, 8});
  std::vector<FdBudget::Slot> slots;
  for (int i = 0; i < 8; ++i) {
    auto s = b.Acquire(false);
    ASSERT_TRUE(s.ok()) << i;
    slots.push_back(std::move(s.value()));
  }
  auto refused = b.Acquire(false);
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.status().code(), EMFILE);
  for (int i = 0; i < 2; ++i) {
    auto s = b.Acquire(true);
    ASSERT_TRUE(s.ok()) << "root's share " << i;
    slots.push_back(std::move(s.value()));
  }
  EXPECT_EQ(b.Acquire(true).status().code(), EMFILE);
  EXPECT_EQ(b.in_use(), 10u);
  EXPECT_EQ(b.refused(), 2u);
  slots.clear();  // every handle released
  EXPECT_EQ(b.in_use(), 0u);
  EXPECT_TRUE(b.Acquire(false).ok());
  EXPECT_EQ(b.in_use(), 0u) << "a slot dropped at once is returned";
}

TEST(FdBudgetTest, MovedSlotsAreReturnedOnce) {
  FdBudget b(FdBudget::Limits{2, 1});
  {
    auto s = b.Acquire(false);
    ASSERT_TRUE(s.ok());
    FdBudget::Slot a = std::move(s.value());
    FdBudget::Slot c;
    c = std::move(a);
    EXPECT_EQ(b.in_use(), 1u);
  }
  EXPECT_EQ(b.in_use(), 0u);
}

}  // namespace
}  // namespace scribefs
