#include "history/state_digest.h"

#include <openssl/sha.h>

#include <algorithm>
#include <atomic>
#include <string>

namespace scribefs::history {
namespace {

void AppendInt(std::string& out, uint64_t v) {
  for (int i = 0; i < 8; ++i) out.push_back(static_cast<char>(v >> (8 * i)));
}

// Length first, so that no two field lists run together into the same bytes.
void AppendString(std::string& out, const std::string& s) {
  AppendInt(out, s.size());
  out += s;
}

}  // namespace

StateDigest StateDigest::Of(const Entry& put) { return DigestOf(put.state); }

StateDigest DigestOf(const PathState& state) {
  std::string fields;
  fields.reserve(128 + 80 * state.chunks.size());
  AppendString(fields, state.type);
  AppendInt(fields, state.size);
  AppendInt(fields, state.mode);
  AppendInt(fields, state.uid);
  AppendInt(fields, state.gid);
  AppendInt(fields, static_cast<uint64_t>(state.mtime_ns));
  AppendString(fields, state.target);
  AppendInt(fields, state.rdev);
  AppendInt(fields, state.chunks.size());
  for (const ChunkRef& c : state.chunks) {
    AppendString(fields, c.sha256);
    AppendInt(fields, c.size);
  }
  StateDigest d;
  unsigned char full[SHA256_DIGEST_LENGTH];
  if (SHA256(reinterpret_cast<const unsigned char*>(fields.data()), fields.size(), full) !=
      nullptr) {
    std::copy_n(full, d.bytes.size(), d.bytes.begin());
    return d;
  }
  // OpenSSL could not hash (out of memory): a digest no other state has, so
  // that every entry for this path counts as a change (one written twice is
  // harmless; one dropped would be a hole in history).
  static std::atomic<uint64_t> unique{0};
  uint64_t n = ++unique;
  d.bytes.fill(0xff);
  std::copy_n(reinterpret_cast<const uint8_t*>(&n), sizeof n, d.bytes.begin());
  return d;
}

}  // namespace scribefs::history
