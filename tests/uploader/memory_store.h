// Test stores: an in-memory ObjectStore (MemoryStore) that passes the store
// contract suite, and a fault-injecting wrapper (FaultyStore) around any
// store. For unit tests of what uses an ObjectStore (the replicator, restore,
// verify) without a server or a target directory.
//
// Thread-safe.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "uploader/object_store.h"

namespace scribefs {

// Objects in memory, with versions (every write makes one; Get without a
// version reads the newest). Behaves as LocalStore does where the contract
// says (keys, metadata, ETags, SourceChanged, multipart limits).
class MemoryStore : public ObjectStore {
 public:
  struct Version {
    std::string body;
    Metadata meta;
    std::string etag, version_id;
    int64_t mtime = 0;
  };

  // ---- test helpers (no validation: a test may store what a hostile client could)
  // Stores `body` under `key` as a new version (etag: MD5 unless given); its version id.
  std::string PutRaw(const std::string& key, const std::string& body, const Metadata& meta = {},
                     const std::string& etag = "");
  // Forgets the key and all its versions.
  void Remove(const std::string& key);
  // Gets of `key` fail with 403 AccessDenied from now on.
  void FailGets(const std::string& key);
  // The newest version, if any.
  std::optional<Version> Newest(const std::string& key);
  // Current keys, sorted.
  std::vector<std::string> Keys();
  int gets() const { return gets_; }
  int heads() const { return heads_; }

  // ---- ObjectStore
  std::string Describe() const override { return "memory://"; }
  StoreResult<PutResult> Put(const std::string& key, const Payload& payload,
                             const Metadata& metadata) override;
  StoreResult<GetResult> Get(const std::string& key,
                             std::optional<ByteRange> range = std::nullopt) override {
    return GetVersion(key, "", range);
  }
  StoreResult<ObjectInfo> GetToFile(const std::string& key, int fd,
                                    std::optional<ByteRange> range = std::nullopt) override {
    return GetVersionToFile(key, "", fd, range);
  }
  StoreResult<ObjectInfo> Head(const std::string& key) override { return HeadVersion(key, ""); }
  StoreResult<GetResult> GetVersion(const std::string& key, const std::string& version_id,
                                    std::optional<ByteRange> range) override;
  StoreResult<ObjectInfo> GetVersionToFile(const std::string& key, const std::string& version_id,
                                           int fd, std::optional<ByteRange> range) override;
  StoreResult<ObjectInfo> HeadVersion(const std::string& key,
                                      const std::string& version_id) override;
  StoreStatus Delete(const std::string& key) override;
  StoreStatus DeleteMany(const std::vector<std::string>& keys) override;
  StoreResult<CopyResult> Copy(const std::string& src_key, const std::string& dst_key,
                               const CopyOptions& options = {}) override;
  StoreStatus List(const ListOptions& options,
                   const std::function<bool(const ListEntry&)>& fn) override;
  StoreResult<std::string> CreateMultipartUpload(const std::string& key,
                                                 const Metadata& metadata) override;
  StoreResult<PartResult> UploadPart(const std::string& key, const std::string& upload_id,
                                     int part_number, const Payload& payload) override;
  StoreResult<PartResult> UploadPartCopy(const std::string& key, const std::string& upload_id,
                                         int part_number, const std::string& src_key,
                                         ByteRange range, const std::string& if_match) override;
  StoreResult<PutResult> CompleteMultipartUpload(const std::string& key,
                                                 const std::string& upload_id,
                                                 const std::vector<CompletedPart>& parts) override;
  StoreStatus AbortMultipartUpload(const std::string& key, const std::string& upload_id) override;
  StoreResult<std::vector<MultipartUpload>> ListMultipartUploads(
      const std::string& prefix) override;
  StoreStats stats() const override;

 private:
  struct Upload {
    std::string key;
    Metadata meta;
    std::map<int, std::string> parts;  // number -> body
    int64_t initiated = 0;
  };
  StoreResult<Version> Find(const std::string& key, const std::string& version_id,
                            const char* op);
  std::string NewVersionLocked(const std::string& key, Version v);  // requires mu_

  mutable std::mutex mu_;
  std::map<std::string, std::vector<Version>> objects_;
  std::map<std::string, Upload> uploads_;  // by upload id
  std::set<std::string> failing_gets_;
  uint64_t seq_ = 0;
  std::atomic<int> gets_{0}, heads_{0};
  std::atomic<uint64_t> requests_{0}, bytes_sent_{0}, bytes_received_{0};
};

// Wraps a store and injects faults by operation name ("Put", "Get", "Head",
// "Delete", "DeleteMany", "Copy", "List", "CreateMultipartUpload",
// "UploadPart", "UploadPartCopy", "CompleteMultipartUpload",
// "AbortMultipartUpload"; "*" matches any): an error answer instead of the
// request, a delay before it, or a cut upload (the request reaches the
// store, then the answer is lost: the caller sees a network error although
// the object was stored). Counts the calls per operation.
class FaultyStore : public ObjectStore {
 public:
  explicit FaultyStore(std::unique_ptr<ObjectStore> inner) : inner_(std::move(inner)) {}

  enum class Fault { kError, kCutAfter };
  // The next `times` calls of `op` (for keys starting with `key_prefix`)
  // fail with `status` (kError: not sent; kCutAfter: sent, answer lost).
  void Inject(const std::string& op, StoreStatus status, int times = 1,
              Fault fault = Fault::kError, const std::string& key_prefix = "");
  // Every call of `op` waits `delay` first.
  void Delay(const std::string& op, std::chrono::milliseconds delay);
  void Clear();
  int calls(const std::string& op) const;

  // Errors as the S3 store reports them.
  static StoreStatus Http(int http_status, const std::string& code, bool retryable);
  static StoreStatus Unavailable() { return Http(503, "SlowDown", true); }
  static StoreStatus Forbidden() { return Http(403, "AccessDenied", false); }
  static StoreStatus NetworkError();

  ObjectStore& inner() { return *inner_; }

  std::string Describe() const override { return inner_->Describe(); }
  StoreResult<PutResult> Put(const std::string& key, const Payload& payload,
                             const Metadata& metadata) override;
  StoreResult<GetResult> Get(const std::string& key,
                             std::optional<ByteRange> range = std::nullopt) override;
  StoreResult<ObjectInfo> GetToFile(const std::string& key, int fd,
                                    std::optional<ByteRange> range = std::nullopt) override;
  StoreResult<ObjectInfo> Head(const std::string& key) override;
  StoreStatus Delete(const std::string& key) override;
  StoreStatus DeleteMany(const std::vector<std::string>& keys) override;
  StoreResult<CopyResult> Copy(const std::string& src_key, const std::string& dst_key,
                               const CopyOptions& options = {}) override;
  StoreStatus List(const ListOptions& options,
                   const std::function<bool(const ListEntry&)>& fn) override;
  StoreResult<std::string> CreateMultipartUpload(const std::string& key,
                                                 const Metadata& metadata) override;
  StoreResult<PartResult> UploadPart(const std::string& key, const std::string& upload_id,
                                     int part_number, const Payload& payload) override;
  StoreResult<PartResult> UploadPartCopy(const std::string& key, const std::string& upload_id,
                                         int part_number, const std::string& src_key,
                                         ByteRange range, const std::string& if_match) override;
  StoreResult<PutResult> CompleteMultipartUpload(const std::string& key,
                                                 const std::string& upload_id,
                                                 const std::vector<CompletedPart>& parts) override;
  StoreStatus AbortMultipartUpload(const std::string& key, const std::string& upload_id) override;
  StoreResult<std::vector<MultipartUpload>> ListMultipartUploads(
      const std::string& prefix) override;
  StoreStats stats() const override { return inner_->stats(); }

 private:
  struct Rule {
    std::string op, key_prefix;
    StoreStatus status;
    int times = 0;
    Fault fault = Fault::kError;
  };
  // Counts the call, sleeps any delay; the fault to apply, if any.
  std::optional<Rule> Before(const std::string& op, const std::string& key);
  // Runs `call` unless a fault says otherwise.
  template <typename Call>
  auto Guard(const std::string& op, const std::string& key, Call call) -> decltype(call());

  std::unique_ptr<ObjectStore> inner_;
  mutable std::mutex mu_;
  std::vector<Rule> rules_;
  std::map<std::string, std::chrono::milliseconds> delays_;
  std::map<std::string, int> calls_;
};

}  // namespace scribefs
