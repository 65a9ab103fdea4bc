#include "uploader/checkpoint.h"

#include <ctime>

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

std::string IsoTimeUtc(int64_t time_ns) {
  time_t secs = static_cast<time_t>(time_ns / 1000000000);
  struct tm tm;
  gmtime_r(&secs, &tm);
  char buf[64];
  strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%S", &tm);
  char out[80];
  snprintf(out, sizeof out, "%s.%03dZ", buf, static_cast<int>((time_ns / 1000000) % 1000));
  return out;
}

Result<nlohmann::ordered_json> BuildManifest(const std::string& journal_path,
                                             const ManifestHeader& header, size_t* paths) {
  using Json = nlohmann::ordered_json;
  auto index = RemoteIndex::Open(journal_path);
  if (!index.ok()) return index.status();
  // One SELECT: one consistent snapshot of the table.
  auto rows = index.value()->All();
  if (!rows.ok()) return rows.status().WithContext("reading the objects table");
  Json entries = Json::array();
  for (const RemoteObject& o : *rows) {
    if (o.path.empty()) continue;  // DATADIR itself has no object
    Json e;
    e["path"] = o.path;
    e["key"] = o.type == "dir" ? o.path + "/" : o.path;
    e["type"] = o.type;
    e["size"] = o.size;
    e["mode"] = o.mode;
    e["uid"] = o.uid;
    e["gid"] = o.gid;
    e["mtime_ns"] = o.mtime_ns;
    e["etag"] = o.etag;
    e["sha256"] = o.sha256.empty() ? Json(nullptr) : Json(o.sha256);
    e["version_id"] = o.version_id.empty() ? Json(nullptr) : Json(o.version_id);
    entries.push_back(std::move(e));
  }
  *paths = entries.size();
  Json m;
  m["format"] = "scribefs-checkpoint";
  m["version"] = 1;
  m["name"] = header.name;
  m["time_ns"] = header.time_ns;
  m["time"] = IsoTimeUtc(header.time_ns);
  m["journal_seq"] = header.journal_seq;
  m["target"] = header.target;
  m["paths"] = entries.size();
  m["entries"] = std::move(entries);
  return m;
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
