// ObjectStore: the one interface the uploader uses to talk to a target.
//
// Two implementations: S3Store (s3://BUCKET[/PREFIX], S3 REST over libcurl) and
// LocalStore (file:///PATH, the same layout in a local directory). Both pass the
// same contract test suite (tests/uploader/store_contract.h).
//
// Keys are relative to the target root: the store adds its PREFIX itself, and
// List returns keys without it. A key is a relative path: no leading "/", no
// empty, "." or ".." component, no NUL; a trailing "/" names a directory marker
// ("dir/"). ValidateKey() enforces this for every store, so that what works on
// one store works on the other.
//
// Errors: every call returns a StoreStatus / StoreResult<T>. Besides the errno
// style code and message of a Status it says whether retrying can help
// (network errors, timeouts, 5xx, throttling) or not (other 4xx), and carries
// the server's error code, message and request id for the journal. Never does
// an error or log line carry a credential.
//
// Thread safety: implementations are thread-safe; one store may be shared by
// all upload workers (S3Store keeps one CURL handle per concurrent caller).
#pragma once

#include <cstdint>
#include <ctime>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

#include "common/byte_range.h"
#include "common/status.h"

namespace scribefs {

// ---------------------------------------------------------------------------
// Errors

// Details of a failed store operation beyond the Status code and message.
struct StoreErrorInfo {
  // True when the same request may succeed later: connection failures,
  // timeouts, HTTP 5xx, throttling (503 SlowDown, 429), RequestTimeout, and a
  // source file that changed while it was being sent. False for everything the
  // caller must fix first (other 4xx, bad keys, local I/O errors).
  bool retryable = false;
  int http_status = 0;         // 0 when no HTTP response was received
  std::string error_code;      // the server's code ("NoSuchKey", "SignatureDoesNotMatch"),
                               // or the store's own ("SourceChanged", "CurlError")
  std::string server_message;  // the server's <Message>, may be empty
  std::string request_id;      // x-amz-request-id, for the operator to quote
};

// Status + StoreErrorInfo. The errno-style code() follows one mapping for all
// stores: ENOENT not found (NoSuchKey, NoSuchUpload, NoSuchBucket), EACCES
// 403, ESTALE precondition failed (412: the object is not the version the
// caller named), EAGAIN throttled / source changed, ETIMEDOUT timeouts,
// ECONNREFUSED / EHOSTUNREACH / ECONNRESET network, EIO 5xx, EINVAL other 4xx,
// EPROTO a response the store could not understand.
class [[nodiscard]] StoreStatus {
 public:
  StoreStatus() = default;  // ok
  // A local (non-network) error: not retryable unless its code is EINTR or EAGAIN.
  StoreStatus(Status status);  // NOLINT: implicit, so Status-returning helpers compose
  StoreStatus(Status status, StoreErrorInfo info)
      : status_(std::move(status)), info_(std::move(info)) {}

  bool ok() const { return status_.ok(); }
  const Status& status() const { return status_; }
  int code() const { return status_.code(); }
  const std::string& message() const { return status_.message(); }
  std::string ToString() const { return status_.ToString(); }
  const StoreErrorInfo& info() const { return info_; }

  bool retryable() const { return !ok() && info_.retryable; }
  bool not_found() const { return code() == ENOENT; }
  bool precondition_failed() const { return code() == ESTALE; }
  const std::string& error_code() const { return info_.error_code; }

  // "context: message"; keeps code and info.
  StoreStatus WithContext(const std::string& context) const {
    return StoreStatus(status_.WithContext(context), info_);
  }

 private:
  Status status_;
  StoreErrorInfo info_;
};

// A T or a non-ok StoreStatus.
template <typename T>
class [[nodiscard]] StoreResult {
 public:
  StoreResult(T value) : v_(std::move(value)) {}                      // NOLINT: implicit by design
  StoreResult(StoreStatus status) : v_(std::move(status)) {}          // NOLINT: must not be ok
  StoreResult(Status status) : v_(StoreStatus(std::move(status))) {}  // NOLINT
  bool ok() const { return std::holds_alternative<T>(v_); }
  const StoreStatus& status() const {
    static const StoreStatus kOk;
    return ok() ? kOk : std::get<StoreStatus>(v_);
  }
  T& value() & { return std::get<T>(v_); }
  const T& value() const& { return std::get<T>(v_); }
  T&& value() && { return std::get<T>(std::move(v_)); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }
  T& operator*() { return value(); }

 private:
  std::variant<T, StoreStatus> v_;
};

#define SCRIBEFS_RETURN_IF_STORE_ERROR(expr) \
  do {                                       \
    ::scribefs::StoreStatus _sst = (expr);   \
    if (!_sst.ok()) return _sst;             \
  } while (0)

// ---------------------------------------------------------------------------
// Values

// User metadata, sent as x-amz-meta-NAME. Names are lower case [a-z0-9_-]
// without the prefix; values printable ASCII (scribefs uses "mode", "uid",
// "gid", "mtime" with decimal values, as s3fs does).
using Metadata = std::map<std::string, std::string>;

// Ranges passed to a store have length > 0 (common/byte_range.h).

// Bytes read on demand from something other than a descriptor of DATADIR:
// a frozen file as it was at a checkpoint mark (uploader/marked_states.h).
// Such content cannot change while it is read; a read that fails means the
// source is gone (e.g. the capture was abandoned), and the store fails the
// request with SourceChanged (retryable), so that the caller goes again.
class PayloadSource {
 public:
  virtual ~PayloadSource() = default;
  // Up to n bytes at off; fewer only at the end of the content.
  virtual Result<size_t> Pread(void* buf, size_t n, uint64_t off) const = 0;
};

// What to upload: bytes in memory, or a range of an open file or of a
// PayloadSource. The store reads a file twice (once to hash, once to send)
// and fails with SourceChanged (retryable) if what it sent differs from what
// it hashed, so a file that changes during the upload is never stored with a
// wrong checksum. Likewise when the file loses its last name (st_nlink 0)
// while it is read: a deleted file is not stored, and the store stops
// reading it at once (so that a delete frees the disk space without waiting
// for the upload).
class Payload {
 public:
  // `data` must stay alive while the call that uses the Payload runs.
  static Payload FromMemory(std::string_view data) { return Payload(data); }
  // `fd` must stay open; it is read with pread, its offset is not used.
  static Payload FromFile(int fd, uint64_t offset, uint64_t length) {
    return Payload(fd, nullptr, offset, length);
  }
  // `source` must stay alive while the call that uses the Payload runs.
  static Payload FromSource(const PayloadSource* source, uint64_t offset, uint64_t length) {
    return Payload(-1, source, offset, length);
  }
  // Read on demand (a file or a source), not held in memory.
  bool is_file() const { return fd_ >= 0 || source_ != nullptr; }
  std::string_view data() const { return data_; }
  int fd() const { return fd_; }  // -1 for a source
  uint64_t offset() const { return offset_; }
  uint64_t size() const { return is_file() ? length_ : data_.size(); }

  // Up to n bytes at offset() + pos of a file or source (EINTR retried);
  // 0 when it ends there (the file shrank). A source's failure is
  // SourceChanged (retryable), a file's the read's errno.
  StoreResult<size_t> ReadAt(void* buf, size_t n, uint64_t pos) const;
  // The file lost its last name (st_nlink 0); never for a source.
  bool Unlinked() const;

 private:
  explicit Payload(std::string_view data) : data_(data) {}
  Payload(int fd, const PayloadSource* source, uint64_t offset, uint64_t length)
      : fd_(fd), source_(source), offset_(offset), length_(length) {}
  std::string_view data_;
  int fd_ = -1;
  const PayloadSource* source_ = nullptr;
  uint64_t offset_ = 0;
  uint64_t length_ = 0;
};

// What an upload stored. The hashes are of the bytes actually sent; the
// journal keeps etag and sha256_hex.
struct PutResult {
  std::string etag;        // without quotes
  std::string version_id;  // empty when the bucket is not versioned
  std::string md5_hex;
  std::string sha256_hex;
  uint64_t size = 0;
};

struct ObjectInfo {
  std::string key;    // relative to the store root
  uint64_t size = 0;  // whole object, also for a ranged Get
  std::string etag;   // without quotes
  std::string version_id;
  Metadata metadata;
  int64_t mtime = 0;  // server's Last-Modified, unix seconds (0 if unknown)
};

struct GetResult {
  ObjectInfo info;
  std::string body;
};

struct ListOptions {
  std::string prefix;     // relative key prefix, need not end in "/"
  std::string delimiter;  // usually "" or "/"
  int page_size = 1000;   // keys per request (S3 max-keys); paging is internal
};

struct ListEntry {
  std::string key;         // relative; for a common prefix: the prefix, ending in the delimiter
  bool is_prefix = false;  // a CommonPrefixes entry (only with a delimiter)
  uint64_t size = 0;
  std::string etag;
  int64_t mtime = 0;
};

struct CopyOptions {
  // Replace the metadata with this (x-amz-metadata-directive: REPLACE);
  // otherwise the source's is kept.
  std::optional<Metadata> metadata;
  // Copy only if the source's ETag is this one, else fail with ESTALE
  // (PreconditionFailed).
  std::string if_match;
};

struct CopyResult {
  std::string etag;
  std::string version_id;
};

struct PartResult {
  int part_number = 0;
  std::string etag;
  std::string md5_hex;     // empty for UploadPartCopy
  std::string sha256_hex;  // empty for UploadPartCopy
};

struct CompletedPart {
  int part_number = 0;
  std::string etag;
};

struct MultipartUpload {
  std::string key;
  std::string upload_id;
  int64_t initiated = 0;  // unix seconds
};

// Counters of what a store sent and received; monotonic, thread-safe to read.
struct StoreStats {
  uint64_t requests = 0;
  uint64_t bytes_sent = 0;      // request bodies
  uint64_t bytes_received = 0;  // response bodies
};

// S3's limits, which LocalStore enforces too.
inline constexpr uint64_t kMinPartSize = 5ull << 20;  // all parts but the last
inline constexpr int kMaxParts = 10000;

// Errors shaped like S3's, for stores that are not S3 (LocalStore, the tests'
// in-memory store), so that callers see the same codes from every store.
// SourceChanged is the one retryable code, as the contract says.
StoreStatus S3LikeError(int code, int http_status, const std::string& error_code,
                        const std::string& message);
StoreStatus NoSuchKey(const char* op, const std::string& key);
StoreStatus NoSuchUpload(const char* op, const std::string& key);
StoreStatus PreconditionFailed(const char* op, const std::string& key);

// Checks a key as described at the top of this file. `what` names it in the message.
Status ValidateKey(std::string_view key, std::string_view what = "key");
// A List prefix: "" or a key whose last component may be partial ("a/b" lists "a/bc").
Status ValidatePrefix(std::string_view prefix);
// Names [a-z0-9_-]+, values printable ASCII without outer spaces (they travel
// as HTTP headers, which servers trim).
Status ValidateMetadata(const Metadata& metadata);

// ---------------------------------------------------------------------------
// The interface

class ObjectStore {
 public:
  virtual ~ObjectStore() = default;

  // "s3://bucket/prefix" or "file:///path": what this store writes to.
  virtual std::string Describe() const = 0;

  // Stores `payload` under `key`, replacing any object there. The store
  // computes MD5 and SHA-256 and has the server verify them.
  virtual StoreResult<PutResult> Put(const std::string& key, const Payload& payload,
                                     const Metadata& metadata) = 0;

  // Reads the object (or `range` of it; a range past the end is clipped, one
  // starting at or past the end fails with EINVAL InvalidRange).
  virtual StoreResult<GetResult> Get(const std::string& key,
                                     std::optional<ByteRange> range = std::nullopt) = 0;
  // Same, writing the body to `fd` at its current offset with write().
  // On error, some bytes may have been written.
  virtual StoreResult<ObjectInfo> GetToFile(const std::string& key, int fd,
                                            std::optional<ByteRange> range = std::nullopt) = 0;

  // Size, ETag, metadata, version; not_found() when there is no such object.
  virtual StoreResult<ObjectInfo> Head(const std::string& key) = 0;

  // The same three reads of one version of the object (a versioned S3
  // bucket: the version_id a Put, Copy or CompleteMultipartUpload returned).
  // An empty version_id reads the current version, exactly as Get, GetToFile
  // and Head do. not_found() when that version does not exist. Stores
  // without versions (LocalStore) keep these defaults, which fail a
  // non-empty version_id with ENOTSUP ("NotImplemented", not retryable).
  virtual StoreResult<GetResult> GetVersion(const std::string& key, const std::string& version_id,
                                            std::optional<ByteRange> range = std::nullopt);
  virtual StoreResult<ObjectInfo> GetVersionToFile(const std::string& key,
                                                   const std::string& version_id, int fd,
                                                   std::optional<ByteRange> range = std::nullopt);
  virtual StoreResult<ObjectInfo> HeadVersion(const std::string& key,
                                              const std::string& version_id);

  // Deleting a key that does not exist succeeds, as in S3.
  virtual StoreStatus Delete(const std::string& key) = 0;
  // Deletes all keys (any number; batched internally). Fails if any key could
  // not be deleted, naming the first few.
  virtual StoreStatus DeleteMany(const std::vector<std::string>& keys) = 0;

  // Server-side copy (objects up to 5 GiB; larger ones need UploadPartCopy).
  virtual StoreResult<CopyResult> Copy(const std::string& src_key, const std::string& dst_key,
                                       const CopyOptions& options = {}) = 0;

  // Calls `fn` for each object (and, with a delimiter, each common prefix) in
  // key order, fetching pages as needed. `fn` returns false to stop early.
  virtual StoreStatus List(const ListOptions& options,
                           const std::function<bool(const ListEntry&)>& fn) = 0;
  // Convenience: collects everything List yields.
  StoreResult<std::vector<ListEntry>> ListAll(const ListOptions& options);

  // Multipart upload. Part numbers are 1..10000; every part but the last must
  // be at least 5 MiB (checked by Complete, as S3 does).
  virtual StoreResult<std::string> CreateMultipartUpload(const std::string& key,
                                                         const Metadata& metadata) = 0;
  virtual StoreResult<PartResult> UploadPart(const std::string& key, const std::string& upload_id,
                                             int part_number, const Payload& payload) = 0;
  // Copies `range` of `src_key` into the part; if `if_match` is not empty the
  // source must have that ETag, else ESTALE (PreconditionFailed).
  virtual StoreResult<PartResult> UploadPartCopy(const std::string& key,
                                                 const std::string& upload_id, int part_number,
                                                 const std::string& src_key, ByteRange range,
                                                 const std::string& if_match) = 0;
  // Parts in ascending part number order. The result's etag is the final
  // object's ETag (fetched with a HEAD when the server's answer has none).
  virtual StoreResult<PutResult> CompleteMultipartUpload(
      const std::string& key, const std::string& upload_id,
      const std::vector<CompletedPart>& parts) = 0;
  virtual StoreStatus AbortMultipartUpload(const std::string& key,
                                           const std::string& upload_id) = 0;
  // Unfinished uploads whose key starts with `prefix`, for cleaning up.
  virtual StoreResult<std::vector<MultipartUpload>> ListMultipartUploads(
      const std::string& prefix) = 0;

  virtual StoreStats stats() const = 0;
};

}  // namespace scribefs
