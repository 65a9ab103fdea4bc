// Hashes for the uploader: MD5 (Content-MD5, ETags), SHA-256 (x-amz-content-sha256,
// the journal's checksum) and HMAC-SHA256 (SigV4), over OpenSSL EVP. Every
// OpenSSL return value is checked; a failure becomes a Status (EIO).
// Thread-compatible: a Hasher is used by one thread at a time.
#pragma once

#include <memory>
#include <string>
#include <string_view>

#include "common/status.h"

struct evp_md_ctx_st;  // EVP_MD_CTX, so that users need not include OpenSSL

namespace scribefs {

// Incremental digest. Move-only; Finish() may be called once.
class Hasher {
 public:
  enum class Algorithm { kMd5, kSha256 };
  static Result<Hasher> Create(Algorithm algorithm);

  Status Update(std::string_view data);
  // The raw digest (16 bytes for MD5, 32 for SHA-256).
  Result<std::string> Finish();

 private:
  struct CtxDeleter {
    void operator()(evp_md_ctx_st* ctx) const;
  };
  explicit Hasher(std::unique_ptr<evp_md_ctx_st, CtxDeleter> ctx) : ctx_(std::move(ctx)) {}
  std::unique_ptr<evp_md_ctx_st, CtxDeleter> ctx_;
};

// MD5 and SHA-256 of the same bytes in one pass.
class DualHasher {
 public:
  static Result<DualHasher> Create();
  Status Update(std::string_view data);
  // Raw digests.
  struct Digests {
    std::string md5;
    std::string sha256;
  };
  Result<Digests> Finish();

 private:
  DualHasher(Hasher md5, Hasher sha256) : md5_(std::move(md5)), sha256_(std::move(sha256)) {}
  Hasher md5_;
  Hasher sha256_;
};

// One-shot raw digests.
Result<std::string> Md5(std::string_view data);
Result<std::string> Sha256(std::string_view data);
Result<std::string> HmacSha256(std::string_view key, std::string_view data);

// Lower-case hex of raw bytes.
std::string HexEncode(std::string_view bytes);

// Hex SHA-256 of the first `size` bytes of the file open at fd (pread: the
// offset is left alone); fewer when the file is shorter.
Result<std::string> FileSha256Hex(int fd, uint64_t size);
// Standard base64 with padding (for Content-MD5).
std::string Base64Encode(std::string_view bytes);

// Hex SHA-256 of the empty string, the payload hash of requests without a body.
inline constexpr std::string_view kEmptySha256Hex =
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

}  // namespace scribefs
