#include "uploader/checkpoint.h"

#include "journal/sqlite_util.h"
#include "journal/remote_index.h"

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

Result<nlohmann::ordered_json> BuildManifest(const std::string& journal_path,
                                             const ManifestHeader& header, size_t* paths) {
  auto index = RemoteIndex::Open(journal_path);
  if (!index.ok()) return index.status();
  // One SELECT: one consistent snapshot of the table.
  auto rows = index.value()->All();
  if (!rows.ok()) return rows.status().WithContext("reading the objects table");
  std::vector<ManifestEntry> entries;
  entries.reserve(rows->size());
  for (const RemoteObject& o : *rows) {
    if (o.path.empty()) continue;  // DATADIR itself has no object
    entries.push_back({o.path, ObjectKey(o.path, o.type == kTypeDir), o.type, o.size, o.mode,
                       o.uid, o.gid, o.mtime_ns, o.etag, o.sha256, o.version_id});
  }
  *paths = entries.size();
  return ManifestJson(header, entries);
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
