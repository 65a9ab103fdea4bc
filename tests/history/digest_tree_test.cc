// DigestTree (history/digest_tree.h) against a std::map driven by the same
// random operations: every answer equal, through many rebuilds of its array.
#include "history/digest_tree.h"

#include <gtest/gtest.h>

#include <map>
#include <random>
#include <string>
#include <vector>

namespace scribefs::history {
namespace {

StateDigest D(uint32_t n) {
  StateDigest d;
  for (size_t i = 0; i < d.bytes.size(); ++i) d.bytes[i] = static_cast<uint8_t>(n >> (i % 4 * 8));
  return d;
}

using Model = std::map<std::string, StateDigest>;

std::vector<std::pair<std::string, StateDigest>> BelowIn(const Model& m, const std::string& dir) {
  std::vector<std::pair<std::string, StateDigest>> out;
  for (auto it = m.lower_bound(dir + "/"); it != m.end() && it->first < dir + "0"; ++it)
    out.emplace_back(*it);
  return out;
}

std::vector<std::pair<std::string, StateDigest>> BelowIn(const DigestTree& t,
                                                         const std::string& dir) {
  std::vector<std::pair<std::string, StateDigest>> out;
  t.ForEachBelow(dir, [&](std::string_view p, const StateDigest& d) {
    out.emplace_back(std::string(p), d);
    return true;
  });
  return out;
}

// Paths in three levels with names that sort around '/' ("d", "d-x", "d/..",
// "d0"), so that "below d" has neighbours on both sides.
std::string RandomPath(std::mt19937& rng) {
  static const char* names[] = {"d", "d-x", "d0", "e", "a b", "\xc3\xa9", "z"};
  std::string p = names[rng() % 7];
  for (int depth = rng() % 3; depth > 0; --depth) p += std::string("/") + names[rng() % 7];
  return p;
}

void Check(const DigestTree& t, const Model& m, std::mt19937& rng) {
  ASSERT_EQ(t.size(), m.size());
  for (int i = 0; i < 8; ++i) {
    std::string p = RandomPath(rng);
    auto it = m.find(p);
    EXPECT_EQ(t.Find(p), it == m.end() ? std::nullopt : std::optional(it->second)) << p;
    auto below = BelowIn(m, p);
    EXPECT_EQ(BelowIn(t, p), below) << p;
    EXPECT_EQ(t.HoldsBelow(p), !below.empty()) << p;
  }
}

TEST(DigestTreeTest, AnswersAsAMapThroughRandomChangesAndRebuilds) {
  for (size_t min_compact : {1, 7, 64, 4096}) {
    SCOPED_TRACE("min_compact " + std::to_string(min_compact));
    std::mt19937 rng(static_cast<uint32_t>(min_compact));
    DigestTree t(min_compact);
    Model m;
    for (int step = 0; step < 20000; ++step) {
      std::string p = RandomPath(rng);
      switch (rng() % 8) {
        case 0:
        case 1:
        case 2: {
          StateDigest d = D(rng());
          t.Set(p, d);
          m[p] = d;
          break;
        }
        case 3:
          t.Erase(p);
          m.erase(p);
          break;
        case 4:
          t.EraseBelow(p);
          for (auto& [q, d] : BelowIn(m, p)) m.erase(q);
          break;
        case 5:
          if (rng() % 50 == 0) t.Compact();
          break;
        case 6:
          if (rng() % 500 == 0) {
            t.clear();
            m.clear();
          }
          break;
        default:
          ASSERT_NO_FATAL_FAILURE(Check(t, m, rng));
      }
    }
    EXPECT_EQ(t.ToMap(), m);
    t.Compact();
    EXPECT_EQ(t.in_array(), m.size()) << "a rebuild puts every entry in the array";
    EXPECT_EQ(t.ToMap(), m);
  }
}

// A base is loaded in path order: straight into the array. A change after
// that goes beside it until an eighth of it has changed.
TEST(DigestTreeTest, PathsInOrderGoToTheArrayAndChangesBesideItUntilARebuild) {
  DigestTree t(16);
  for (int i = 0; i < 1000; ++i) t.Set("d/" + std::to_string(100000 + i), D(i));
  EXPECT_EQ(t.in_array(), 1000u);
  t.Set("c", D(1));         // sorts first: beside the array
  t.Set("d/100005", D(2));  // in the array: changed in place
  t.Erase("d/100006");
  EXPECT_EQ(t.in_array(), 999u);
  EXPECT_EQ(t.size(), 1000u);
  EXPECT_EQ(t.Find("d/100005"), D(2));
  EXPECT_EQ(t.Find("d/100006"), std::nullopt);
  t.Set("d/100006", D(3));  // an erased slot comes back
  EXPECT_EQ(t.in_array(), 1000u);
  for (int i = 0; i < 123; ++i) t.Set("e/" + std::to_string(i), D(i));
  EXPECT_EQ(t.in_array(), 1000u) << "124 beside it";
  t.Set("e/123", D(123));  // 125 beside it: an eighth of 1,000
  EXPECT_EQ(t.in_array(), 1125u) << "rebuilt";
  EXPECT_EQ(t.size(), 1125u);
  EXPECT_EQ(t.Find("c"), D(1));
}

}  // namespace
}  // namespace scribefs::history
