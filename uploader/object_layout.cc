#include "uploader/object_layout.h"

#include <dirent.h>
#include <fcntl.h>
#include <unistd.h>

#include <charconv>
#include <cstdio>
#include <functional>
#include <memory>
#include <ctime>

#include "common/beneath.h"
#include "common/unique_fd.h"

namespace scribefs {

bool IsReservedPath(std::string_view path) {
  return path == kReservedDir ||
         (path.size() > kReservedDir.size() && path.starts_with(kReservedDir) &&
          path[kReservedDir.size()] == '/');
}

std::string ObjectKey(std::string_view path, bool is_dir) {
  std::string key(path);
  if (is_dir) key.push_back('/');
  return key;
}

std::string PathOfKey(std::string_view key) {
  if (IsMarkerKey(key)) key.remove_suffix(1);
  return std::string(key);
}

std::string_view ObjectTypeOf(mode_t mode) {
  if (S_ISREG(mode)) return kTypeFile;
  if (S_ISDIR(mode)) return kTypeDir;
  if (S_ISLNK(mode)) return kTypeSymlink;
  return kTypeSpecial;
}

int64_t MtimeNs(const struct stat& st) {
  return int64_t(st.st_mtim.tv_sec) * 1000000000 + st.st_mtim.tv_nsec;
}

Metadata EncodeMetadata(const struct stat& st) {
  // s3fs-compatible: decimal st_mode (type bits included), uid, gid, mtime in
  // seconds; scribefs-mtime-ns keeps the exact time for restore.
  Metadata m;
  m[kMetaMode] = std::to_string(st.st_mode);
  m[kMetaUid] = std::to_string(st.st_uid);
  m[kMetaGid] = std::to_string(st.st_gid);
  m[kMetaMtime] = std::to_string(st.st_mtim.tv_sec);
  m[kMetaMtimeNs] = std::to_string(MtimeNs(st));
  if (S_ISCHR(st.st_mode) || S_ISBLK(st.st_mode)) m[kMetaRdev] = std::to_string(st.st_rdev);
  return m;
}

namespace {

template <typename T>
std::optional<T> ParseDecimal(const Metadata& m, const char* name) {
  auto it = m.find(name);
  if (it == m.end() || it->second.empty()) return std::nullopt;
  const char* begin = it->second.data();
  const char* end = begin + it->second.size();
  T v{};
  auto [ptr, ec] = std::from_chars(begin, end, v);
  if (ec != std::errc() || ptr != end) return std::nullopt;
  return v;
}

}  // namespace

std::optional<uint64_t> MetaUint(const Metadata& m, const char* name) {
  return ParseDecimal<uint64_t>(m, name);
}

DecodedMetadata DecodeMetadata(const Metadata& m) {
  DecodedMetadata d;
  d.mode = MetaUint(m, kMetaMode);
  d.uid = MetaUint(m, kMetaUid);
  d.gid = MetaUint(m, kMetaGid);
  d.rdev = MetaUint(m, kMetaRdev);
  if (auto ns = ParseDecimal<int64_t>(m, kMetaMtimeNs)) {
    d.mtime_ns = *ns;
    d.mtime_exact = true;
  } else if (auto s = ParseDecimal<int64_t>(m, kMetaMtime)) {
    constexpr int64_t kMaxSeconds = INT64_MAX / 1000000000;
    if (*s >= -kMaxSeconds && *s <= kMaxSeconds) d.mtime_ns = *s * 1000000000;
  }
  return d;
}

// ---- manifests ------------------------------------------------------------------

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

namespace {

using OrderedJson = nlohmann::ordered_json;

OrderedJson EntryJson(const ManifestEntry& o) {
  auto or_null = [](const std::string& s) { return s.empty() ? OrderedJson(nullptr) : OrderedJson(s); };
  OrderedJson e;
  e["path"] = o.path;
  e["key"] = o.key;
  e["type"] = o.type;
  e["size"] = o.size;
  e["mode"] = o.mode;
  e["uid"] = o.uid;
  e["gid"] = o.gid;
  e["mtime_ns"] = o.mtime_ns;
  e["etag"] = o.etag;
  e["sha256"] = or_null(o.sha256);
  e["version_id"] = or_null(o.version_id);
  return e;
}

// Everything but the entries (an empty "entries" array last).
OrderedJson HeaderJson(const ManifestHeader& header, uint64_t paths) {
  OrderedJson m;
  m["format"] = "scribefs-checkpoint";
  m["version"] = kManifestVersion;
  m["name"] = header.name;
  m["time_ns"] = header.time_ns;
  m["time"] = IsoTimeUtc(header.time_ns);
  m["journal_seq"] = header.journal_seq;
  m["target"] = header.target;
  m["paths"] = paths;
  m["entries"] = OrderedJson::array();
  return m;
}

std::string Compact(const OrderedJson& j) {
  return j.dump(-1, ' ', false, OrderedJson::error_handler_t::replace);
}

}  // namespace

nlohmann::ordered_json ManifestJson(const ManifestHeader& header,
                                    const std::vector<ManifestEntry>& entries) {
  OrderedJson m = HeaderJson(header, entries.size());
  for (const ManifestEntry& o : entries) m["entries"].push_back(EntryJson(o));
  return m;
}

ManifestWriter::ManifestWriter(int fd, const ManifestHeader& header, uint64_t paths)
    : fd_(fd), expected_(paths) {
  std::string head = Compact(HeaderJson(header, paths));
  // The header ends in "\"entries\":[]}": the entries go between the brackets.
  head.resize(head.size() - 2);
  (void)Put(head);
}

Status ManifestWriter::Add(const ManifestEntry& entry) {
  if (added_ == expected_)
    status_ = Status::Error(EINVAL, "manifest: more entries than the " +
                                        std::to_string(expected_) + " announced");
  if (added_++ > 0) (void)Put(",");
  return Put(Compact(EntryJson(entry)));
}

Status ManifestWriter::Finish() {
  if (status_.ok() && added_ != expected_)
    status_ = Status::Error(EINVAL, "manifest: " + std::to_string(added_) + " entries, " +
                                        std::to_string(expected_) + " announced");
  (void)Put("]}");
  return Drain();
}

Status ManifestWriter::Put(std::string_view s) {
  if (!status_.ok()) return status_;
  buf_.append(s);
  return buf_.size() >= (1u << 20) ? Drain() : Status::Ok();
}

Status ManifestWriter::Drain() {
  size_t done = 0;
  while (status_.ok() && done < buf_.size()) {
    ssize_t n = write(fd_, buf_.data() + done, buf_.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) status_ = PosixError("writing the manifest", errno);
    else done += static_cast<size_t>(n);
  }
  bytes_ += done;
  buf_.clear();
  return status_;
}

namespace {

using json = nlohmann::json;

// One manifest entry from its JSON value (n: its 1-based position).
Result<ManifestEntry> EntryFromJson(const json& j, size_t n, const std::string& what) {
  auto str = [&j](const char* k) {
    return j.contains(k) && j[k].is_string() ? j[k].get<std::string>() : std::string();
  };
  if (!j.is_object() || !j.contains("path") || !j["path"].is_string() || !j.contains("key") ||
      !j["key"].is_string() || !j.contains("type") || !j["type"].is_string())
    return Status::Error(EINVAL, what + ": entry " + std::to_string(n) + " is malformed");
  ManifestEntry e;
  e.path = j["path"];
  e.key = j["key"];
  e.type = j["type"];
  try {
    e.mode = j.at("mode").get<uint32_t>();
    e.uid = j.at("uid").get<uint32_t>();
    e.gid = j.at("gid").get<uint32_t>();
    e.mtime_ns = j.at("mtime_ns").get<int64_t>();
    e.size = j.at("size").get<uint64_t>();
  } catch (const json::exception&) {
    e.has_attributes = false;
  }
  e.etag = str("etag");
  e.sha256 = str("sha256");
  e.version_id = str("version_id");
  return e;
}

// Builds one JSON value from SAX events (a header field, or one entry).
class ValueBuilder {
 public:
  bool active() const { return active_; }
  void Begin() {
    value_ = json();
    stack_.clear();
    active_ = true;
  }
  json Take() { return std::move(value_); }
  // Each returns true when the value is complete.
  bool Scalar(json v) {
    *Slot() = std::move(v);
    return Done();
  }
  void Open(json container) {
    json* slot = Slot();
    *slot = std::move(container);
    stack_.push_back(slot);
  }
  bool Close() {
    stack_.pop_back();
    return Done();
  }
  void Key(std::string k) { key_ = std::move(k); }

 private:
  json* Slot() {
    if (stack_.empty()) return &value_;
    json& parent = *stack_.back();
    if (parent.is_object()) return &parent[key_];
    parent.push_back(json());
    return &parent.back();
  }
  bool Done() {
    if (!stack_.empty()) return false;
    active_ = false;
    return true;
  }
  json value_;
  std::vector<json*> stack_;  // the open containers; each lives in its parent
  std::string key_;
  bool active_ = false;
};

// SAX over a whole manifest: the top-level fields are kept (small), the
// elements of "entries" are built one at a time, converted and handed on.
// Errors are kept, not returned at once, so that the result is the one
// ParseManifest of the whole document gave: header errors first, then the
// first bad entry (or the first error on_entry returned).
class ManifestSax : public nlohmann::json_sax<json> {
 public:
  ManifestSax(const std::string& what, const std::function<Status(ManifestEntry&&)>& on_entry)
      : what_(what), on_entry_(on_entry) {}

  // The outcome once the parse ended (parsed: sax_parse's result).
  Status Finish(bool parsed, std::string* target) {
    if (!parsed || !header_.is_object()) return Status::Error(EINVAL, what_ + " is not JSON");
    if (header_.value("format", "") != "scribefs-checkpoint")
      return Status::Error(EINVAL, what_ + " is not a scribefs checkpoint manifest");
    if (!header_.contains("version") || !header_["version"].is_number_integer() ||
        header_["version"] != kManifestVersion)
      return Status::Error(EINVAL, what_ + ": unsupported format version (this scribectl reads 1)");
    if (entries_lists_ + entries_other_ > 1)
      return Status::Error(EINVAL, what_ + " has more than one entries list");
    if (entries_lists_ == 0) return Status::Error(EINVAL, what_ + " has no entries");
    if (!first_error_.ok()) return first_error_;
    if (target) {
      *target = header_.contains("target") && header_["target"].is_string()
                    ? header_["target"].get<std::string>()
                    : std::string();
    }
    return Status::Ok();
  }

  bool null() override { return Value(json()); }
  bool boolean(bool v) override { return Value(json(v)); }
  bool number_integer(number_integer_t v) override { return Value(json(v)); }
  bool number_unsigned(number_unsigned_t v) override { return Value(json(v)); }
  bool number_float(number_float_t v, const string_t&) override { return Value(json(v)); }
  bool string(string_t& v) override { return Value(json(std::move(v))); }
  bool binary(binary_t&) override { return false; }  // not in JSON text
  bool start_object(std::size_t) override { return Start(json::object()); }
  bool start_array(std::size_t) override { return Start(json::array()); }
  bool end_object() override { return End(); }
  bool end_array() override { return End(); }
  bool key(string_t& k) override {
    if (b_.active())
      b_.Key(k);
    else
      key_ = k;  // a top-level field
    return true;
  }
  bool parse_error(std::size_t, const std::string&, const nlohmann::detail::exception&) override {
    return false;
  }

 private:
  bool Value(json v) {
    if (!b_.active()) {
      if (depth_ == 0) {  // a document that is a scalar: not a manifest
        header_ = std::move(v);
        return true;
      }
      b_.Begin();
    }
    if (b_.Scalar(std::move(v))) Complete();
    return true;
  }
  bool Start(json container) {
    if (!b_.active()) {
      if (depth_ == 0) {
        depth_ = 1;
        if (!container.is_object()) return false;  // not a manifest: stop here
        header_ = json::object();
        return true;
      }
      if (depth_ == 1 && key_ == "entries" && container.is_array()) {
        depth_ = 2;  // the entries, streamed
        entries_lists_++;
        return true;
      }
      b_.Begin();
    }
    b_.Open(std::move(container));
    return true;
  }
  bool End() {
    if (b_.active()) {
      if (b_.Close()) Complete();
    } else {
      depth_--;  // the entries list or the document ends
    }
    return true;
  }
  // A value built at the top level (a header field) or in the entries.
  void Complete() {
    json v = b_.Take();
    if (depth_ == 1) {
      if (key_ == "entries")
        entries_other_++;  // present, but not a list: refused
      else
        header_[key_] = std::move(v);
      return;
    }
    ++n_;
    if (!first_error_.ok()) return;  // the document is refused already
    auto e = EntryFromJson(v, n_, what_);
    if (!e.ok()) {
      first_error_ = e.status();
      return;
    }
    first_error_ = on_entry_(std::move(*e));
  }

  const std::string& what_;
  const std::function<Status(ManifestEntry&&)>& on_entry_;
  json header_;            // the top-level fields but the entries
  std::string key_;        // the current top-level field
  int depth_ = 0;          // 0 outside, 1 in the document, 2 in its entries
  int entries_lists_ = 0;  // "entries" lists seen
  int entries_other_ = 0;  // "entries" fields that are not lists
  size_t n_ = 0;           // entries seen
  ValueBuilder b_;
  Status first_error_ = Status::Ok();
};

}  // namespace

Result<Manifest> ParseManifest(std::string_view body, const std::string& what) {
  Manifest out;
  std::function<Status(ManifestEntry&&)> add = [&out](ManifestEntry&& e) {
    out.entries.push_back(std::move(e));
    return Status::Ok();
  };
  ManifestSax sax(what, add);
  bool parsed = json::sax_parse(body, &sax);
  if (Status s = sax.Finish(parsed, &out.target); !s.ok()) return s;
  return out;
}

Status ReadManifest(int fd, const std::string& what, std::string* target,
                    const std::function<Status(ManifestEntry&&)>& on_entry) {
  UniqueFd copy(fcntl(fd, F_DUPFD_CLOEXEC, 0));
  if (!copy) return PosixError("reading " + what, errno);
  std::unique_ptr<FILE, int (*)(FILE*)> f(fdopen(copy.get(), "r"), fclose);
  if (!f) return PosixError("reading " + what, errno);
  copy.Release();  // f owns it now
  ManifestSax sax(what, on_entry);
  bool parsed = json::sax_parse(f.get(), &sax);
  if (ferror(f.get())) return PosixError("reading " + what, EIO);
  return sax.Finish(parsed, target);
}

// ---- the walk -------------------------------------------------------------------

Result<std::vector<std::string>> ListDir(int root_fd, const std::string& dir) {
  auto dfd = OpenBeneath(root_fd, dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (!dfd.ok()) return dfd.status();
  DIR* d = fdopendir(dfd->get());
  if (!d) return PosixError("opendir " + dir, errno);
  dfd->Release();  // d owns it now
  std::vector<std::string> names;
  errno = 0;
  while (struct dirent* e = readdir(d)) {
    std::string n = e->d_name;
    if (n != "." && n != "..") names.push_back(std::move(n));
  }
  int err = errno;
  closedir(d);
  if (err != 0) return PosixError("readdir " + dir, err);
  return names;
}

namespace {

struct OpenDir {
  std::string path;
  UniqueFd fd;
};

std::string DirWhere(const std::string& path) { return path.empty() ? "." : path + "/"; }

// Reads one directory of the walk, visiting its entries; subdirectories to
// descend into go onto `stack`.
void WalkOne(OpenDir dir, const WalkCallbacks& cb, std::vector<OpenDir>* stack) {
  // fdopendir takes a descriptor of its own: dir.fd stays for fstatat/openat.
  int dfd = fcntl(dir.fd.get(), F_DUPFD_CLOEXEC, 3);
  DIR* d = dfd < 0 ? nullptr : fdopendir(dfd);
  if (!d) {
    int err = errno;
    if (dfd >= 0) close(dfd);
    if (cb.error) cb.error(DirWhere(dir.path), PosixError("opendir", err));
    return;
  }
  errno = 0;
  while (struct dirent* de = readdir(d)) {
    std::string name = de->d_name;
    if (name == "." || name == "..") continue;
    std::string path = dir.path.empty() ? name : dir.path + "/" + name;
    if (cb.skip && cb.skip(path)) continue;
    struct stat st;
    if (fstatat(dir.fd.get(), name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) {
      if (errno != ENOENT && cb.error) cb.error(path, PosixError("stat", errno));
      errno = 0;
      continue;
    }
    bool descend = cb.visit ? cb.visit(path, st) : true;
    if (descend && S_ISDIR(st.st_mode)) {
      int cfd = openat(dir.fd.get(), name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
      if (cfd >= 0)
        stack->push_back({path, UniqueFd(cfd)});
      else if (errno != ENOENT && cb.error)
        cb.error(path + "/", PosixError("opendir", errno));
    }
    errno = 0;
  }
  if (errno != 0 && cb.error) cb.error(DirWhere(dir.path), PosixError("readdir", errno));
  closedir(d);
}

}  // namespace

Status WalkTree(int root_fd, const std::string& start, const WalkCallbacks& callbacks) {
  int flags = O_RDONLY | O_DIRECTORY | O_CLOEXEC | (start.empty() ? 0 : O_NOFOLLOW);
  auto root = OpenBeneath(root_fd, start, flags);
  if (!root.ok()) return root.status();
  std::vector<OpenDir> stack;
  stack.push_back({start, std::move(root.value())});
  while (!stack.empty()) {
    OpenDir dir = std::move(stack.back());
    stack.pop_back();
    WalkOne(std::move(dir), callbacks, &stack);
  }
  return Status::Ok();
}

}  // namespace scribefs
