#include "uploader/checkpoint.h"

#include <unistd.h>

#include <algorithm>
#include <fstream>

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

Result<std::unique_ptr<ManifestSnapshot>> ManifestSnapshot::Take(const std::string& journal_path,
                                                                 int64_t target) {
  std::unique_ptr<ManifestSnapshot> m(new ManifestSnapshot());
  auto reader = JournalReader::Open(journal_path);
  if (!reader.ok()) return reader.status().WithContext("checkpoint manifest");
  m->reader_ = std::move(reader.value());
  auto snap = m->reader_->BeginSnapshot();
  if (!snap.ok()) return snap.status().WithContext("checkpoint manifest");
  m->snapshot_.emplace(std::move(snap.value()));
  m->index_ = RemoteIndex::Over(*m->reader_, target);
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
        return w.Add({o.path, ObjectKey(o.path, o.type == kTypeDir), o.type, o.size, o.mode, o.uid,
                      o.gid, o.mtime_ns, o.etag, o.sha256, o.version_id});
      },
      /*skip_root=*/true);
  if (!s.ok()) return s.WithContext("checkpoint manifest: reading the objects table");
  SCRIBEFS_RETURN_IF_ERROR(w.Finish());
  *bytes = w.bytes();
  return Status::Ok();
}

namespace {

nlohmann::json RowJson(const ManifestEntry& e) {
  return {{"path", e.path},
          {"key", e.key},
          {"type", e.type},
          {"size", e.size},
          {"mode", e.mode},
          {"uid", e.uid},
          {"gid", e.gid},
          {"mtime_ns", e.mtime_ns},
          {"etag", e.etag},
          {"sha256", e.sha256},
          {"version_id", e.version_id}};
}

Result<ManifestEntry> ParseRow(const std::string& line, const std::string& what) {
  auto j = nlohmann::json::parse(line, nullptr, false);
  if (!j.is_object()) return Status::Error(EINVAL, what + ": a row is not a JSON object");
  ManifestEntry e;
  try {
    e.path = j.at("path").get<std::string>();
    e.key = j.at("key").get<std::string>();
    e.type = j.at("type").get<std::string>();
    e.size = j.at("size").get<uint64_t>();
    e.mode = j.at("mode").get<uint32_t>();
    e.uid = j.at("uid").get<uint32_t>();
    e.gid = j.at("gid").get<uint32_t>();
    e.mtime_ns = j.at("mtime_ns").get<int64_t>();
    e.etag = j.at("etag").get<std::string>();
    e.sha256 = j.at("sha256").get<std::string>();
    e.version_id = j.at("version_id").get<std::string>();
  } catch (const nlohmann::json::exception& x) {
    return Status::Error(EINVAL, what + ": bad row: " + x.what());
  }
  return e;
}

Status WriteAll(int fd, const std::string& s) {
  size_t done = 0;
  while (done < s.size()) {
    ssize_t n = write(fd, s.data() + done, s.size() - done);
    if (n < 0) {
      if (errno == EINTR) continue;
      return PosixError("writing manifest rows", errno);
    }
    done += static_cast<size_t>(n);
  }
  return Status::Ok();
}

}  // namespace

Status ManifestSnapshot::WriteRows(int fd, const std::function<bool(const std::string&)>& skip,
                                   uint64_t* rows) {
  std::string buf;
  uint64_t n = 0;
  Status w = Status::Ok();
  Status s = index_->ForEach(
      [&](const RemoteObject& o) {
        if (skip(o.path)) return Status::Ok();
        ManifestEntry e{o.path,      ObjectKey(o.path, o.type == kTypeDir),
                        o.type,      o.size,
                        o.mode,      o.uid,
                        o.gid,       o.mtime_ns,
                        o.etag,      o.sha256,
                        o.version_id};
        buf += RowJson(e).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
        buf += '\n';
        ++n;
        if (buf.size() >= (1u << 20)) {
          w = WriteAll(fd, buf);
          buf.clear();
        }
        return w;
      },
      /*skip_root=*/true);
  if (!s.ok()) return s.WithContext("checkpoint rows: reading the objects table");
  SCRIBEFS_RETURN_IF_ERROR(WriteAll(fd, buf));
  *rows = n;
  return Status::Ok();
}

Status WriteMergedManifest(int out_fd, const ManifestHeader& header, const std::string& rows_path,
                           uint64_t rows, std::vector<ManifestEntry> extra, uint64_t* bytes) {
  std::sort(extra.begin(), extra.end(),
            [](const ManifestEntry& a, const ManifestEntry& b) { return a.path < b.path; });
  std::ifstream in(rows_path);
  if (!in) return PosixError("opening " + rows_path, errno);
  // First pass: how many rows extra replaces (the count comes first).
  uint64_t replaced = 0;
  std::string line;
  auto in_extra = [&](const std::string& path) {
    auto it =
        std::lower_bound(extra.begin(), extra.end(), path,
                         [](const ManifestEntry& e, const std::string& p) { return e.path < p; });
    return it != extra.end() && it->path == path;
  };
  uint64_t seen = 0;
  while (std::getline(in, line)) {
    auto e = ParseRow(line, rows_path);
    if (!e.ok()) return e.status();
    if (in_extra(e->path)) ++replaced;
    ++seen;
  }
  if (seen != rows)
    return Status::Error(EIO, rows_path + ": " + std::to_string(seen) + " rows, " +
                                  std::to_string(rows) + " expected (truncated?)");
  in.clear();
  in.seekg(0);
  ManifestWriter w(out_fd, header, rows - replaced + extra.size());
  size_t x = 0;
  while (std::getline(in, line)) {
    auto e = ParseRow(line, rows_path);
    if (!e.ok()) return e.status();
    while (x < extra.size() && extra[x].path < e->path) SCRIBEFS_RETURN_IF_ERROR(w.Add(extra[x++]));
    if (x < extra.size() && extra[x].path == e->path) continue;  // extra's comes next
    SCRIBEFS_RETURN_IF_ERROR(w.Add(*e));
  }
  while (x < extra.size()) SCRIBEFS_RETURN_IF_ERROR(w.Add(extra[x++]));
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
