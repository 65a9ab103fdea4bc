// Chunking of real files, and the history keys (history/layout.h).
#include "history/chunker.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>

#include "history/layout.h"
#include "tests/uploader/test_util.h"

namespace scribefs::history {
namespace {

using testing_util::Blob;
using testing_util::Sha256Hex;
using testing_util::TempDir;
using testing_util::WriteFile;

constexpr uint64_t kPart = kDefaultPartSize;

std::vector<ChunkRef> ChunksOfFile(const std::string& path, const std::string& content) {
  UniqueFd fd = WriteFile(path, content);
  EXPECT_TRUE(fd.valid());
  auto chunks = ChunkFile(fd.get(), content.size());
  EXPECT_TRUE(chunks.ok()) << chunks.status().ToString();
  return chunks.ok() ? *chunks : std::vector<ChunkRef>{};
}

TEST(ChunkerTest, BoundariesAreEveryPartSizeFromZero) {
  TempDir dir;
  const std::string content = Blob(2 * kPart + 12345, 1);
  auto chunks = ChunksOfFile(dir.path() + "/f", content);
  ASSERT_EQ(chunks.size(), 3u);
  EXPECT_EQ(chunks[0], (ChunkRef{Sha256Hex(content.substr(0, kPart)), kPart}));
  EXPECT_EQ(chunks[1], (ChunkRef{Sha256Hex(content.substr(kPart, kPart)), kPart}));
  EXPECT_EQ(chunks[2], (ChunkRef{Sha256Hex(content.substr(2 * kPart)), 12345u}));
  EXPECT_EQ(ChunkOffset(2), 2 * kPart);
  // The same from memory.
  EXPECT_EQ(ChunkBytes(content).value(), chunks);
}

TEST(ChunkerTest, EmptyFileHasNoChunksAndSmallFileOne) {
  TempDir dir;
  EXPECT_TRUE(ChunksOfFile(dir.path() + "/empty", "").empty());
  auto one = ChunksOfFile(dir.path() + "/small", "hello");
  ASSERT_EQ(one.size(), 1u);
  EXPECT_EQ(one[0], (ChunkRef{Sha256Hex("hello"), 5}));
  auto full = ChunksOfFile(dir.path() + "/part", Blob(kPart, 2));
  ASSERT_EQ(full.size(), 1u);  // exactly one part: still one chunk
  EXPECT_EQ(full[0].size, kPart);
}

TEST(ChunkerTest, ExactMultipleOfThePartSizeHasNoEmptyTail) {
  TempDir dir;
  auto chunks = ChunksOfFile(dir.path() + "/f", Blob(2 * kPart, 3));
  ASSERT_EQ(chunks.size(), 2u);
  EXPECT_EQ(chunks[0].size, kPart);
  EXPECT_EQ(chunks[1].size, kPart);
}

TEST(ChunkerTest, IdenticalFilesHaveIdenticalChunks) {
  TempDir dir;
  const std::string content = Blob(kPart + 7, 4);
  EXPECT_EQ(ChunksOfFile(dir.path() + "/a", content), ChunksOfFile(dir.path() + "/b", content));
}

TEST(ChunkerTest, FourKibChangeInTheMiddleOfAThreePartFileChangesOneChunk) {
  TempDir dir;
  std::string content = Blob(3 * kPart, 5);
  auto before = ChunksOfFile(dir.path() + "/f", content);
  // 4 KiB in the middle of the second part.
  const uint64_t at = kPart + kPart / 2;
  std::string patch = Blob(4096, 6);
  std::copy(patch.begin(), patch.end(), content.begin() + static_cast<ptrdiff_t>(at));
  auto after = ChunksOfFile(dir.path() + "/g", content);
  ASSERT_EQ(before.size(), 3u);
  ASSERT_EQ(after.size(), 3u);
  EXPECT_EQ(before[0], after[0]);
  EXPECT_NE(before[1], after[1]);
  EXPECT_EQ(before[2], after[2]);
}

TEST(ChunkerTest, FileShorterThanStatedFails) {
  TempDir dir;
  UniqueFd fd = WriteFile(dir.path() + "/f", "abc");
  auto chunks = ChunkFile(fd.get(), 10);
  ASSERT_FALSE(chunks.ok());
  EXPECT_EQ(chunks.status().code(), EIO);
  EXPECT_FALSE(ChunkBytes("abc", 0).ok());
}

TEST(ChunkerTest, SmallPartSizeForTests) {
  auto chunks = ChunkBytes("abcdefghij", 4).value();
  ASSERT_EQ(chunks.size(), 3u);
  EXPECT_EQ(chunks[2], (ChunkRef{Sha256Hex("ij"), 2}));
}

// ---- keys ------------------------------------------------------------------------

TEST(ChunkLayoutTest, ChunkKeyRoundTrip) {
  const std::string sha = Sha256Hex("x");
  const std::string key = ChunkKey(sha);
  EXPECT_EQ(key, ".scribefs/chunks/" + sha.substr(0, 2) + "/" + sha);
  EXPECT_EQ(ParseChunkKey(key).value(), sha);
  std::string upper = sha;
  std::transform(upper.begin(), upper.end(), upper.begin(), ::toupper);
  for (const std::string& bad : std::vector<std::string>{
           std::string(".scribefs/chunks/") + sha, ".scribefs/chunks/zz/" + sha,
           ".scribefs/chunks/" + upper.substr(0, 2) + "/" + upper, ".scribefs/chunks/ab/abc",
           ".scribefs/chunk/" + sha.substr(0, 2) + "/" + sha, key + "x"}) {
    EXPECT_FALSE(ParseChunkKey(bad).ok()) << bad;
  }
  EXPECT_TRUE(IsSha256Hex(sha));
  EXPECT_FALSE(IsSha256Hex(upper));
  EXPECT_FALSE(IsSha256Hex(sha.substr(1)));
}

TEST(ChunkLayoutTest, SegmentKeyRoundTripAndOrder) {
  SegmentId id{SegmentKind::kDelta, 2, 17, 12345678901234567890ull};
  EXPECT_EQ(SegmentKey(id),
            ".scribefs/timeline/2/00000000000000000017-12345678901234567890.jsonl.zst");
  EXPECT_EQ(ParseSegmentKey(SegmentKey(id)).value(), id);
  SegmentId base{SegmentKind::kBase, 0, 5, 9};
  EXPECT_EQ(SegmentKey(base),
            ".scribefs/timeline/base/00000000000000000005-00000000000000000009.jsonl.zst");
  EXPECT_EQ(ParseSegmentKey(SegmentKey(base)).value(), base);
  EXPECT_EQ(LevelPrefix(SegmentKind::kDelta, 0), ".scribefs/timeline/0/");
  // Key order (a List) is seq order, across digit counts.
  std::vector<std::string> keys;
  for (uint64_t s : {1000ull, 9ull, 10ull, 99ull, 100ull}) {
    keys.push_back(SegmentKey({SegmentKind::kDelta, 0, s, s}));
  }
  std::sort(keys.begin(), keys.end());
  std::vector<uint64_t> seqs;
  for (const auto& k : keys) seqs.push_back(ParseSegmentKey(k)->first_seq);
  EXPECT_EQ(seqs, (std::vector<uint64_t>{9, 10, 99, 100, 1000}));
}

TEST(ChunkLayoutTest, MalformedSegmentKeysAreRejected) {
  const std::string good =
      ".scribefs/timeline/0/00000000000000000001-00000000000000000002.jsonl.zst";
  ASSERT_TRUE(ParseSegmentKey(good).ok());
  for (const std::string& bad :
       {std::string(".scribefs/timeline/00000000000000000001-00000000000000000002.jsonl.zst"),
        std::string(".scribefs/timeline/10/00000000000000000001-00000000000000000002.jsonl.zst"),
        std::string(".scribefs/timeline/x/00000000000000000001-00000000000000000002.jsonl.zst"),
        std::string(".scribefs/timeline/0/0000000000000000001-00000000000000000002.jsonl.zst"),
        std::string(".scribefs/timeline/0/00000000000000000002-00000000000000000001.jsonl.zst"),
        std::string(".scribefs/timeline/0/0000000000000000000a-00000000000000000002.jsonl.zst"),
        std::string(".scribefs/timeline/0/99999999999999999999-99999999999999999999.jsonl.zst"),
        std::string(".scribefs/timeline/0/00000000000000000001_00000000000000000002.jsonl.zst"),
        std::string(".scribefs/timeline/0/00000000000000000001-00000000000000000002.jsonl"),
        std::string(".scribefs/timeline/0/sub/00000000000000000001-00000000000000000002.jsonl.zst"),
        good + ".tmp", std::string("x/") + good, std::string()}) {
    EXPECT_FALSE(ParseSegmentKey(bad).ok()) << bad;
  }
}

}  // namespace
}  // namespace scribefs::history
