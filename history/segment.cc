#include "history/segment.h"

#include <sys/stat.h>
#include <zstd.h>

#include <algorithm>
#include <limits>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>

#include "uploader/object_layout.h"

namespace scribefs::history {
namespace {

using Json = nlohmann::json;
using OrderedJson = nlohmann::ordered_json;

Status Invalid(std::string message) { return Status::Error(EINVAL, std::move(message)); }

// ---- strings that may not be UTF-8 ------------------------------------------

bool IsValidUtf8(std::string_view s) {
  size_t i = 0;
  while (i < s.size()) {
    const auto c = static_cast<unsigned char>(s[i]);
    size_t n;
    uint32_t cp;
    if (c < 0x80) {
      ++i;
      continue;
    } else if ((c & 0xE0) == 0xC0) {
      n = 1, cp = c & 0x1F;
    } else if ((c & 0xF0) == 0xE0) {
      n = 2, cp = c & 0x0F;
    } else if ((c & 0xF8) == 0xF0) {
      n = 3, cp = c & 0x07;
    } else {
      return false;
    }
    if (i + n >= s.size()) return false;  // truncated sequence
    for (size_t k = 1; k <= n; ++k) {
      const auto cc = static_cast<unsigned char>(s[i + k]);
      if ((cc & 0xC0) != 0x80) return false;
      cp = (cp << 6) | (cc & 0x3F);
    }
    // Overlong forms, surrogates and code points past U+10FFFF.
    if ((n == 1 && cp < 0x80) || (n == 2 && cp < 0x800) || (n == 3 && cp < 0x10000) ||
        (cp >= 0xD800 && cp <= 0xDFFF) || cp > 0x10FFFF) {
      return false;
    }
    i += n + 1;
  }
  return true;
}

std::string ToHex(std::string_view bytes) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string out;
  out.reserve(bytes.size() * 2);
  for (char b : bytes) {
    const auto u = static_cast<unsigned char>(b);
    out.push_back(kDigits[u >> 4]);
    out.push_back(kDigits[u & 15]);
  }
  return out;
}

std::optional<std::string> FromHex(std::string_view hex) {
  if (hex.size() % 2 != 0) return std::nullopt;
  auto nibble = [](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    return -1;
  };
  std::string out;
  for (size_t i = 0; i < hex.size(); i += 2) {
    int hi = nibble(hex[i]), lo = nibble(hex[i + 1]);
    if (hi < 0 || lo < 0) return std::nullopt;
    out.push_back(static_cast<char>(hi * 16 + lo));
  }
  return out;
}

OrderedJson BytesJson(const std::string& s) {
  if (IsValidUtf8(s)) return s;
  return OrderedJson{{"hex", ToHex(s)}};
}

// ---- typed field access ---------------------------------------------------------

// Reads fields of one JSON object, remembering the first problem.
class FieldReader {
 public:
  explicit FieldReader(const Json& obj) : obj_(obj) {}
  const std::string& error() const { return error_; }
  bool has(const char* name) const { return obj_.contains(name); }

  uint64_t Uint(const char* name, uint64_t max = std::numeric_limits<uint64_t>::max()) {
    const Json* v = Find(name);
    if (!v) return 0;
    if (!v->is_number_unsigned() || v->get<uint64_t>() > max) {
      Fail(std::string("\"") + name + "\" is not an integer in [0, " + std::to_string(max) + "]");
      return 0;
    }
    return v->get<uint64_t>();
  }
  int64_t Int(const char* name, bool non_negative = false) {
    const Json* v = Find(name);
    if (!v) return 0;
    bool ok = v->is_number_integer() &&
              (!v->is_number_unsigned() ||
               v->get<uint64_t>() <= static_cast<uint64_t>(std::numeric_limits<int64_t>::max()));
    if (ok && non_negative && v->get<int64_t>() < 0) ok = false;
    if (!ok) {
      Fail(std::string("\"") + name + "\" is not a 64-bit " +
           (non_negative ? "non-negative " : "") + "integer");
      return 0;
    }
    return v->get<int64_t>();
  }
  std::string String(const char* name) {
    const Json* v = Find(name);
    if (!v) return "";
    if (!v->is_string()) {
      Fail(std::string("\"") + name + "\" is not a string");
      return "";
    }
    return v->get<std::string>();
  }
  // A string, or {"hex":"..."} for bytes that are not UTF-8.
  std::string Bytes(const char* name) {
    const Json* v = Find(name);
    if (!v) return "";
    if (v->is_string()) return v->get<std::string>();
    if (v->is_object() && v->size() == 1 && v->contains("hex") && (*v)["hex"].is_string()) {
      if (auto bytes = FromHex((*v)["hex"].get<std::string>())) return *bytes;
    }
    Fail(std::string("\"") + name + "\" is neither a string nor {\"hex\": lower-case hex}");
    return "";
  }
  bool Bool(const char* name) {
    const Json* v = Find(name);
    if (!v) return false;
    if (!v->is_boolean()) {
      Fail(std::string("\"") + name + "\" is not a boolean");
      return false;
    }
    return v->get<bool>();
  }
  const Json* Array(const char* name) {
    const Json* v = Find(name);
    if (v && !v->is_array()) {
      Fail(std::string("\"") + name + "\" is not an array");
      return nullptr;
    }
    return v;
  }

 private:
  const Json* Find(const char* name) {
    if (!error_.empty()) return nullptr;
    auto it = obj_.find(name);
    if (it == obj_.end()) {
      Fail(std::string("\"") + name + "\" is missing");
      return nullptr;
    }
    return &*it;
  }
  void Fail(std::string why) {
    if (error_.empty()) error_ = std::move(why);
  }
  const Json& obj_;
  std::string error_;
};

// ---- validation ---------------------------------------------------------------

std::string CheckState(const PathState& s) {
  if (s.type != kTypeFile && s.type != kTypeDir && s.type != kTypeSymlink &&
      s.type != kTypeSpecial) {
    return "unknown type \"" + s.type + "\"";
  }
  if (ObjectTypeOf(static_cast<mode_t>(s.mode)) != s.type || (s.mode & S_IFMT) == 0) {
    return "mode " + std::to_string(s.mode) + " is not a " + s.type;
  }
  if (s.type != kTypeFile && !s.chunks.empty()) return "chunks on a " + s.type;
  if (s.type != kTypeSymlink && !s.target.empty()) return "a target on a " + s.type;
  if (s.type != kTypeSpecial && s.rdev != 0) return "rdev on a " + s.type;
  if (s.type == kTypeSymlink) {
    if (s.target.empty() || s.target.size() > kMaxSymlinkTarget) return "bad symlink target size";
    if (s.target.find('\0') != std::string::npos) return "a NUL in the symlink target";
    if (s.size != s.target.size()) return "symlink size is not the target's length";
  }
  if (s.type == kTypeFile) {
    uint64_t sum = 0;
    for (const ChunkRef& c : s.chunks) {
      if (!IsSha256Hex(c.sha256)) return "chunk sha256 is not 64 lower-case hex digits";
      if (c.size == 0) return "a chunk of size 0";
      if (c.size > std::numeric_limits<uint64_t>::max() - sum) return "chunk sizes overflow";
      sum += c.size;
    }
    if (sum != s.size) {
      return "size " + std::to_string(s.size) + " is not the sum of its chunks (" +
             std::to_string(sum) + ")";
    }
  }
  return "";
}

bool IsBelow(std::string_view path, std::string_view dir) {
  return path.size() > dir.size() && path.starts_with(dir) && path[dir.size()] == '/';
}

std::string CheckEntry(const Entry& e, SegmentKind kind) {
  if (e.time_ns < 0) return "negative time_ns";
  if (Status st = ValidatePath(e.path); !st.ok()) return "path: " + st.message();
  if (kind == SegmentKind::kBase && e.op != EntryOp::kPut) return "a base holds only puts";
  if (e.op != EntryOp::kRename && (!e.new_path.empty() || e.exchange)) {
    return "new_path or exchange on a " + std::string(EntryOpName(e.op));
  }
  if (e.op != EntryOp::kPut && !(e.state == PathState{})) {
    return "a state on a " + std::string(EntryOpName(e.op));
  }
  if (e.op == EntryOp::kPut) return CheckState(e.state);
  if (e.op == EntryOp::kRename) {
    if (Status st = ValidatePath(e.new_path); !st.ok()) return "new_path: " + st.message();
    if (e.new_path == e.path || IsBelow(e.new_path, e.path) || IsBelow(e.path, e.new_path)) {
      return "rename of a path onto itself, into itself or over an ancestor";
    }
  }
  return "";
}

std::string CheckHeader(const SegmentHeader& h) {
  if (h.kind == SegmentKind::kBase ? h.level != 0 : (h.level < 0 || h.level > kMaxLevel)) {
    return "bad level " + std::to_string(h.level);
  }
  if (h.first_seq > h.last_seq) return "first_seq > last_seq";
  if (h.first_time_ns < 0 || h.first_time_ns > h.last_time_ns) return "bad time range";
  return "";
}

// The rules between entries; `i` is the entry's index.
std::string CheckOrder(const SegmentHeader& h, const std::vector<Entry>& entries, size_t i) {
  const Entry& e = entries[i];
  if (e.seq < h.first_seq || e.seq > h.last_seq) return "seq outside [first_seq, last_seq]";
  if (h.kind == SegmentKind::kBase) {
    if (i > 0 && !(entries[i - 1].path < e.path)) return "base paths not strictly increasing";
    return "";
  }
  if (i > 0 && entries[i - 1].seq >= e.seq) return "seqs not strictly increasing";
  if (e.time_ns < h.first_time_ns || e.time_ns > h.last_time_ns) {
    return "time_ns outside [first_time_ns, last_time_ns]";
  }
  return "";
}

// ---- JSON <-> values ------------------------------------------------------------

OrderedJson HeaderJson(const SegmentHeader& h) {
  return OrderedJson{{"format", kSegmentFormat},
                     {"version", kSegmentVersion},
                     {"kind", SegmentKindName(h.kind)},
                     {"level", h.level},
                     {"first_seq", h.first_seq},
                     {"last_seq", h.last_seq},
                     {"first_time_ns", h.first_time_ns},
                     {"last_time_ns", h.last_time_ns},
                     {"count", h.count}};
}

OrderedJson EntryJson(const Entry& e) {
  OrderedJson j{{"seq", e.seq},
                {"time_ns", e.time_ns},
                {"op", EntryOpName(e.op)},
                {"path", BytesJson(e.path)}};
  if (e.op == EntryOp::kRename) {
    j["new_path"] = BytesJson(e.new_path);
    j["exchange"] = e.exchange;
  }
  if (e.op != EntryOp::kPut) return j;
  const PathState& s = e.state;
  j["type"] = s.type;
  j["size"] = s.size;
  j["mode"] = s.mode;
  j["uid"] = s.uid;
  j["gid"] = s.gid;
  j["mtime_ns"] = s.mtime_ns;
  if (s.type == kTypeSymlink) j["target"] = BytesJson(s.target);
  if (s.type == kTypeSpecial) j["rdev"] = s.rdev;
  if (s.type == kTypeFile) {
    OrderedJson chunks = OrderedJson::array();
    for (const ChunkRef& c : s.chunks) chunks.push_back({{"sha256", c.sha256}, {"size", c.size}});
    j["chunks"] = std::move(chunks);
  }
  return j;
}

std::string ParseHeader(const Json& j, SegmentHeader* h) {
  if (!j.is_object()) return "the header is not a JSON object";
  FieldReader r(j);
  if (r.String("format") != kSegmentFormat) {
    return r.error().empty() ? "not a scribefs timeline segment" : r.error();
  }
  uint64_t version = r.Uint("version");
  if (r.error().empty() && version != kSegmentVersion) {
    return "version " + std::to_string(version) + " (this scribefs reads version " +
           std::to_string(kSegmentVersion) + ")";
  }
  std::string kind = r.String("kind");
  h->level = static_cast<int>(r.Uint("level", kMaxLevel));
  h->first_seq = r.Uint("first_seq");
  h->last_seq = r.Uint("last_seq");
  h->first_time_ns = r.Int("first_time_ns", true);
  h->last_time_ns = r.Int("last_time_ns", true);
  h->count = r.Uint("count");
  if (!r.error().empty()) return r.error();
  if (kind != "delta" && kind != "base") return "unknown kind \"" + kind + "\"";
  h->kind = kind == "base" ? SegmentKind::kBase : SegmentKind::kDelta;
  return CheckHeader(*h);
}

std::string ParseChunks(const Json& arr, std::vector<ChunkRef>* chunks) {
  for (const Json& c : arr) {
    if (!c.is_object()) return "a chunk is not an object";
    FieldReader r(c);
    ChunkRef ref;
    ref.sha256 = r.String("sha256");
    ref.size = r.Uint("size");
    if (!r.error().empty()) return "chunk: " + r.error();
    chunks->push_back(std::move(ref));
  }
  return "";
}

std::string ParseEntry(const Json& j, Entry* e) {
  if (!j.is_object()) return "not a JSON object";
  FieldReader r(j);
  e->seq = r.Uint("seq");
  e->time_ns = r.Int("time_ns", true);
  std::string op = r.String("op");
  e->path = r.Bytes("path");
  if (!r.error().empty()) return r.error();
  if (op == "delete") {
    e->op = EntryOp::kDelete;
  } else if (op == "rename") {
    e->op = EntryOp::kRename;
    e->new_path = r.Bytes("new_path");
    if (r.has("exchange")) e->exchange = r.Bool("exchange");
  } else if (op == "put") {
    e->op = EntryOp::kPut;
    PathState& s = e->state;
    s.type = r.String("type");
    s.size = r.Uint("size");
    s.mode = static_cast<uint32_t>(r.Uint("mode", std::numeric_limits<uint32_t>::max()));
    s.uid = static_cast<uint32_t>(r.Uint("uid", std::numeric_limits<uint32_t>::max()));
    s.gid = static_cast<uint32_t>(r.Uint("gid", std::numeric_limits<uint32_t>::max()));
    s.mtime_ns = r.Int("mtime_ns");
    // Fields of another type are read too, so that CheckState refuses them.
    if (s.type == kTypeSymlink || r.has("target")) s.target = r.Bytes("target");
    if (r.has("rdev")) s.rdev = r.Uint("rdev");
    if (s.type == kTypeFile || r.has("chunks")) {
      if (const Json* arr = r.Array("chunks"); arr && r.error().empty()) {
        if (std::string why = ParseChunks(*arr, &s.chunks); !why.empty()) return why;
      }
    }
  } else {
    return r.error().empty() ? "unknown op \"" + op + "\"" : r.error();
  }
  return r.error();
}

// ---- zstd ------------------------------------------------------------------------

struct DCtxDeleter {
  void operator()(ZSTD_DCtx* ctx) const { ZSTD_freeDCtx(ctx); }
};

// Decompresses `in` (one or more frames) up to `max` bytes; with
// `first_line_only`, stops as soon as a '\n' has come out.
Result<std::string> Decompress(std::string_view in, const std::string& what, uint64_t max,
                               bool first_line_only) {
  auto fail = [&](const std::string& why) { return Invalid("segment " + what + ": " + why); };
  if (in.empty()) return fail("empty");
  const unsigned long long declared = ZSTD_getFrameContentSize(in.data(), in.size());
  if (declared == ZSTD_CONTENTSIZE_ERROR) return fail("not zstd data");
  if (declared != ZSTD_CONTENTSIZE_UNKNOWN && declared > max && !first_line_only) {
    return fail("declares " + std::to_string(declared) + " bytes, more than the limit of " +
                std::to_string(max));
  }
  std::unique_ptr<ZSTD_DCtx, DCtxDeleter> ctx(ZSTD_createDCtx());
  if (!ctx) return Status::Error(ENOMEM, "segment " + what + ": ZSTD_createDCtx failed");
  ZSTD_inBuffer input{in.data(), in.size(), 0};
  std::string out;
  size_t ret = 1;
  while (true) {
    const size_t old = out.size();
    const uint64_t room = max + 1 - old;  // one byte past the limit detects a bomb
    const size_t step = static_cast<size_t>(std::min<uint64_t>(room, ZSTD_DStreamOutSize()));
    out.resize(old + step);
    ZSTD_outBuffer output{out.data() + old, step, 0};
    ret = ZSTD_decompressStream(ctx.get(), &output, &input);
    out.resize(old + output.pos);
    if (ZSTD_isError(ret)) return fail(std::string("corrupt zstd data: ") + ZSTD_getErrorName(ret));
    if (out.size() > max) {
      return fail("decompresses to more than the limit of " + std::to_string(max) + " bytes");
    }
    if (first_line_only && out.find('\n', old) != std::string::npos) return out;
    const bool input_done = input.pos == input.size;
    if (input_done && ret == 0) return out;  // every frame complete
    if (input_done && output.pos < step) return fail("truncated zstd data");
  }
}

std::string LineError(const std::string& what, size_t line, const std::string& why) {
  return "segment " + what + " line " + std::to_string(line) + ": " + why;
}

}  // namespace

std::string_view EntryOpName(EntryOp op) {
  switch (op) {
    case EntryOp::kPut:
      return "put";
    case EntryOp::kDelete:
      return "delete";
    case EntryOp::kRename:
      return "rename";
  }
  return "?";
}

Status ValidatePath(std::string_view path) {
  if (path.empty()) return Invalid("empty path");
  if (path.find('\0') != std::string_view::npos) return Invalid("a NUL byte in the path");
  if (path.front() == '/') return Invalid("absolute path");
  if (path.back() == '/') return Invalid("trailing '/'");
  for (size_t start = 0; start <= path.size();) {
    size_t end = std::min(path.find('/', start), path.size());
    std::string_view part = path.substr(start, end - start);
    if (part.empty()) return Invalid("empty path component");
    if (part == "." || part == "..") return Invalid("\"" + std::string(part) + "\" component");
    start = end + 1;
  }
  if (IsReservedPath(path)) return Invalid("under the reserved .scribefs");
  return Status::Ok();
}

Status ValidateSegment(const Segment& segment) {
  const SegmentHeader& h = segment.header;
  if (std::string why = CheckHeader(h); !why.empty()) return Invalid("segment header: " + why);
  if (h.count != segment.entries.size()) return Invalid("segment header: wrong count");
  int64_t min_time = std::numeric_limits<int64_t>::max(), max_time = 0;
  for (size_t i = 0; i < segment.entries.size(); ++i) {
    std::string why = CheckEntry(segment.entries[i], h.kind);
    if (why.empty()) why = CheckOrder(h, segment.entries, i);
    if (!why.empty()) return Invalid("segment entry " + std::to_string(i + 1) + ": " + why);
    min_time = std::min(min_time, segment.entries[i].time_ns);
    max_time = std::max(max_time, segment.entries[i].time_ns);
  }
  if (h.kind == SegmentKind::kDelta && !segment.entries.empty() &&
      (h.first_time_ns != min_time || h.last_time_ns != max_time)) {
    return Invalid("segment header: first/last_time_ns are not the entries' least and greatest");
  }
  return Status::Ok();
}

Segment MakeDelta(std::vector<Entry> entries, int level, uint64_t first_seq, uint64_t last_seq) {
  Segment s;
  s.header.kind = SegmentKind::kDelta;
  s.header.level = level;
  s.header.first_seq = first_seq;
  s.header.last_seq = last_seq;
  s.header.count = entries.size();
  if (!entries.empty()) {
    auto [lo, hi] =
        std::minmax_element(entries.begin(), entries.end(),
                            [](const Entry& a, const Entry& b) { return a.time_ns < b.time_ns; });
    s.header.first_time_ns = lo->time_ns;
    s.header.last_time_ns = hi->time_ns;
  }
  s.entries = std::move(entries);
  return s;
}

Result<std::string> EncodeSegment(const Segment& segment) {
  SCRIBEFS_RETURN_IF_ERROR(ValidateSegment(segment));
  std::string text = HeaderJson(segment.header).dump();
  text.push_back('\n');
  for (const Entry& e : segment.entries) {
    text += EntryJson(e).dump();
    text.push_back('\n');
  }
  std::string out(ZSTD_compressBound(text.size()), '\0');
  size_t n = ZSTD_compress(out.data(), out.size(), text.data(), text.size(), 3);
  if (ZSTD_isError(n)) {
    return Status::Error(EIO, std::string("zstd compress: ") + ZSTD_getErrorName(n));
  }
  out.resize(n);
  return out;
}

Result<SegmentHeader> DecodeSegmentHeader(std::string_view compressed, const std::string& what,
                                          const DecodeLimits& limits) {
  auto text = Decompress(compressed, what, limits.max_decompressed, true);
  if (!text.ok()) return text.status();
  size_t nl = text->find('\n');
  if (nl == std::string::npos) return Invalid(LineError(what, 1, "no complete header line"));
  Json j = Json::parse(std::string_view(*text).substr(0, nl), nullptr, false);
  if (j.is_discarded()) return Invalid(LineError(what, 1, "not JSON"));
  SegmentHeader h;
  if (std::string why = ParseHeader(j, &h); !why.empty()) return Invalid(LineError(what, 1, why));
  return h;
}

Result<Segment> DecodeSegment(std::string_view compressed, const std::string& what,
                              const DecodeLimits& limits) {
  auto text = Decompress(compressed, what, limits.max_decompressed, false);
  if (!text.ok()) return text.status();
  std::string_view rest = *text;
  if (rest.empty() || rest.back() != '\n') {
    return Invalid("segment " + what + ": does not end with a complete line (truncated?)");
  }
  Segment segment;
  size_t line = 0;
  while (!rest.empty()) {
    size_t nl = rest.find('\n');
    std::string_view text_line = rest.substr(0, nl);
    rest.remove_prefix(nl + 1);
    ++line;
    Json j = Json::parse(text_line, nullptr, false);
    if (j.is_discarded()) return Invalid(LineError(what, line, "not JSON"));
    std::string why;
    if (line == 1) {
      why = ParseHeader(j, &segment.header);
    } else if (segment.entries.size() >= segment.header.count) {
      why = "more entries than the header's count " + std::to_string(segment.header.count);
    } else {
      Entry e;
      why = ParseEntry(j, &e);
      if (why.empty()) why = CheckEntry(e, segment.header.kind);
      if (why.empty()) {
        segment.entries.push_back(std::move(e));
        why = CheckOrder(segment.header, segment.entries, segment.entries.size() - 1);
      }
    }
    if (!why.empty()) return Invalid(LineError(what, line, why));
  }
  if (segment.entries.size() != segment.header.count) {
    return Invalid("segment " + what + ": " + std::to_string(segment.entries.size()) +
                   " entries, the header says " + std::to_string(segment.header.count));
  }
  // What is left: the time bounds of a delta (checked for the whole segment).
  if (Status st = ValidateSegment(segment); !st.ok()) return st.WithContext("segment " + what);
  return segment;
}

}  // namespace scribefs::history
