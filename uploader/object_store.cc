#include "uploader/object_store.h"

#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>

namespace scribefs {

StoreStatus::StoreStatus(Status status) : status_(std::move(status)) {
  info_.retryable = status_.code() == EINTR || status_.code() == EAGAIN;
}

StoreStatus S3LikeError(int code, int http_status, const std::string& error_code,
                        const std::string& message) {
  StoreErrorInfo info;
  info.http_status = http_status;
  info.error_code = error_code;
  info.retryable = error_code == "SourceChanged";  // as the ObjectStore contract says
  return StoreStatus(Status::Error(code, message + " (" + error_code + ")"), info);
}

StoreResult<size_t> Payload::ReadAt(void* buf, size_t n, uint64_t pos) const {
  if (source_) {
    auto r = source_->Pread(buf, n, offset_ + pos);
    if (!r.ok())
      return S3LikeError(EAGAIN, 0, "SourceChanged",
                         "source no longer readable: " + r.status().message());
    return *r;
  }
  for (;;) {
    ssize_t got = pread(fd_, buf, n, static_cast<off_t>(offset_ + pos));
    if (got >= 0) return static_cast<size_t>(got);
    if (errno != EINTR) return StoreStatus(PosixError("read source file", errno));
  }
}

bool Payload::Unlinked() const {
  struct stat st;
  return fd_ >= 0 && fstat(fd_, &st) == 0 && st.st_nlink == 0;
}

StoreStatus NoSuchKey(const char* op, const std::string& key) {
  return S3LikeError(ENOENT, 404, "NoSuchKey", std::string(op) + " " + key + ": no such object");
}

StoreStatus NoSuchUpload(const char* op, const std::string& key) {
  return S3LikeError(ENOENT, 404, "NoSuchUpload",
                     std::string(op) + " " + key + ": no such multipart upload");
}

StoreStatus PreconditionFailed(const char* op, const std::string& key) {
  return S3LikeError(ESTALE, 412, "PreconditionFailed",
                     std::string(op) + " " + key + ": source ETag does not match");
}

Status ValidateKey(std::string_view key, std::string_view what) {
  auto bad = [&](const char* why) {
    return Status::Error(EINVAL, std::string(what) + " \"" + std::string(key) + "\": " + why);
  };
  if (key.empty()) return bad("empty");
  if (key.size() > 1024) return bad("longer than 1024 bytes");
  if (key.front() == '/') return bad("absolute (starts with /)");
  if (key.find('\0') != std::string_view::npos) return bad("contains NUL");
  size_t start = 0;
  while (start < key.size()) {
    size_t end = key.find('/', start);
    if (end == std::string_view::npos) end = key.size();
    std::string_view part = key.substr(start, end - start);
    if (part.empty()) return bad("empty path component");
    if (part == "." || part == "..") return bad("\".\" or \"..\" component");
    start = end + 1;
  }
  return Status::Ok();
}

Status ValidatePrefix(std::string_view prefix) {
  if (prefix.empty()) return Status::Ok();
  // Every complete component must be valid; the last may be partial.
  size_t slash = prefix.rfind('/');
  if (slash == std::string_view::npos) {
    if (prefix.find('\0') != std::string_view::npos) {
      return Status::Error(EINVAL, "prefix contains NUL");
    }
    return Status::Ok();
  }
  std::string_view dirs = prefix.substr(0, slash + 1);
  SCRIBEFS_RETURN_IF_ERROR(ValidateKey(dirs, "prefix"));
  if (prefix.substr(slash + 1).find('\0') != std::string_view::npos) {
    return Status::Error(EINVAL, "prefix contains NUL");
  }
  return Status::Ok();
}

Status ValidateMetadata(const Metadata& metadata) {
  for (const auto& [name, value] : metadata) {
    if (name.empty()) return Status::Error(EINVAL, "metadata: empty name");
    for (char c : name) {
      if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '_')) {
        return Status::Error(EINVAL, "metadata name \"" + name + "\": only a-z 0-9 - _ allowed");
      }
    }
    for (char c : value) {
      if (c < 0x20 || c > 0x7e) {
        return Status::Error(EINVAL, "metadata \"" + name + "\": value must be printable ASCII");
      }
    }
    if (!value.empty() && (value.front() == ' ' || value.back() == ' ')) {
      return Status::Error(EINVAL, "metadata \"" + name + "\": value has outer spaces");
    }
  }
  return Status::Ok();
}

StoreResult<std::vector<ListEntry>> ObjectStore::ListAll(const ListOptions& options) {
  std::vector<ListEntry> out;
  StoreStatus st = List(options, [&](const ListEntry& e) {
    out.push_back(e);
    return true;
  });
  if (!st.ok()) return st;
  return out;
}

namespace {

StoreStatus NoVersions(const std::string& key, const char* op) {
  StoreErrorInfo info;
  info.error_code = "NotImplemented";
  return StoreStatus(
      Status::Error(ENOTSUP, std::string(op) + " " + key + ": this store keeps no versions"), info);
}

}  // namespace

StoreResult<GetResult> ObjectStore::GetVersion(const std::string& key,
                                               const std::string& version_id,
                                               std::optional<ByteRange> range) {
  if (!version_id.empty()) return NoVersions(key, "GET");
  return Get(key, range);
}

StoreResult<ObjectInfo> ObjectStore::GetVersionToFile(const std::string& key,
                                                      const std::string& version_id, int fd,
                                                      std::optional<ByteRange> range) {
  if (!version_id.empty()) return NoVersions(key, "GET");
  return GetToFile(key, fd, range);
}

StoreResult<ObjectInfo> ObjectStore::HeadVersion(const std::string& key,
                                                 const std::string& version_id) {
  if (!version_id.empty()) return NoVersions(key, "HEAD");
  return Head(key);
}

}  // namespace scribefs
