// LocalStore: the file:///PATH target, the same object layout in a local directory.
//
// Layout under PATH:
//   PATH/a/b/c                      the object "a/b/c" (a regular file)
//   PATH/dir/                       the directory marker "dir/" (a directory that
//                                   also has a marker sidecar; directories created
//                                   only as parents of objects are not listed)
//   PATH/.scribefs-local/meta/a/b/c.obj.json    sidecar of "a/b/c": ETag, user
//                                   metadata, and the (inode, size, mtime) of the
//                                   data file it describes
//   PATH/.scribefs-local/meta/dir.dir.json      sidecar of the marker "dir/"
//                                   (a leaf of 225 bytes or more: named
//                                   "#<SHA-256 of the leaf>.obj.json")
//   PATH/.scribefs-local/tmp/       temporary files (same filesystem, for rename)
//   PATH/.scribefs-local/uploads/ID/  multipart uploads: info.json + part files
// Keys whose first component is ".scribefs-local" are refused.
//
// Why a sidecar and not xattrs: it works on every filesystem (tmpfs, NFS, FAT
// on a USB disk), and a user browsing PATH sees only plain files. Writes go
// temp file -> fsync -> rename, data first, then the sidecar. A sidecar whose
// recorded (inode, size, mtime) does not match the data file (a crash between
// the two renames, or a file edited by hand) is ignored: the ETag is then
// recomputed from the data and the metadata is reported empty.
//
// Permissions: the replica shows nobody more than the source did. Running as
// root, each object's file (and each marker's directory) gets the owner and
// group of its source (metadata uid/gid) and the source's mode without the
// group/other write bits and without set-user-ID, set-group-ID and sticky
// bits; otherwise it stays the store's and group bits are dropped. Whatever
// the store makes for itself is private: PATH when it creates it, directories
// made only as parents of a key (0700), .scribefs-local (0700, its files
// 0600), objects without a mode (0600).
//
// Never writes outside PATH: keys are validated (ValidateKey) and every path is
// walked component by component with O_NOFOLLOW, so a symlink planted inside
// PATH is refused rather than followed.
//
// ETags are S3's: hex MD5 for a single PUT or copy, MD5-of-part-MD5s + "-N"
// after a multipart upload. Parts must be >= 5 MiB except the last, as on S3.
//
// Thread-safe. Several processes using one PATH at once are not supported.
#pragma once

#include <atomic>
#include <memory>
#include <shared_mutex>
#include <string>

#include "common/unique_fd.h"
#include "uploader/bandwidth.h"
#include "uploader/object_store.h"

namespace scribefs {

class LocalStore : public ObjectStore {
 public:
  // `root` must be absolute. Its last component is created (0700) if missing;
  // its parent must exist. The bytes of Put and UploadPart bodies pass
  // through `bandwidth` (may be null: no limit); copies do not, as on S3.
  static Result<std::unique_ptr<LocalStore>> Open(
      const std::string& root, std::shared_ptr<BandwidthLimiter> bandwidth = nullptr);

  std::string Describe() const override { return "file://" + root_; }
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
  StoreStats stats() const override;

  // Where the object `key` lives on disk (for tests and for people).
  std::string PathOf(const std::string& key) const { return root_ + "/" + key; }

 private:
  struct Object;  // an open data file with its stat and (validated) sidecar
  class TempFile;

  LocalStore(std::string root, UniqueFd root_fd, UniqueFd meta_fd, UniqueFd tmp_fd,
             UniqueFd uploads_fd);

  StoreStatus CheckKey(const std::string& key, const char* op) const;
  StoreResult<Object> OpenObject(const std::string& key, const char* op);
  StoreStatus CopyOut(const Object& obj, ByteRange range, std::string* to_string, int to_fd);
  // Writes payload into a new temp file in `dir_fd` (tmp_fd_ when -1);
  // `limited`: a request's body, through bandwidth_ and counted as sent
  // (uploads, not server-side copies).
  StoreResult<TempFile> WriteTemp(const Payload& payload, int dir_fd, std::string* md5,
                                  std::string* sha256, bool limited);
  // WriteAll, in slices that bandwidth_ lets go when `limited`.
  StoreStatus WriteBody(int fd, std::string_view data, bool limited);
  // Moves `temp` to `key` and writes its sidecar.
  StoreStatus Commit(const std::string& key, TempFile& temp, const std::string& etag,
                     const Metadata& metadata);
  StoreResult<PutResult> PutMarker(const std::string& key, const Metadata& metadata);
  void Prune(const std::string& key);
  StoreResult<UniqueFd> OpenUpload(const std::string& key, const std::string& upload_id,
                                   const char* op, Metadata* metadata);

  const std::string root_;
  const UniqueFd root_fd_;
  const UniqueFd meta_fd_;
  const UniqueFd tmp_fd_;
  const UniqueFd uploads_fd_;
  std::shared_ptr<BandwidthLimiter> bandwidth_;  // set by Open; may be null
  // Creating parent directories + renaming into them (shared) must not race
  // with removing empty directories (exclusive).
  std::shared_mutex namespace_mu_;
  std::atomic<uint64_t> requests_{0};
  std::atomic<uint64_t> bytes_sent_{0};
  std::atomic<uint64_t> bytes_received_{0};
};

}  // namespace scribefs
