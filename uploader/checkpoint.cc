#include "uploader/checkpoint.h"

namespace scribefs {

Status ValidateCheckpointName(std::string_view name) {
  if (name.empty()) return Status::Error(EINVAL, "checkpoint name is empty");
  if (name.size() > kMaxCheckpointName)
    return Status::Error(EINVAL, "checkpoint name is longer than " +
                                     std::to_string(kMaxCheckpointName) + " characters");
  if (name[0] == '.') return Status::Error(EINVAL, "checkpoint name must not start with '.'");
  for (char c : name) {
    bool ok = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '_' || c == '-';
    if (!ok)
      return Status::Error(EINVAL,
                           "checkpoint name may only contain letters, digits, '.', '_' "
                           "and '-'");
  }
  return Status::Ok();
}

std::string CheckpointManifestKey(std::string_view name) {
  return std::string(kCheckpointKeyPrefix) + std::string(name) + ".json";
}

Result<std::unique_ptr<ManifestSnapshot>> ManifestSnapshot::Take(const std::string& journal_path) {
  std::unique_ptr<ManifestSnapshot> m(new ManifestSnapshot());
  auto reader = JournalReader::Open(journal_path);
  if (!reader.ok()) return reader.status().WithContext("checkpoint manifest");
  m->reader_ = std::move(reader.value());
  auto snap = m->reader_->BeginSnapshot();
  if (!snap.ok()) return snap.status().WithContext("checkpoint manifest");
  m->snapshot_.emplace(std::move(snap.value()));
  m->index_ = RemoteIndex::Over(*m->reader_);
  // The first read: from here on the snapshot is fixed. DATADIR itself has
  // no object.
  auto n = m->index_->Count(/*skip_root=*/true);
  if (!n.ok()) return n.status().WithContext("checkpoint manifest: counting the objects table");
  m->paths_ = *n;
  return m;
}

Status ManifestSnapshot::WriteManifest(int fd, const ManifestHeader& header, uint64_t* bytes) {
  ManifestWriter w(fd, header, paths_);
  Status s = index_->ForEach(
      [&](const RemoteObject& o) {
        return w.Add({o.path, ObjectKey(o.path, o.type == kTypeDir), o.type, o.size, o.mode,
                      o.uid, o.gid, o.mtime_ns, o.etag, o.sha256, o.version_id});
      },
      /*skip_root=*/true);
  if (!s.ok()) return s.WithContext("checkpoint manifest: reading the objects table");
  SCRIBEFS_RETURN_IF_ERROR(w.Finish());
  *bytes = w.bytes();
  return Status::Ok();
}

StoreResult<std::vector<StoredCheckpoint>> ListStoredCheckpoints(ObjectStore& store) {
  std::vector<StoredCheckpoint> out;
  ListOptions lo;
  lo.prefix = std::string(kCheckpointKeyPrefix);
  lo.delimiter = "/";
  StoreStatus s = store.List(lo, [&](const ListEntry& e) {
    if (e.is_prefix) return true;
    std::string_view k = e.key;
    if (!k.starts_with(kCheckpointKeyPrefix) || !k.ends_with(".json")) return true;
    std::string_view name = k.substr(kCheckpointKeyPrefix.size());
    name.remove_suffix(5);
    if (!ValidateCheckpointName(name).ok()) return true;
    out.push_back({std::string(name), e.key, e.size, e.mtime});
    return true;
  });
  if (!s.ok()) return s;
  return out;
}

}  // namespace scribefs
