// PreservedRanges against a bitmap: fixed cases, then random inserts and
// queries whose answers must match the bitmap's exactly.
#include "fs/preserved_ranges.h"

#include <gtest/gtest.h>

#include <random>
#include <vector>

namespace scribefs {
namespace {

using Ranges = std::vector<PreservedRanges::Range>;

TEST(PreservedRangesTest, MergesAndReportsGaps) {
  PreservedRanges p;
  EXPECT_EQ(p.Missing(0, 10), (Ranges{{0, 10}}));
  p.Insert(2, 4);
  p.Insert(6, 8);
  EXPECT_EQ(p.total_bytes(), 4u);
  EXPECT_EQ(p.Missing(0, 10), (Ranges{{0, 2}, {4, 6}, {8, 10}}));
  EXPECT_EQ(p.Present(3, 7), (Ranges{{3, 4}, {6, 7}}));
  p.Insert(4, 6);  // adjacent on both sides: one interval
  EXPECT_EQ(p.Missing(0, 10), (Ranges{{0, 2}, {8, 10}}));
  EXPECT_EQ(p.total_bytes(), 6u);
  p.Insert(0, 100);
  EXPECT_TRUE(p.Missing(0, 100).empty());
  EXPECT_EQ(p.total_bytes(), 100u);
  p.Insert(5, 5);  // empty: nothing
  EXPECT_EQ(p.total_bytes(), 100u);
  EXPECT_EQ(p.Missing(90, 120), (Ranges{{100, 120}}));
}

// The bitmap's answer to Missing/Present: maximal runs of bits == want.
Ranges Runs(const std::vector<bool>& bits, uint64_t off, uint64_t end, bool want) {
  Ranges out;
  for (uint64_t i = off; i < end;) {
    if (bits[i] != want) {
      ++i;
      continue;
    }
    uint64_t j = i;
    while (j < end && bits[j] == want) ++j;
    out.emplace_back(i, j);
    i = j;
  }
  return out;
}

TEST(PreservedRangesTest, MatchesABitmapUnderRandomInserts) {
  std::mt19937_64 rng(12345);
  for (int round = 0; round < 50; ++round) {
    const uint64_t n = 1 + rng() % 2000;
    std::vector<bool> bits(n);
    PreservedRanges p;
    for (int step = 0; step < 200; ++step) {
      uint64_t a = rng() % n, b = rng() % (n + 1);
      if (rng() % 4 == 0) b = std::min<uint64_t>(n, a + rng() % 8);  // small ones too
      if (a > b) std::swap(a, b);
      p.Insert(a, b);
      for (uint64_t i = a; i < b; ++i) bits[i] = true;
      uint64_t qa = rng() % n, qb = rng() % (n + 1);
      if (qa > qb) std::swap(qa, qb);
      ASSERT_EQ(p.Missing(qa, qb), Runs(bits, qa, qb, false)) << round << "/" << step;
      ASSERT_EQ(p.Present(qa, qb), Runs(bits, qa, qb, true)) << round << "/" << step;
      uint64_t total = 0;
      for (bool bit : bits) total += bit;
      ASSERT_EQ(p.total_bytes(), total);
    }
  }
}

}  // namespace
}  // namespace scribefs
