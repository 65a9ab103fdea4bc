// Timeline segments: round trips, and decoding of hostile bytes (every bad
// input a clean EINVAL naming the segment and line, never a crash).
#include "history/segment.h"

#include <gtest/gtest.h>
#include <zstd.h>

#include <nlohmann/json.hpp>
#include <random>

#include "tests/history/history_test_util.h"
#include "tests/uploader/test_util.h"

namespace scribefs::history {
namespace {

using namespace history::testing;  // NOLINT: the builders
using Json = nlohmann::ordered_json;

constexpr char kKey[] = ".scribefs/timeline/0/x.jsonl.zst";

std::string Compress(std::string_view text) {
  std::string out(ZSTD_compressBound(text.size()), '\0');
  size_t n = ZSTD_compress(out.data(), out.size(), text.data(), text.size(), 1);
  EXPECT_FALSE(ZSTD_isError(n));
  out.resize(n);
  return out;
}

std::string Decompressed(std::string_view compressed) {
  std::string out(ZSTD_getFrameContentSize(compressed.data(), compressed.size()), '\0');
  size_t n = ZSTD_decompress(out.data(), out.size(), compressed.data(), compressed.size());
  EXPECT_FALSE(ZSTD_isError(n));
  out.resize(n);
  return out;
}

Segment Sample() {
  std::vector<Entry> entries = {
      DirPut(3, "docs"),
      FilePut(4, "docs/report.txt", "hello, timeline"),
      FilePut(5, "empty", ""),
      SymlinkPut(7, "link", "docs/report.txt"),
      DevicePut(8, "dev/null", (1u << 8) | 3u),
      Rename(9, "docs", "papers"),
      Rename(10, "a", "b", /*exchange=*/true),
      Delete(11, "papers/report.txt"),
      FilePut(12, std::string("caf\xc3\xa9/\xff\xfe-not-utf8"), "bytes"),
  };
  return MakeDelta(std::move(entries), 0, 2, 15);
}

TEST(SegmentTest, RoundTrip) {
  Segment s = Sample();
  auto bytes = EncodeSegment(s);
  ASSERT_TRUE(bytes.ok()) << bytes.status().ToString();
  auto back = DecodeSegment(*bytes, kKey);
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  EXPECT_EQ(*back, s);
  EXPECT_EQ(back->header.first_time_ns, 3000);
  EXPECT_EQ(back->header.last_time_ns, 12000);
  auto header = DecodeSegmentHeader(*bytes, kKey);
  ASSERT_TRUE(header.ok());
  EXPECT_EQ(*header, s.header);
  // Deterministic bytes: a retried append compares equal.
  EXPECT_EQ(EncodeSegment(s).value(), *bytes);
  // The text: a header line, then one JSON object per entry, '\n'-terminated.
  std::string text = Decompressed(*bytes);
  EXPECT_EQ(std::count(text.begin(), text.end(), '\n'), 10);
  EXPECT_NE(text.find("{\"hex\":\""), std::string::npos);  // the non-UTF-8 name
}

TEST(SegmentTest, EmptyDeltaAndBaseRoundTrip) {
  Segment empty = MakeDelta({}, 3, 100, 200);
  EXPECT_EQ(DecodeSegment(EncodeSegment(empty).value(), kKey).value(), empty);
  Segment base;
  base.header.kind = SegmentKind::kBase;
  base.header.first_seq = 2;
  base.header.last_seq = 50;
  base.header.last_time_ns = 99000;
  base.entries = {FilePut(9, "a", "x"), DirPut(2, "b"), FilePut(40, "b/c", "yz")};
  base.header.count = 3;
  EXPECT_EQ(DecodeSegment(EncodeSegment(base).value(), kKey).value(), base);
}

TEST(SegmentTest, EncodeRefusesWhatDecodeWouldRefuse) {
  Segment s = Sample();
  s.entries[1].state.size += 1;
  EXPECT_FALSE(EncodeSegment(s).ok());
  s = Sample();
  s.header.count = 1;
  EXPECT_FALSE(EncodeSegment(s).ok());
  Segment base = MakeDelta({Delete(1, "x")}, 0, 1, 1);
  base.header.kind = SegmentKind::kBase;
  EXPECT_FALSE(EncodeSegment(base).ok());  // a base holds only puts
}

TEST(SegmentTest, PathValidation) {
  for (const char* good :
       {"a", "a/b", ".hidden", "a/..b", "...", ".scribefs-other", "x/.scribefs"}) {
    EXPECT_TRUE(ValidatePath(good).ok()) << good;
  }
  for (std::string bad :
       std::vector<std::string>{"", "/abs", "a/", "a//b", ".", "..", "../x", "a/../b", "a/.",
                                ".scribefs", ".scribefs/x", std::string("a\0b", 3)}) {
    EXPECT_FALSE(ValidatePath(bad).ok()) << bad;
  }
}

// ---- hostile input ---------------------------------------------------------------

Json HeaderJson(uint64_t count, uint64_t first = 1, uint64_t last = 10) {
  return Json{{"format", "scribefs-timeline"},
              {"version", 1},
              {"kind", "delta"},
              {"level", 0},
              {"first_seq", first},
              {"last_seq", last},
              {"first_time_ns", 1500},
              {"last_time_ns", 1500},
              {"count", count}};
}

Json FileJson(uint64_t seq, const std::string& path = "f") {
  const std::string sha = testing_util::Sha256Hex("abc");
  return Json{{"seq", seq},
              {"time_ns", 1500},
              {"op", "put"},
              {"path", path},
              {"type", "file"},
              {"size", 3},
              {"mode", 0100644},
              {"uid", 0},
              {"gid", 0},
              {"mtime_ns", 5},
              {"chunks", Json::array({{{"sha256", sha}, {"size", 3}}})}};
}

std::string Lines(const std::vector<Json>& lines) {
  std::string text;
  for (const Json& j : lines) text += j.dump() + "\n";
  return text;
}

// Decodes `text` compressed; expects EINVAL whose message names the segment
// and contains `needle`.
void ExpectRejected(const std::string& text, const std::string& needle) {
  auto s = DecodeSegment(Compress(text), kKey);
  ASSERT_FALSE(s.ok()) << "accepted: " << text;
  EXPECT_EQ(s.status().code(), EINVAL);
  EXPECT_NE(s.status().message().find(kKey), std::string::npos) << s.status().message();
  EXPECT_NE(s.status().message().find(needle), std::string::npos)
      << "wanted \"" << needle << "\" in: " << s.status().message();
}

TEST(SegmentHostileTest, TheBaselineIsValid) {
  auto s = DecodeSegment(Compress(Lines({HeaderJson(2), FileJson(2), FileJson(3, "g")})), kKey);
  ASSERT_TRUE(s.ok()) << s.status().ToString();
  EXPECT_EQ(s->entries.size(), 2u);
}

TEST(SegmentHostileTest, BrokenCompression) {
  std::string good = Compress(Lines({HeaderJson(1), FileJson(2)}));
  for (size_t cut : {1ul, 5ul, good.size() / 2}) {
    auto s = DecodeSegment(std::string_view(good).substr(0, good.size() - cut), kKey);
    ASSERT_FALSE(s.ok()) << cut;
    EXPECT_EQ(s.status().code(), EINVAL);
  }
  EXPECT_FALSE(DecodeSegment("", kKey).ok());
  EXPECT_FALSE(DecodeSegment("plain text, not zstd", kKey).ok());
  EXPECT_FALSE(DecodeSegment(good + "trailing garbage", kKey).ok());
  std::string flipped = good;
  flipped[flipped.size() / 2] ^= 0x5a;
  EXPECT_FALSE(DecodeSegment(flipped, kKey).ok());
}

// 2 GiB of zeros in a few hundred KiB: refused from its declared size, or,
// when the frame does not declare it, at the limit while decompressing.
std::string ZeroBomb(uint64_t size, bool declare) {
  ZSTD_CCtx* cctx = ZSTD_createCCtx();
  ZSTD_CCtx_setParameter(cctx, ZSTD_c_compressionLevel, 1);
  ZSTD_CCtx_setParameter(cctx, ZSTD_c_contentSizeFlag, declare ? 1 : 0);
  if (declare) ZSTD_CCtx_setPledgedSrcSize(cctx, size);
  const std::string zeros(1 << 20, '\0');
  std::string out, buf(ZSTD_CStreamOutSize(), '\0');
  for (uint64_t done = 0; done < size; done += zeros.size()) {
    const bool last = done + zeros.size() >= size;
    ZSTD_inBuffer in{zeros.data(), zeros.size(), 0};
    size_t rem;
    do {
      ZSTD_outBuffer o{buf.data(), buf.size(), 0};
      rem = ZSTD_compressStream2(cctx, &o, &in, last ? ZSTD_e_end : ZSTD_e_continue);
      EXPECT_FALSE(ZSTD_isError(rem));
      out.append(buf.data(), o.pos);
    } while (last ? rem != 0 : in.pos < in.size);
  }
  ZSTD_freeCCtx(cctx);
  return out;
}

TEST(SegmentHostileTest, ZstdBombFailsCleanly) {
  const std::string declared = ZeroBomb(2ull << 30, true);
  EXPECT_LT(declared.size(), 1u << 20);
  auto s = DecodeSegment(declared, kKey);
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.status().message().find("declares 2147483648 bytes"), std::string::npos)
      << s.status().message();
  // Not declared: stopped at the limit (a small one here, the default is 256 MiB).
  const std::string undeclared = ZeroBomb(64ull << 20, false);
  s = DecodeSegment(undeclared, kKey, DecodeLimits{8ull << 20});
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.status().message().find("more than the limit"), std::string::npos)
      << s.status().message();
  EXPECT_FALSE(DecodeSegmentHeader(undeclared, kKey, DecodeLimits{8ull << 20}).ok());
}

TEST(SegmentHostileTest, BadJsonAndStructure) {
  ExpectRejected("not json\n", "line 1: not JSON");
  ExpectRejected(HeaderJson(1).dump() + "\n{\"seq\":\n", "line 2: not JSON");
  ExpectRejected(Lines({HeaderJson(1), FileJson(2)}).substr(0, 20), "complete line");
  ExpectRejected(Lines({HeaderJson(1), FileJson(2)}) + "\n", "line 3");  // an empty line
  ExpectRejected(Lines({HeaderJson(2), FileJson(2)}), "1 entries, the header says 2");
  ExpectRejected(Lines({HeaderJson(1), FileJson(2), FileJson(3)}), "line 3: more entries");
  ExpectRejected(Lines({Json::array()}), "line 1: the header is not a JSON object");
  ExpectRejected(Lines({HeaderJson(1), Json(5)}), "line 2: not a JSON object");
  Json h = HeaderJson(0);
  h["format"] = "something-else";
  ExpectRejected(Lines({h}), "not a scribefs timeline segment");
  h = HeaderJson(0);
  h["version"] = 2;
  ExpectRejected(Lines({h}), "version 2");
  h = HeaderJson(0);
  h["kind"] = "snapshot";
  ExpectRejected(Lines({h}), "unknown kind");
  h = HeaderJson(0, 10, 1);
  ExpectRejected(Lines({h}), "first_seq > last_seq");
}

TEST(SegmentHostileTest, WrongTypes) {
  struct Case {
    const char* field;
    Json value;
    bool in_header;
  };
  const std::vector<Case> cases = {
      {"first_seq", "1", true},
      {"count", -1, true},
      {"level", 10, true},
      {"last_time_ns", 1.5, true},
      {"seq", "2", false},
      {"seq", -2, false},
      {"time_ns", -1, false},
      {"size", -3, false},
      {"mode", "0644", false},
      {"uid", 4294967296ull, false},
      {"mtime_ns", true, false},
      {"path", 7, false},
      {"path", Json{{"hex", "zz"}}, false},
      {"op", "truncate", false},
      {"type", "fifo", false},
      {"chunks", Json::object(), false},
      {"chunks", Json::array({5}), false},
      {"mtime_ns", 18446744073709551615ull, false},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.field);
    Json h = HeaderJson(1), e = FileJson(2);
    (c.in_header ? h : e)[c.field] = c.value;
    ExpectRejected(Lines({h, e}), c.in_header ? "line 1" : "line 2");
  }
  for (const char* field : {"seq", "time_ns", "op", "path", "size", "mode", "chunks"}) {
    SCOPED_TRACE(field);
    Json e = FileJson(2);
    e.erase(field);
    ExpectRejected(Lines({HeaderJson(1), e}), "line 2");
  }
}

TEST(SegmentHostileTest, BadPaths) {
  for (std::string path : std::vector<std::string>{"../x", "/abs", ".scribefs/x", ".scribefs",
                                                   "a//b", "a/", "", ".", std::string("a\0b", 3)}) {
    SCOPED_TRACE(path);
    ExpectRejected(Lines({HeaderJson(1), FileJson(2, path)}), "line 2: path");
    Json rename{
        {"seq", 2}, {"time_ns", 1500}, {"op", "rename"}, {"path", "ok"}, {"new_path", path}};
    ExpectRejected(Lines({HeaderJson(1), rename}), "line 2");
  }
  // A non-UTF-8 name smuggling a "..": caught after hex decoding.
  Json e = FileJson(2);
  e["path"] = Json{{"hex", "2e2e2f78"}};  // "../x"
  ExpectRejected(Lines({HeaderJson(1), e}), "line 2: path");
  Json into{{"seq", 2}, {"time_ns", 1500}, {"op", "rename"}, {"path", "a"}, {"new_path", "a/b"}};
  ExpectRejected(Lines({HeaderJson(1), into}), "into itself");
}

TEST(SegmentHostileTest, OrderAndRanges) {
  ExpectRejected(Lines({HeaderJson(2), FileJson(3), FileJson(3, "g")}), "line 3: seqs not");
  ExpectRejected(Lines({HeaderJson(2), FileJson(4), FileJson(3, "g")}), "line 3: seqs not");
  ExpectRejected(Lines({HeaderJson(1, 5, 10), FileJson(4)}), "outside [first_seq");
  ExpectRejected(Lines({HeaderJson(1, 1, 3), FileJson(4)}), "outside [first_seq");
  Json e = FileJson(2);
  e["time_ns"] = 5000;
  ExpectRejected(Lines({HeaderJson(1), e}), "time_ns outside");
  Json h = HeaderJson(1);
  h["first_time_ns"] = 1001;  // not the least entry time (1500)
  ExpectRejected(Lines({h, FileJson(2)}), "least and greatest");
  Json base = HeaderJson(2);
  base["kind"] = "base";
  ExpectRejected(Lines({base, FileJson(2, "b"), FileJson(3, "a")}), "base paths");
  Json del{{"seq", 2}, {"time_ns", 1500}, {"op", "delete"}, {"path", "x"}};
  base["count"] = 1;
  ExpectRejected(Lines({base, del}), "only puts");
}

TEST(SegmentHostileTest, StateChecks) {
  auto with = [](std::function<void(Json&)> f) {
    Json e = FileJson(2);
    f(e);
    return Lines({HeaderJson(1), e});
  };
  ExpectRejected(with([](Json& e) { e["size"] = 4; }), "not the sum of its chunks");
  ExpectRejected(with([](Json& e) { e["chunks"][0]["size"] = 0; }), "size 0");
  std::string upper = testing_util::Sha256Hex("abc");
  for (auto& c : upper) c = static_cast<char>(toupper(c));
  ExpectRejected(with([&](Json& e) { e["chunks"][0]["sha256"] = upper; }), "lower-case hex");
  ExpectRejected(with([](Json& e) { e["chunks"][0]["sha256"] = "abc"; }), "lower-case hex");
  ExpectRejected(with([](Json& e) { e["chunks"][0]["sha256"] = 12; }), "sha256");
  ExpectRejected(with([](Json& e) { e["mode"] = 040755; }), "is not a file");
  ExpectRejected(with([](Json& e) { e["mode"] = 0644; }), "is not a file");
  ExpectRejected(with([](Json& e) {
                   e["type"] = "symlink";
                   e["mode"] = 0120777;
                   e["target"] = "abcd";
                   e.erase("chunks");
                 }),
                 "target's length");
  ExpectRejected(with([](Json& e) {
                   e["type"] = "dir";
                   e["mode"] = 040755;
                 }),
                 "chunks on a dir");
  ExpectRejected(with([](Json& e) {
                   e["chunks"] = Json::array();
                   e["chunks"].push_back({{"sha256", testing_util::Sha256Hex("a")},
                                          {"size", 18446744073709551615ull}});
                   e["chunks"].push_back({{"sha256", testing_util::Sha256Hex("b")}, {"size", 2}});
                 }),
                 "overflow");
}

// Random mutations of a valid segment, of its text and of its compressed
// bytes: never a crash, and whatever is accepted is a valid segment.
TEST(SegmentFuzzTest, RandomMutationsNeverCrash) {
  const std::string compressed = EncodeSegment(Sample()).value();
  const std::string text = Decompressed(compressed);
  std::mt19937 rng(20261206);
  auto pick = [&](size_t n) { return std::uniform_int_distribution<size_t>(0, n - 1)(rng); };
  const std::string alphabet = "{}[]\":,\n0123456789-.aefhlnrstux/\\ \xff";
  int accepted = 0;
  for (int i = 0; i < 4000; ++i) {
    const bool mutate_text = i % 2 == 0;
    std::string m = mutate_text ? text : compressed;
    for (int k = 1 + static_cast<int>(pick(4)); k > 0; --k) {
      switch (pick(4)) {
        case 0:  // overwrite a byte
          m[pick(m.size())] =
              mutate_text ? alphabet[pick(alphabet.size())] : static_cast<char>(pick(256));
          break;
        case 1:  // delete a range
          m.erase(pick(m.size()), 1 + pick(16));
          break;
        case 2:  // insert a byte
          m.insert(m.begin() + static_cast<ptrdiff_t>(pick(m.size() + 1)),
                   alphabet[pick(alphabet.size())]);
          break;
        default:  // duplicate a range
          size_t at = pick(m.size());
          m.insert(at, m.substr(at, 1 + pick(64)));
          break;
      }
      if (m.empty()) m = "x";
    }
    auto s = DecodeSegment(mutate_text ? Compress(m) : m, kKey);
    if (s.ok()) {
      ++accepted;
      EXPECT_TRUE(ValidateSegment(*s).ok());
      EXPECT_TRUE(EncodeSegment(*s).ok());
    } else {
      EXPECT_EQ(s.status().code(), EINVAL) << s.status().message();
    }
  }
  // Some text mutations (inside a name, say) stay valid; most do not.
  EXPECT_LT(accepted, 4000);
}

}  // namespace
}  // namespace scribefs::history
