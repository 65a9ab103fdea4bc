// S3Store: the s3://BUCKET[/PREFIX] target, S3 REST over libcurl, signed with
// SigV4 (uploader/sigv4.h).
//
// Addressing: path-style (http://ENDPOINT/BUCKET/KEY) when an endpoint is
// given, as every S3-compatible server (Ceph RGW, MinIO, ...) supports it;
// virtual-host style (https://BUCKET.s3.REGION.amazonaws.com/KEY) for AWS,
// except for bucket names with dots, which break the TLS wildcard and so go
// path-style to s3.REGION.amazonaws.com.
//
// Integrity: every PUT and UploadPart sends Content-MD5 and the payload's real
// SHA-256 as the signed x-amz-content-sha256, so the server verifies both. A
// file payload is hashed first and hashed again while it is sent; if the two
// differ (the file changed), the transfer is aborted before its last byte and
// the call fails with SourceChanged (retryable).
//
// Compatibility with Ceph RGW 16.2, which this is tested against: the copy
// precondition is sent both as x-amz-copy-source-if-match (AWS) and
// x-amz-copy-if-match (what RGW honours on CopyObject); RGW ignores both on
// UploadPartCopy, so there a HEAD checks the source ETag first (a narrow race
// remains: the caller can compare the returned part ETag with the range's
// MD5); ETags are accepted quoted or not;
// CompleteMultipartUpload is followed by a HEAD, since RGW's answer carries an
// empty ETag; error bodies without a Message are fine; a 200 answer that
// carries an <Error> (copy, complete) is an error.
//
// Thread safety: thread-safe. Each call borrows a CURL handle from a pool and
// returns it afterwards, so connections are reused and N concurrent workers use
// N handles. Credentials are never logged nor put into error messages.
#pragma once

#include <atomic>
#include <ctime>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "uploader/bandwidth.h"
#include "uploader/credentials.h"
#include "uploader/object_store.h"
#include "uploader/sigv4.h"

namespace scribefs {

struct S3Options {
  std::string bucket;
  std::string prefix;    // without leading or trailing "/"; "" for the bucket root
  std::string endpoint;  // "http(s)://host[:port]"; empty for AWS
  std::string region = "us-east-1";
  // Signs every request: the provider's current credentials, or, without a
  // provider, these fixed ones. A request the server rejects for its
  // credentials is sent once more when the provider has new ones (a renewed
  // session in the shared credentials file); an ExpiredToken that was not
  // renewed yet is retryable when the provider's credentials can change.
  std::shared_ptr<CredentialsProvider> credentials_provider;
  sigv4::Credentials credentials;
  bool verify_tls = true;
  std::string ca_file;  // PEM bundle; empty for the system's
  long connect_timeout_ms = 10'000;
  // A transfer slower than low_speed_limit bytes/s for low_speed_time_s is
  // aborted (retryable ETIMEDOUT). There is no overall limit: parts are large.
  long low_speed_limit = 1024;
  long low_speed_time_s = 30;
  std::function<std::time_t()> clock;  // signing time; default time(nullptr)
  // Request bodies pass through it as curl takes them; null: no limit.
  std::shared_ptr<BandwidthLimiter> bandwidth;
};

class S3Store : public ObjectStore {
 public:
  static Result<std::unique_ptr<S3Store>> Create(S3Options options);
  ~S3Store() override;

  // Creates the bucket (ok when it already exists and is ours). For tests and setup.
  StoreStatus CreateBucket();
  // Turns on versioning for the bucket (PUT ?versioning). For tests and setup.
  StoreStatus EnableVersioning();

  std::string Describe() const override;
  StoreResult<PutResult> Put(const std::string& key, const Payload& payload,
                             const Metadata& metadata) override;
  StoreResult<GetResult> Get(const std::string& key,
                             std::optional<ByteRange> range = std::nullopt) override;
  StoreResult<ObjectInfo> GetToFile(const std::string& key, int fd,
                                    std::optional<ByteRange> range = std::nullopt) override;
  StoreResult<ObjectInfo> Head(const std::string& key) override;
  // ?versionId=V (signed like every query parameter).
  StoreResult<GetResult> GetVersion(const std::string& key, const std::string& version_id,
                                    std::optional<ByteRange> range = std::nullopt) override;
  StoreResult<ObjectInfo> GetVersionToFile(const std::string& key, const std::string& version_id,
                                           int fd,
                                           std::optional<ByteRange> range = std::nullopt) override;
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
  struct Call;
  struct Response;
  struct CurlDeleter {
    void operator()(void* handle) const;
  };
  using CurlPtr = std::unique_ptr<void, CurlDeleter>;  // CURL*, kept out of this header

  S3Store(S3Options options, std::string scheme, std::string host, bool path_style);

  std::string FullKey(const std::string& key) const;
  std::string CopySource(const std::string& key) const;
  // Sends `call`, signed with the provider's credentials (see S3Options).
  StoreResult<Response> Perform(Call& call);
  StoreResult<Response> PerformSigned(Call& call, const sigv4::Credentials& credentials);
  CurlPtr AcquireHandle();
  void ReleaseHandle(CurlPtr handle);
  StoreResult<ObjectInfo> GetImpl(const std::string& key, const std::string& version_id,
                                  std::optional<ByteRange> range, int fd, std::string* body);

  const S3Options options_;
  const std::string scheme_;  // "http" or "https"
  const std::string host_;    // Host header: "host[:port]"
  const bool path_style_;

  std::mutex pool_mu_;
  std::vector<CurlPtr> pool_;  // GUARDED_BY(pool_mu_): idle handles

  // The socket each handle last connected, for TCP_QUICKACK (s3_store.cc).
  std::mutex sockets_mu_;
  std::map<const void*, int> sockets_;  // GUARDED_BY(sockets_mu_)

  std::atomic<uint64_t> requests_{0};
  std::atomic<uint64_t> bytes_sent_{0};
  std::atomic<uint64_t> bytes_received_{0};
};

}  // namespace scribefs
