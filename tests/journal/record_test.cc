#include "journal/record.h"

#include <gtest/gtest.h>

#include <limits>
#include <random>
#include <set>
#include <string>
#include <vector>

namespace scribefs {
namespace {

constexpr uint64_t kMax = std::numeric_limits<uint64_t>::max();

TEST(RangesJsonTest, KnownEncoding) {
  EXPECT_EQ(RangesToJson({}), "[]");
  EXPECT_EQ(RangesToJson({{0, 4096}, {8192, 512}}), "[[0,4096],[8192,512]]");
}

TEST(RangesJsonTest, RoundTrip) {
  std::vector<std::vector<ByteRange>> cases = {
      {},
      {{0, 0}},
      {{0, 4096}},
      {{0, 4096}, {8192, 512}},
      {{kMax, kMax}, {0, 1}, {kMax - 1, 1}},  // order and values kept as given
  };
  std::mt19937_64 rng(7);
  for (int i = 0; i < 50; ++i) {
    std::vector<ByteRange> v(rng() % 20);
    for (auto& r : v) r = {rng(), rng() % 3 == 0 ? rng() : rng() % 100000};
    cases.push_back(v);
  }
  for (const auto& v : cases) {
    std::string text = RangesToJson(v);
    auto back = RangesFromJson(text);
    ASSERT_TRUE(back.has_value()) << text;
    EXPECT_EQ(*back, v) << text;
  }
}

TEST(RangesJsonTest, AcceptsWhitespace) {
  auto v = RangesFromJson(" [ [ 1 , 2 ] ,\n[3,4] ] ");
  ASSERT_TRUE(v.has_value());
  EXPECT_EQ(*v, (std::vector<ByteRange>{{1, 2}, {3, 4}}));
  auto e = RangesFromJson(" [ ] ");
  ASSERT_TRUE(e.has_value());
  EXPECT_TRUE(e->empty());
}

TEST(RangesJsonTest, RejectsMalformed) {
  const char* bad[] = {
      "",
      " ",
      "[",
      "]",
      "{}",
      "null",
      "[[1,2]",
      "[[1,2]]]",
      "[[1,2]]x",
      "[[1,2]] []",
      "[]x",          // trailing text after an empty list
      "[]]",
      "[] []",
      "[[]]",
      "[1,2]",
      "[[1]]",
      "[[1,]]",
      "[[,1]]",
      "[[1,2,3]]",
      "[[1,2],]",
      "[,]",
      "[[1,2][3,4]]",
      "[[1;2]]",
      "[[-1,2]]",
      "[[1,-2]]",
      "[[+1,2]]",
      "[[1.5,2]]",
      "[[1e3,2]]",
      "[[0x10,2]]",
      "[[a,b]]",
      "[[\"1\",\"2\"]]",
      "[[18446744073709551616,1]]",  // UINT64_MAX + 1
      "[[1,99999999999999999999999]]",
  };
  for (const char* t : bad) EXPECT_FALSE(RangesFromJson(t).has_value()) << "accepted: '" << t << "'";
}

TEST(RangesJsonTest, AcceptsUint64Max) {
  auto v = RangesFromJson("[[18446744073709551615,0]]");
  ASSERT_TRUE(v.has_value());
  EXPECT_EQ((*v)[0].offset, kMax);
}

TEST(OpTest, NameParseRoundTripForEveryOp) {
  const auto& names = AllOpNames();
  ASSERT_EQ(names.size(), static_cast<size_t>(Op::kReconcile) + 1);
  std::set<std::string_view> seen;
  for (size_t i = 0; i < names.size(); ++i) {
    Op op = static_cast<Op>(i);
    EXPECT_EQ(OpName(op), names[i]);
    EXPECT_FALSE(OpName(op).empty());
    EXPECT_TRUE(seen.insert(OpName(op)).second) << "duplicate name " << OpName(op);
    auto parsed = ParseOp(OpName(op));
    ASSERT_TRUE(parsed.has_value()) << OpName(op);
    EXPECT_EQ(*parsed, op) << OpName(op);
  }
}

TEST(OpTest, NamesMatchTheDocumentedSchema) {
  // The README documents these strings as the values of records.op; a
  // renamed or reordered op would silently change existing journals.
  const std::pair<Op, const char*> expected[] = {
      {Op::kCreate, "create"},     {Op::kMkdir, "mkdir"},         {Op::kMknod, "mknod"},
      {Op::kSymlink, "symlink"},   {Op::kLink, "link"},           {Op::kWrite, "write"},
      {Op::kTruncate, "truncate"}, {Op::kSetattr, "setattr"},     {Op::kSetxattr, "setxattr"},
      {Op::kRemovexattr, "removexattr"}, {Op::kRename, "rename"}, {Op::kUnlink, "unlink"},
      {Op::kRmdir, "rmdir"},       {Op::kClose, "close"},         {Op::kFsync, "fsync"},
      {Op::kPause, "pause"},       {Op::kResume, "resume"},       {Op::kCheckpoint, "checkpoint"},
      {Op::kReconcile, "reconcile"},
  };
  ASSERT_EQ(std::size(expected), AllOpNames().size());
  for (const auto& [op, name] : expected) {
    EXPECT_EQ(OpName(op), name);
    EXPECT_EQ(ParseOp(name), op) << name;
  }
}

TEST(OpTest, ParseRejectsUnknown) {
  for (const char* t : {"", "Write", "WRITE", "write ", " write", "writ", "writes", "bogus"})
    EXPECT_FALSE(ParseOp(t).has_value()) << t;
}

TEST(StateTest, ValidStates) {
  for (auto s : {kStatePending, kStateUploading, kStateDone, kStateFailed, kStateSkipped})
    EXPECT_TRUE(IsValidState(s)) << s;
  for (const char* s : {"", "Pending", "pend", "ok", "error"}) EXPECT_FALSE(IsValidState(s)) << s;
}

TEST(RecordTest, NowNsIsWallClock) {
  int64_t a = NowNs();
  int64_t b = NowNs();
  EXPECT_LE(a, b);
  EXPECT_GT(a, int64_t{1'600'000'000} * 1'000'000'000);  // after 2020
}

}  // namespace
}  // namespace scribefs
