#include "journal/range_set.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <limits>
#include <random>
#include <vector>

namespace scribefs {
namespace {

constexpr uint64_t kMax = std::numeric_limits<uint64_t>::max();

std::vector<ByteRange> R(std::initializer_list<ByteRange> l) { return l; }

TEST(RangeSetTest, EmptyByDefault) {
  RangeSet s;
  EXPECT_TRUE(s.empty());
  EXPECT_EQ(s.size(), 0u);
  EXPECT_EQ(s.bytes(), 0u);
  EXPECT_TRUE(s.ToVector().empty());
}

TEST(RangeSetTest, DisjointRangesStaySeparateAndSorted) {
  RangeSet s;
  s.Add(100, 10);
  s.Add(0, 10);
  s.Add(50, 5);
  EXPECT_EQ(s.ToVector(), R({{0, 10}, {50, 5}, {100, 10}}));
  EXPECT_EQ(s.size(), 3u);
  EXPECT_EQ(s.bytes(), 25u);
}

TEST(RangeSetTest, OverlappingRangesMerge) {
  RangeSet s;
  s.Add(0, 10);
  s.Add(5, 10);
  EXPECT_EQ(s.ToVector(), R({{0, 15}}));
  s.Add(12, 1);  // inside
  EXPECT_EQ(s.ToVector(), R({{0, 15}}));
  s.Add(0, 15);  // identical
  EXPECT_EQ(s.ToVector(), R({{0, 15}}));
}

TEST(RangeSetTest, TouchingRangesMergeOnBothSides) {
  RangeSet s;
  s.Add(10, 10);  // [10,20)
  s.Add(20, 5);   // touches on the right
  EXPECT_EQ(s.ToVector(), R({{10, 15}}));
  s.Add(5, 5);  // [5,10) touches on the left
  EXPECT_EQ(s.ToVector(), R({{5, 20}}));
}

TEST(RangeSetTest, OneAddSwallowsManyRanges) {
  RangeSet s;
  for (uint64_t i = 0; i < 10; ++i) s.Add(i * 100, 10);
  ASSERT_EQ(s.size(), 10u);
  s.Add(105, 500);  // [105,605): overlaps 100.., touches nothing past 600..610
  EXPECT_EQ(s.ToVector(), R({{0, 10}, {100, 510}, {700, 10}, {800, 10}, {900, 10}}));
  s.Add(0, 1000);
  EXPECT_EQ(s.ToVector(), R({{0, 1000}}));
}

TEST(RangeSetTest, OutOfOrderAddsMerge) {
  RangeSet s;
  s.Add(30, 10);
  s.Add(10, 10);
  s.Add(20, 10);  // fills the gap exactly: all three join
  EXPECT_EQ(s.ToVector(), R({{10, 30}}));
}

TEST(RangeSetTest, ZeroLengthAddsAreIgnored) {
  RangeSet s;
  s.Add(5, 0);
  EXPECT_TRUE(s.empty());
  s.Add(0, 10);
  s.Add(20, 10);
  s.Add(15, 0);  // inside the gap: must not bridge or create an empty range
  s.Add(10, 0);  // touching point
  EXPECT_EQ(s.ToVector(), R({{0, 10}, {20, 10}}));
  s.Add(kMax, 0);
  EXPECT_EQ(s.size(), 2u);
}

TEST(RangeSetTest, SaturatesNearUint64Max) {
  RangeSet s;
  s.Add(kMax - 10, 100);  // would overflow: clamps the end to UINT64_MAX
  EXPECT_EQ(s.ToVector(), R({{kMax - 10, 10}}));
  s.Add(kMax - 5, kMax);  // overflow again, inside the existing range
  EXPECT_EQ(s.ToVector(), R({{kMax - 10, 10}}));
  s.Add(kMax - 20, 10);  // touches from the left
  EXPECT_EQ(s.ToVector(), R({{kMax - 20, 20}}));
  s.Add(0, kMax);  // everything representable
  EXPECT_EQ(s.ToVector(), R({{0, kMax}}));
  EXPECT_EQ(s.bytes(), kMax);
}

TEST(RangeSetTest, BoundJoinsAcrossTheSmallestGapsDownToHalf) {
  {
    RangeSet s(2);  // past the bound: down to 1 range
    s.Add(0, 10);
    s.Add(100, 10);
    s.Add(190, 10);
    EXPECT_EQ(s.ToVector(), R({{0, 200}}));
  }
  {
    RangeSet s(4);  // 5 ranges, gaps 90, 20, 160, 90: keep 2, the 160 gap stays
    s.Add(0, 10);
    s.Add(100, 10);
    s.Add(130, 10);
    s.Add(300, 10);
    s.Add(400, 10);
    EXPECT_EQ(s.ToVector(), R({{0, 140}, {300, 110}}));
  }
  {
    RangeSet s(4);  // gaps 10, 10, 10, 500: ties joined only as far as needed
    s.Add(0, 10);
    s.Add(20, 10);
    s.Add(40, 10);
    s.Add(60, 10);
    s.Add(570, 10);
    EXPECT_EQ(s.size(), 2u);
    EXPECT_EQ(s.ToVector(), R({{0, 70}, {570, 10}}));
  }
}

TEST(RangeSetTest, ZeroMaxRangesMeansOne) {
  RangeSet s(0);
  s.Add(0, 1);
  s.Add(10, 1);
  s.Add(5, 1);
  EXPECT_EQ(s.ToVector(), R({{0, 11}}));
}

TEST(RangeSetTest, TakeReturnsRangesAndEmpties) {
  RangeSet s;
  s.Add(0, 4096);
  s.Add(8192, 512);
  EXPECT_EQ(s.Take(), R({{0, 4096}, {8192, 512}}));
  EXPECT_TRUE(s.empty());
  EXPECT_EQ(s.bytes(), 0u);
  EXPECT_TRUE(s.Take().empty());
  // Usable again after Take, with no memory of the old ranges.
  s.Add(100, 1);
  EXPECT_EQ(s.ToVector(), R({{100, 1}}));
}

TEST(RangeSetTest, ClearEmpties) {
  RangeSet s;
  s.Add(0, 1);
  s.Clear();
  EXPECT_TRUE(s.empty());
}

// Checks the shape every RangeSet must keep: sorted, non-empty ranges with a
// gap of at least one byte between neighbours (touching ones are merged).
void ExpectCanonical(const std::vector<ByteRange>& v) {
  for (size_t i = 0; i < v.size(); ++i) {
    EXPECT_GT(v[i].length, 0u) << "empty range at " << i;
    if (i > 0) {
      EXPECT_LT(v[i - 1].end(), v[i].offset) << "ranges " << i - 1 << "," << i;
    }
  }
}

// Random adds against a bitmap reference. Without a bound the set is exactly
// the bitmap; with a bound it is a superset of it, never more than max_ranges.
void RunProperty(size_t max_ranges, uint32_t seed, bool expect_exact) {
  constexpr uint64_t kUniverse = 2048;
  std::mt19937 rng(seed);
  std::vector<bool> ref(kUniverse, false);
  RangeSet s(max_ranges);
  for (int step = 0; step < 400; ++step) {
    uint64_t off = rng() % kUniverse;
    uint64_t len = rng() % 4 == 0 ? 0 : 1 + rng() % 40;
    if (off + len > kUniverse) len = kUniverse - off;
    s.Add(off, len);
    for (uint64_t b = off; b < off + len; ++b) ref[b] = true;

    auto v = s.ToVector();
    ASSERT_LE(v.size(), max_ranges) << "seed " << seed << " step " << step;
    ExpectCanonical(v);
    std::vector<bool> got(kUniverse, false);
    uint64_t total = 0;
    for (const auto& r : v) {
      ASSERT_LE(r.end(), kUniverse);
      total += r.length;
      for (uint64_t b = r.offset; b < r.end(); ++b) got[b] = true;
    }
    ASSERT_EQ(s.bytes(), total);
    for (uint64_t b = 0; b < kUniverse; ++b) {
      ASSERT_TRUE(!ref[b] || got[b]) << "byte " << b << " lost; seed " << seed << " step " << step;
      if (expect_exact) {
        ASSERT_EQ(ref[b], got[b]) << "byte " << b << "; seed " << seed << " step " << step;
      }
    }
  }
}

TEST(RangeSetPropertyTest, UnboundedEqualsBitmap) {
  for (uint32_t seed = 1; seed <= 20; ++seed) RunProperty(100000, seed, /*expect_exact=*/true);
}

TEST(RangeSetPropertyTest, BoundedIsSupersetAndBounded) {
  for (size_t max_ranges : {1, 2, 3, 8, 32}) {
    for (uint32_t seed = 1; seed <= 20; ++seed) RunProperty(max_ranges, seed, false);
  }
}

// The bound never loses the first or the last byte: joining only fills gaps.
TEST(RangeSetPropertyTest, BoundKeepsExtent) {
  RangeSet s(4);
  for (uint64_t i = 0; i < 100; ++i) s.Add(i * 10 + (i % 3), 1 + i % 5);
  auto v = s.ToVector();
  ASSERT_EQ(v.size(), 4u);
  EXPECT_EQ(v.front().offset, 0u);
  EXPECT_EQ(v.back().end(), 99u * 10 + 0 + 5);
}

}  // namespace
}  // namespace scribefs
