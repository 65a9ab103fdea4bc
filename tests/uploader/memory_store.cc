#include "tests/uploader/memory_store.h"

#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <ctime>
#include <thread>

#include "uploader/digest.h"

namespace scribefs {

namespace {

StoreStatus CheckKey(const std::string& key, const char* op) {
  Status s = ValidateKey(key);
  if (!s.ok()) return StoreStatus(s.WithContext(op));
  return StoreStatus();
}

std::string StripQuotes(std::string s) {
  if (s.size() >= 2 && s.front() == '"' && s.back() == '"') s = s.substr(1, s.size() - 2);
  return s;
}

std::string Md5Hex(std::string_view s) { return HexEncode(*Md5(s)); }

// The bytes of a payload; a file that shrinks or loses its last name while
// it is read is SourceChanged (retryable), as the contract says.
StoreResult<std::string> Read(const Payload& p) {
  if (!p.is_file()) return std::string(p.data());
  std::string out(p.size(), '\0');
  uint64_t done = 0;
  while (done < p.size()) {
    auto n = p.ReadAt(out.data() + done, p.size() - done, done);
    if (!n.ok()) return n.status();
    if (*n == 0)
      return S3LikeError(EAGAIN, 0, "SourceChanged", "source file shrank during the upload");
    done += *n;
  }
  if (p.Unlinked())
    return S3LikeError(EAGAIN, 0, "SourceChanged", "source file deleted during the upload");
  return out;
}

int64_t Now() { return int64_t(time(nullptr)); }

StoreResult<ByteRange> Clip(std::optional<ByteRange> range, uint64_t size, const std::string& key) {
  if (!range) return ByteRange{0, size};
  if (range->length == 0 || range->offset >= size)
    return S3LikeError(EINVAL, 416, "InvalidRange", "GET " + key + ": range not satisfiable");
  return ByteRange{range->offset, std::min(range->length, size - range->offset)};
}

}  // namespace

// ---- MemoryStore -------------------------------------------------------------

std::string MemoryStore::NewVersionLocked(const std::string& key, Version v) {
  v.version_id = "v" + std::to_string(++seq_);
  if (v.mtime == 0) v.mtime = Now();
  objects_[key].push_back(std::move(v));
  return objects_[key].back().version_id;
}

std::string MemoryStore::PutRaw(const std::string& key, const std::string& body,
                                const Metadata& meta, const std::string& etag) {
  std::lock_guard lock(mu_);
  return NewVersionLocked(key, Version{body, meta, etag.empty() ? Md5Hex(body) : etag, "",
                                       1700000000});
}

void MemoryStore::Remove(const std::string& key) {
  std::lock_guard lock(mu_);
  objects_.erase(key);
}

void MemoryStore::FailGets(const std::string& key) {
  std::lock_guard lock(mu_);
  failing_gets_.insert(key);
}

std::optional<MemoryStore::Version> MemoryStore::Newest(const std::string& key) {
  std::lock_guard lock(mu_);
  auto it = objects_.find(key);
  if (it == objects_.end()) return std::nullopt;
  return it->second.back();
}

std::vector<std::string> MemoryStore::Keys() {
  std::lock_guard lock(mu_);
  std::vector<std::string> keys;
  for (const auto& [k, v] : objects_) keys.push_back(k);
  return keys;
}

StoreStats MemoryStore::stats() const { return {requests_, bytes_sent_, bytes_received_}; }

StoreResult<MemoryStore::Version> MemoryStore::Find(const std::string& key,
                                                    const std::string& version_id,
                                                    const char* op) {
  std::lock_guard lock(mu_);
  auto it = objects_.find(key);
  if (it == objects_.end()) return NoSuchKey(op, key);
  if (version_id.empty()) return it->second.back();
  for (const auto& v : it->second)
    if (v.version_id == version_id) return v;
  StoreErrorInfo info;
  info.http_status = 404;
  info.error_code = "NoSuchVersion";
  return StoreStatus(Status::Error(ENOENT, std::string(op) + " " + key + ": no version " +
                                               version_id),
                     info);
}

StoreResult<PutResult> MemoryStore::Put(const std::string& key, const Payload& payload,
                                        const Metadata& metadata) {
  ++requests_;
  SCRIBEFS_RETURN_IF_STORE_ERROR(CheckKey(key, "PUT"));
  Status ms = ValidateMetadata(metadata);
  if (!ms.ok()) return StoreStatus(ms.WithContext("PUT " + key));
  auto body = Read(payload);
  if (!body.ok()) return body.status();
  bytes_sent_ += body->size();
  PutResult r;
  r.etag = r.md5_hex = Md5Hex(*body);
  r.sha256_hex = HexEncode(*Sha256(*body));
  r.size = body->size();
  std::lock_guard lock(mu_);
  r.version_id = NewVersionLocked(key, Version{std::move(*body), metadata, r.etag});
  return r;
}

StoreResult<GetResult> MemoryStore::GetVersion(const std::string& key,
                                               const std::string& version_id,
                                               std::optional<ByteRange> range) {
  ++requests_;
  ++gets_;
  auto v = Find(key, version_id, "GET");
  if (!v.ok()) return v.status();
  {
    std::lock_guard lock(mu_);
    if (failing_gets_.count(key)) {
      StoreErrorInfo info;
      info.http_status = 403;
      info.error_code = "AccessDenied";
      return StoreStatus(Status::Error(EACCES, "GET " + key + ": HTTP 403 AccessDenied"), info);
    }
  }
  auto r = Clip(range, v->body.size(), key);
  if (!r.ok()) return r.status();
  GetResult out;
  out.info = ObjectInfo{key, v->body.size(), v->etag, v->version_id, v->meta, v->mtime};
  out.body = v->body.substr(r->offset, r->length);
  bytes_received_ += out.body.size();
  return out;
}

StoreResult<ObjectInfo> MemoryStore::GetVersionToFile(const std::string& key,
                                                      const std::string& version_id, int fd,
                                                      std::optional<ByteRange> range) {
  auto g = GetVersion(key, version_id, range);
  if (!g.ok()) return g.status();
  for (size_t done = 0; done < g->body.size();) {
    ssize_t n = write(fd, g->body.data() + done, g->body.size() - done);
    if (n < 0) return StoreStatus(PosixError("write", errno));
    done += size_t(n);
  }
  return g->info;
}

StoreResult<ObjectInfo> MemoryStore::HeadVersion(const std::string& key,
                                                 const std::string& version_id) {
  ++requests_;
  ++heads_;
  auto v = Find(key, version_id, "HEAD");
  if (!v.ok()) return v.status();
  return ObjectInfo{key, v->body.size(), v->etag, v->version_id, v->meta, v->mtime};
}

StoreStatus MemoryStore::Delete(const std::string& key) {
  ++requests_;
  SCRIBEFS_RETURN_IF_STORE_ERROR(CheckKey(key, "DELETE"));
  std::lock_guard lock(mu_);
  objects_.erase(key);
  return StoreStatus();
}

StoreStatus MemoryStore::DeleteMany(const std::vector<std::string>& keys) {
  ++requests_;
  for (const auto& k : keys) SCRIBEFS_RETURN_IF_STORE_ERROR(CheckKey(k, "DELETE"));
  std::lock_guard lock(mu_);
  for (const auto& k : keys) objects_.erase(k);
  return StoreStatus();
}

StoreResult<CopyResult> MemoryStore::Copy(const std::string& src_key, const std::string& dst_key,
                                          const CopyOptions& options) {
  ++requests_;
  SCRIBEFS_RETURN_IF_STORE_ERROR(CheckKey(src_key, "COPY"));
  SCRIBEFS_RETURN_IF_STORE_ERROR(CheckKey(dst_key, "COPY"));
  if (options.metadata) {
    Status ms = ValidateMetadata(*options.metadata);
    if (!ms.ok()) return StoreStatus(ms.WithContext("COPY " + dst_key));
  }
  auto src = Find(src_key, "", "COPY");
  if (!src.ok()) return src.status();
  if (!options.if_match.empty() && StripQuotes(options.if_match) != src->etag)
    return PreconditionFailed("COPY", src_key);
  Version v = *src;
  if (options.metadata) v.meta = *options.metadata;
  v.mtime = 0;
  std::lock_guard lock(mu_);
  std::string id = NewVersionLocked(dst_key, std::move(v));
  return CopyResult{src->etag, id};
}

StoreStatus MemoryStore::List(const ListOptions& options,
                              const std::function<bool(const ListEntry&)>& fn) {
  ++requests_;
  Status ps = ValidatePrefix(options.prefix);
  if (!ps.ok()) return StoreStatus(ps.WithContext("LIST"));
  std::vector<ListEntry> entries;
  {
    std::lock_guard lock(mu_);
    std::string last_prefix;
    for (auto it = objects_.lower_bound(options.prefix);
         it != objects_.end() && it->first.starts_with(options.prefix); ++it) {
      const std::string& key = it->first;
      if (!options.delimiter.empty()) {
        size_t pos = key.find(options.delimiter, options.prefix.size());
        if (pos != std::string::npos) {
          std::string common = key.substr(0, pos + options.delimiter.size());
          if (common != last_prefix) entries.push_back(ListEntry{common, true, 0, "", 0});
          last_prefix = common;
          continue;
        }
      }
      const Version& v = it->second.back();
      entries.push_back(ListEntry{key, false, v.body.size(), v.etag, v.mtime});
    }
  }
  for (const auto& e : entries)
    if (!fn(e)) break;
  return StoreStatus();
}

StoreResult<std::string> MemoryStore::CreateMultipartUpload(const std::string& key,
                                                            const Metadata& metadata) {
  ++requests_;
  SCRIBEFS_RETURN_IF_STORE_ERROR(CheckKey(key, "CREATE UPLOAD"));
  Status ms = ValidateMetadata(metadata);
  if (!ms.ok()) return StoreStatus(ms.WithContext("CREATE UPLOAD " + key));
  std::lock_guard lock(mu_);
  std::string id = Md5Hex(key + "#" + std::to_string(++seq_));
  uploads_[id] = Upload{key, metadata, {}, Now()};
  return id;
}

StoreResult<PartResult> MemoryStore::UploadPart(const std::string& key,
                                                const std::string& upload_id, int part_number,
                                                const Payload& payload) {
  ++requests_;
  SCRIBEFS_RETURN_IF_STORE_ERROR(CheckKey(key, "UPLOAD PART"));
  if (part_number < 1 || part_number > kMaxParts)
    return S3LikeError(EINVAL, 400, "InvalidArgument", "UPLOAD PART " + key + ": bad part number");
  auto body = Read(payload);
  if (!body.ok()) return body.status();
  bytes_sent_ += body->size();
  PartResult r{part_number, Md5Hex(*body), "", HexEncode(*Sha256(*body))};
  r.md5_hex = r.etag;
  std::lock_guard lock(mu_);
  auto it = uploads_.find(upload_id);
  if (it == uploads_.end() || it->second.key != key) return NoSuchUpload("UPLOAD PART", key);
  it->second.parts[part_number] = std::move(*body);
  return r;
}

StoreResult<PartResult> MemoryStore::UploadPartCopy(const std::string& key,
                                                    const std::string& upload_id,
                                                    int part_number, const std::string& src_key,
                                                    ByteRange range, const std::string& if_match) {
  ++requests_;
  SCRIBEFS_RETURN_IF_STORE_ERROR(CheckKey(key, "UPLOAD PART COPY"));
  auto src = Find(src_key, "", "UPLOAD PART COPY");
  if (!src.ok()) return src.status();
  if (!if_match.empty() && StripQuotes(if_match) != src->etag)
    return PreconditionFailed("UPLOAD PART COPY", src_key);
  auto r = Clip(range, src->body.size(), src_key);
  if (!r.ok()) return r.status();
  std::string body = src->body.substr(r->offset, r->length);
  PartResult out{part_number, Md5Hex(body), "", ""};
  std::lock_guard lock(mu_);
  auto it = uploads_.find(upload_id);
  if (it == uploads_.end() || it->second.key != key) return NoSuchUpload("UPLOAD PART COPY", key);
  it->second.parts[part_number] = std::move(body);
  return out;
}

StoreResult<PutResult> MemoryStore::CompleteMultipartUpload(
    const std::string& key, const std::string& upload_id, const std::vector<CompletedPart>& parts) {
  ++requests_;
  SCRIBEFS_RETURN_IF_STORE_ERROR(CheckKey(key, "COMPLETE UPLOAD"));
  const std::string what = "COMPLETE UPLOAD " + key;
  std::lock_guard lock(mu_);
  auto it = uploads_.find(upload_id);
  if (it == uploads_.end() || it->second.key != key) return NoSuchUpload("COMPLETE UPLOAD", key);
  if (parts.empty()) return S3LikeError(EINVAL, 400, "MalformedXML", what + ": no parts");
  std::string body, md5_concat;
  for (size_t i = 0; i < parts.size(); ++i) {
    if (i > 0 && parts[i].part_number <= parts[i - 1].part_number)
      return S3LikeError(EINVAL, 400, "InvalidPartOrder", what + ": parts not in ascending order");
    auto p = it->second.parts.find(parts[i].part_number);
    if (p == it->second.parts.end() || Md5Hex(p->second) != StripQuotes(parts[i].etag))
      return S3LikeError(EINVAL, 400, "InvalidPart", what + ": part " +
                                                    std::to_string(parts[i].part_number));
    if (i + 1 < parts.size() && p->second.size() < kMinPartSize)
      return S3LikeError(EINVAL, 400, "EntityTooSmall", what + ": a part but the last under 5 MiB");
    body += p->second;
    md5_concat += *Md5(p->second);
  }
  PutResult r;
  r.etag = Md5Hex(md5_concat) + "-" + std::to_string(parts.size());
  r.size = body.size();
  Metadata meta = it->second.meta;
  uploads_.erase(it);
  r.version_id = NewVersionLocked(key, Version{std::move(body), std::move(meta), r.etag});
  return r;
}

StoreStatus MemoryStore::AbortMultipartUpload(const std::string& key,
                                              const std::string& upload_id) {
  ++requests_;
  SCRIBEFS_RETURN_IF_STORE_ERROR(CheckKey(key, "ABORT UPLOAD"));
  std::lock_guard lock(mu_);
  auto it = uploads_.find(upload_id);
  if (it == uploads_.end() || it->second.key != key) return NoSuchUpload("ABORT UPLOAD", key);
  uploads_.erase(it);
  return StoreStatus();
}

StoreResult<std::vector<MultipartUpload>> MemoryStore::ListMultipartUploads(
    const std::string& prefix) {
  ++requests_;
  std::lock_guard lock(mu_);
  std::vector<MultipartUpload> out;
  for (const auto& [id, u] : uploads_)
    if (u.key.starts_with(prefix)) out.push_back({u.key, id, u.initiated});
  return out;
}

// ---- FaultyStore ---------------------------------------------------------------

StoreStatus FaultyStore::Http(int http_status, const std::string& code, bool retryable) {
  StoreErrorInfo info;
  info.http_status = http_status;
  info.error_code = code;
  info.retryable = retryable;
  int err = http_status >= 500 ? (http_status == 503 ? EAGAIN : EIO)
                               : (http_status == 403 ? EACCES : EINVAL);
  return StoreStatus(
      Status::Error(err, "injected: HTTP " + std::to_string(http_status) + " " + code), info);
}

StoreStatus FaultyStore::NetworkError() {
  StoreErrorInfo info;
  info.error_code = "CurlError";
  info.retryable = true;
  return StoreStatus(Status::Error(ECONNRESET, "injected: connection reset"), info);
}

void FaultyStore::Inject(const std::string& op, StoreStatus status, int times, Fault fault,
                         const std::string& key_prefix) {
  std::lock_guard lock(mu_);
  rules_.push_back(Rule{op, key_prefix, std::move(status), times, fault});
}

void FaultyStore::Delay(const std::string& op, std::chrono::milliseconds delay) {
  std::lock_guard lock(mu_);
  delays_[op] = delay;
}

void FaultyStore::Clear() {
  std::lock_guard lock(mu_);
  rules_.clear();
  delays_.clear();
}

int FaultyStore::calls(const std::string& op) const {
  std::lock_guard lock(mu_);
  auto it = calls_.find(op);
  return it == calls_.end() ? 0 : it->second;
}

std::optional<FaultyStore::Rule> FaultyStore::Before(const std::string& op,
                                                     const std::string& key) {
  std::chrono::milliseconds delay{0};
  std::optional<Rule> fault;
  {
    std::lock_guard lock(mu_);
    calls_[op]++;
    for (const auto& [o, d] : delays_)
      if (o == op || o == "*") delay = std::max(delay, d);
    for (auto it = rules_.begin(); it != rules_.end(); ++it) {
      if ((it->op != op && it->op != "*") || !key.starts_with(it->key_prefix)) continue;
      fault = *it;
      if (--it->times <= 0) rules_.erase(it);
      break;
    }
  }
  if (delay.count() > 0) std::this_thread::sleep_for(delay);
  return fault;
}

template <typename Call>
auto FaultyStore::Guard(const std::string& op, const std::string& key, Call call)
    -> decltype(call()) {
  auto fault = Before(op, key);
  if (!fault) return call();
  if (fault->fault == Fault::kCutAfter) (void)call();  // stored; the answer is lost
  return fault->status;
}

StoreResult<PutResult> FaultyStore::Put(const std::string& key, const Payload& payload,
                                        const Metadata& metadata) {
  return Guard("Put", key, [&] { return inner_->Put(key, payload, metadata); });
}
StoreResult<GetResult> FaultyStore::Get(const std::string& key, std::optional<ByteRange> range) {
  return Guard("Get", key, [&] { return inner_->Get(key, range); });
}
StoreResult<ObjectInfo> FaultyStore::GetToFile(const std::string& key, int fd,
                                               std::optional<ByteRange> range) {
  return Guard("Get", key, [&] { return inner_->GetToFile(key, fd, range); });
}
StoreResult<ObjectInfo> FaultyStore::Head(const std::string& key) {
  return Guard("Head", key, [&] { return inner_->Head(key); });
}
StoreStatus FaultyStore::Delete(const std::string& key) {
  return Guard("Delete", key, [&] { return inner_->Delete(key); });
}
StoreStatus FaultyStore::DeleteMany(const std::vector<std::string>& keys) {
  return Guard("DeleteMany", keys.empty() ? "" : keys.front(),
               [&] { return inner_->DeleteMany(keys); });
}
StoreResult<CopyResult> FaultyStore::Copy(const std::string& src_key, const std::string& dst_key,
                                          const CopyOptions& options) {
  return Guard("Copy", dst_key, [&] { return inner_->Copy(src_key, dst_key, options); });
}
StoreStatus FaultyStore::List(const ListOptions& options,
                              const std::function<bool(const ListEntry&)>& fn) {
  return Guard("List", options.prefix, [&] { return inner_->List(options, fn); });
}
StoreResult<std::string> FaultyStore::CreateMultipartUpload(const std::string& key,
                                                            const Metadata& metadata) {
  return Guard("CreateMultipartUpload", key,
               [&] { return inner_->CreateMultipartUpload(key, metadata); });
}
StoreResult<PartResult> FaultyStore::UploadPart(const std::string& key,
                                                const std::string& upload_id, int part_number,
                                                const Payload& payload) {
  return Guard("UploadPart", key,
               [&] { return inner_->UploadPart(key, upload_id, part_number, payload); });
}
StoreResult<PartResult> FaultyStore::UploadPartCopy(const std::string& key,
                                                    const std::string& upload_id,
                                                    int part_number, const std::string& src_key,
                                                    ByteRange range, const std::string& if_match) {
  return Guard("UploadPartCopy", key, [&] {
    return inner_->UploadPartCopy(key, upload_id, part_number, src_key, range, if_match);
  });
}
StoreResult<PutResult> FaultyStore::CompleteMultipartUpload(
    const std::string& key, const std::string& upload_id, const std::vector<CompletedPart>& parts) {
  return Guard("CompleteMultipartUpload", key,
               [&] { return inner_->CompleteMultipartUpload(key, upload_id, parts); });
}
StoreStatus FaultyStore::AbortMultipartUpload(const std::string& key,
                                              const std::string& upload_id) {
  return Guard("AbortMultipartUpload", key,
               [&] { return inner_->AbortMultipartUpload(key, upload_id); });
}
StoreResult<std::vector<MultipartUpload>> FaultyStore::ListMultipartUploads(
    const std::string& prefix) {
  return Guard("ListMultipartUploads", prefix,
               [&] { return inner_->ListMultipartUploads(prefix); });
}

}  // namespace scribefs
