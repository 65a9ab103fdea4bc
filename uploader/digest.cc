#include "uploader/digest.h"

#include <openssl/evp.h>
#include <openssl/hmac.h>

#include <unistd.h>

#include <algorithm>
#include <cerrno>

namespace scribefs {
namespace {

Status OpenSslError(const char* what) {
  return Status::Error(EIO, std::string("OpenSSL ") + what + " failed");
}

}  // namespace

void Hasher::CtxDeleter::operator()(evp_md_ctx_st* ctx) const { EVP_MD_CTX_free(ctx); }

Result<Hasher> Hasher::Create(Algorithm algorithm) {
  std::unique_ptr<evp_md_ctx_st, CtxDeleter> ctx(EVP_MD_CTX_new());
  if (!ctx) return OpenSslError("EVP_MD_CTX_new");
  const EVP_MD* md = algorithm == Algorithm::kMd5 ? EVP_md5() : EVP_sha256();
  if (md == nullptr) return OpenSslError("EVP_md5/EVP_sha256");
  if (EVP_DigestInit_ex(ctx.get(), md, nullptr) != 1) return OpenSslError("EVP_DigestInit_ex");
  return Hasher(std::move(ctx));
}

Status Hasher::Update(std::string_view data) {
  if (!ctx_) return Status::Error(EINVAL, "hasher already finished");
  if (data.empty()) return Status::Ok();
  if (EVP_DigestUpdate(ctx_.get(), data.data(), data.size()) != 1) {
    return OpenSslError("EVP_DigestUpdate");
  }
  return Status::Ok();
}

Result<std::string> Hasher::Finish() {
  if (!ctx_) return Status::Error(EINVAL, "hasher already finished");
  unsigned char out[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  int rc = EVP_DigestFinal_ex(ctx_.get(), out, &len);
  ctx_.reset();
  if (rc != 1) return OpenSslError("EVP_DigestFinal_ex");
  return std::string(reinterpret_cast<const char*>(out), len);
}

Result<DualHasher> DualHasher::Create() {
  auto md5 = Hasher::Create(Hasher::Algorithm::kMd5);
  if (!md5.ok()) return md5.status();
  auto sha = Hasher::Create(Hasher::Algorithm::kSha256);
  if (!sha.ok()) return sha.status();
  return DualHasher(std::move(md5).value(), std::move(sha).value());
}

Status DualHasher::Update(std::string_view data) {
  SCRIBEFS_RETURN_IF_ERROR(md5_.Update(data));
  return sha256_.Update(data);
}

Result<DualHasher::Digests> DualHasher::Finish() {
  auto md5 = md5_.Finish();
  if (!md5.ok()) return md5.status();
  auto sha = sha256_.Finish();
  if (!sha.ok()) return sha.status();
  return Digests{std::move(md5).value(), std::move(sha).value()};
}

static Result<std::string> OneShot(Hasher::Algorithm algorithm, std::string_view data) {
  auto h = Hasher::Create(algorithm);
  if (!h.ok()) return h.status();
  SCRIBEFS_RETURN_IF_ERROR(h->Update(data));
  return h->Finish();
}

Result<std::string> Md5(std::string_view data) { return OneShot(Hasher::Algorithm::kMd5, data); }
Result<std::string> Sha256(std::string_view data) {
  return OneShot(Hasher::Algorithm::kSha256, data);
}

Result<std::string> HmacSha256(std::string_view key, std::string_view data) {
  unsigned char out[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  // HMAC() accepts a NULL data pointer only with length 0; give it a valid one.
  static const unsigned char kEmpty = 0;
  const unsigned char* d =
      data.empty() ? &kEmpty : reinterpret_cast<const unsigned char*>(data.data());
  if (HMAC(EVP_sha256(), key.data(), static_cast<int>(key.size()), d, data.size(), out, &len) ==
      nullptr) {
    return OpenSslError("HMAC");
  }
  return std::string(reinterpret_cast<const char*>(out), len);
}

std::string HexEncode(std::string_view bytes) {
  static const char kDigits[] = "0123456789abcdef";
  std::string out;
  out.reserve(bytes.size() * 2);
  for (unsigned char c : bytes) {
    out.push_back(kDigits[c >> 4]);
    out.push_back(kDigits[c & 15]);
  }
  return out;
}

std::string Base64Encode(std::string_view bytes) {
  static const char kAlphabet[] =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  out.reserve((bytes.size() + 2) / 3 * 4);
  size_t i = 0;
  for (; i + 3 <= bytes.size(); i += 3) {
    uint32_t v = (uint8_t(bytes[i]) << 16) | (uint8_t(bytes[i + 1]) << 8) | uint8_t(bytes[i + 2]);
    out.push_back(kAlphabet[(v >> 18) & 63]);
    out.push_back(kAlphabet[(v >> 12) & 63]);
    out.push_back(kAlphabet[(v >> 6) & 63]);
    out.push_back(kAlphabet[v & 63]);
  }
  if (size_t rest = bytes.size() - i; rest > 0) {
    uint32_t v = uint8_t(bytes[i]) << 16;
    if (rest == 2) v |= uint8_t(bytes[i + 1]) << 8;
    out.push_back(kAlphabet[(v >> 18) & 63]);
    out.push_back(kAlphabet[(v >> 12) & 63]);
    out.push_back(rest == 2 ? kAlphabet[(v >> 6) & 63] : '=');
    out.push_back('=');
  }
  return out;
}

Result<std::string> FileSha256Hex(int fd, uint64_t size) {
  auto h = Hasher::Create(Hasher::Algorithm::kSha256);
  if (!h.ok()) return h.status();
  std::string buf(1 << 20, '\0');
  uint64_t off = 0;
  while (off < size) {
    ssize_t n = pread(fd, buf.data(), std::min<uint64_t>(buf.size(), size - off), off);
    if (n < 0) return PosixError("read", errno);
    if (n == 0) break;
    SCRIBEFS_RETURN_IF_ERROR(h->Update(std::string_view(buf.data(), n)));
    off += n;
  }
  auto d = h->Finish();
  if (!d.ok()) return d.status();
  return HexEncode(*d);
}

}  // namespace scribefs
