#include "daemon/checkpoint_storer.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <fmt/ranges.h>
#include <spdlog/spdlog.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <fstream>
#include <set>

#include "common/unique_fd.h"
#include "daemon/manifest_temp_file.h"
#include "daemon/startup_checks.h"
#include "daemon/verbs.h"
#include "journal/reader.h"
#include "journal/remote_index.h"
#include "uploader/checkpoint.h"

namespace scribefs {
namespace {

using json = nlohmann::json;
constexpr char kMetaKey[] = "checkpoints";

json ToJson(const CheckpointState& c) {
  json j = {{"state", c.state},
            {"seq", c.seq},
            {"captured_ns", c.captured_ns},
            {"held_ms", c.held_ms},
            {"frozen", c.frozen},
            {"rows", c.rows},
            {"targets", c.targets},
            {"stored_on", c.stored_on}};
  if (!c.failed_on.empty()) j["failed_on"] = c.failed_on;
  if (!c.target_rows.empty()) j["target_rows"] = c.target_rows;
  if (!c.error.empty()) j["error"] = c.error;
  if (c.stored_ns) j["failed_ns"] = c.stored_ns;
  return j;
}

template <typename T>
T Field(const json& j, const char* key) {
  auto it = j.find(key);
  if (it == j.end()) return T{};
  try {
    return it->get<T>();
  } catch (const json::exception&) {
    return T{};
  }
}

CheckpointState FromJson(const std::string& name, const json& j) {
  CheckpointState c;
  c.name = name;
  c.state = j.value("state", "failed");
  c.seq = j.value("seq", int64_t{0});
  c.captured_ns = j.value("captured_ns", int64_t{0});
  c.held_ms = j.value("held_ms", 0.0);
  c.frozen = j.value("frozen", uint64_t{0});
  c.rows = j.value("rows", uint64_t{0});
  c.error = j.value("error", "");
  c.stored_ns = j.value("failed_ns", int64_t{0});
  c.targets = Field<std::vector<std::string>>(j, "targets");
  c.stored_on = Field<std::vector<std::string>>(j, "stored_on");
  c.failed_on = Field<std::map<std::string, std::string>>(j, "failed_on");
  c.target_rows = Field<std::map<std::string, uint64_t>>(j, "target_rows");
  return c;
}

// A GLOB pattern that matches exactly `path`.
std::string GlobExact(const std::string& path) {
  std::string out;
  for (char ch : path) {
    if (ch == '*' || ch == '?' || ch == '[') {
      out += '[';
      out += ch;
      out += ']';
    } else {
      out += ch;
    }
  }
  return out;
}

// The manifest entry of a frozen path from its state at the mark and the
// journal's last done record of it up to the mark that names an object
// (whose etag, sha256 and version_id are those of the object holding that
// state). Records that name none (a rename stored by a server-side copy, a
// metadata update) leave the object's values to the objects table's row.
// nullopt: nothing to list (absent at the mark, or never stored: excluded).
Result<std::optional<ManifestEntry>> FrozenEntry(CowSpool& spool, JournalReader& reader,
                                                 RemoteIndex& index, int64_t target,
                                                 const std::string& name, int64_t seq,
                                                 const std::string& path) {
  auto f = spool.OpenAtMark(name, path);
  if (!f.ok()) return f.status().WithContext("frozen path " + path);
  if (f->kind() == FrozenFile::Kind::kAbsent) return std::optional<ManifestEntry>();
  JournalFilter q;
  q.path_glob = GlobExact(path);
  q.until_seq = seq;
  q.state = std::string(kStateDone);
  q.target = target;  // the object that target stored
  q.limit = 64;
  q.newest_first = true;
  auto recs = reader.Query(q);
  if (!recs.ok()) return recs.status().WithContext("frozen path " + path);
  const Record* last = nullptr;
  for (auto it = recs->rbegin(); it != recs->rend() && !last; ++it)
    if ((it->etag && !it->etag->empty()) || (it->sha256 && !it->sha256->empty())) last = &*it;
  std::optional<RemoteObject> row;
  if (!last) {
    auto r = index.Get(path);
    if (!r.ok()) return r.status().WithContext("frozen path " + path);
    if (!*r) return std::optional<ManifestEntry>();
    row = std::move(**r);
  }
  const struct stat& st = f->attr();
  ManifestEntry e;
  e.path = path;
  e.type = std::string(ObjectTypeOf(st.st_mode));
  e.key = ObjectKey(path, S_ISDIR(st.st_mode));
  e.size = S_ISREG(st.st_mode) || S_ISLNK(st.st_mode) ? static_cast<uint64_t>(st.st_size) : 0;
  e.mode = st.st_mode;
  e.uid = st.st_uid;
  e.gid = st.st_gid;
  e.mtime_ns = MtimeNs(st);
  e.etag = last ? last->etag.value_or("") : row->etag;
  e.sha256 = last ? last->sha256.value_or("") : row->sha256;
  e.version_id = last ? last->version_id.value_or("") : row->version_id;
  return std::optional<ManifestEntry>(std::move(e));
}

// Test hooks (tests only): $SCRIBEFS_TEST_STORE_DELAY_MS delays each storing
// of a captured checkpoint once its uploads are done, so that a test can
// kill the daemon between captured and stored or see flush wait for it;
// $SCRIBEFS_TEST_MANIFEST_DELAY_MS, as in checkpoint.cc, makes writing the
// manifest take that much longer.
void TestDelay(const char* var) {
  const char* v = getenv(var);
  if (v && *v) std::this_thread::sleep_for(std::chrono::milliseconds(atoll(v)));
}

}  // namespace

std::vector<std::string> CheckpointState::Pending() const {
  std::vector<std::string> out;
  for (const std::string& t : targets)
    if (std::find(stored_on.begin(), stored_on.end(), t) == stored_on.end() && !failed_on.count(t))
      out.push_back(t);
  return out;
}

CheckpointStorer::CheckpointStorer(Journal* journal, TargetSet* targets, CowSpool* spool,
                                   Options options)
    : journal_(journal),
      targets_(targets),
      spool_(spool),
      state_dir_(std::move(options.state_dir)) {}

CheckpointStorer::~CheckpointStorer() { Stop(); }

Status CheckpointStorer::Start() {
  if (mkdir(dir().c_str(), 0700) != 0 && errno != EEXIST)
    return PosixError("creating " + dir(), errno);
  Load();
  thread_ = std::thread([this] { Loop(); });
  return Status::Ok();
}

void CheckpointStorer::Stop() {
  {
    std::lock_guard lk(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

std::vector<std::string> CheckpointStorer::TargetNames() const {
  std::vector<std::string> out;
  for (size_t i = 0; i < targets_->size(); ++i) out.push_back(targets_->name(i));
  return out;
}

Replicator* CheckpointStorer::Find(const std::string& target) {
  for (size_t i = 0; i < targets_->size(); ++i)
    if (targets_->name(i) == target) return &targets_->replicator(i);
  return nullptr;
}

// What a previous run left: captured checkpoints go on being stored on the
// targets that do not have them yet, unless their capture or files are gone
// (failed there); a target whose record was committed just before a kill
// has it; a capture no checkpoint owns (the daemon died between Capture and
// Add) is released.
void CheckpointStorer::Load() {
  auto meta = journal_->GetMeta(kMetaKey);
  json all = meta.ok() ? json::parse(*meta, nullptr, false) : json::object();
  if (!all.is_object()) all = json::object();
  const std::string first = targets_->name(0);
  std::map<std::string, std::set<std::string>> recorded;  // name -> targets with a record
  if (auto recs = verbs::CheckpointRecords(journal_->path()); recs.ok())
    for (const Record& r : *recs) {
      json d = verbs::Detail(r);
      recorded[d.value("name", "")].insert(verbs::CheckpointRecordTarget(d, first));
    }
  std::map<std::string, CaptureInfo> captures;
  for (CaptureInfo& ci : spool_->Captures()) captures[ci.id] = ci;
  std::vector<CheckpointState> discard;
  std::lock_guard lk(mu_);
  for (auto& [name, j] : all.items()) {
    CheckpointState c = FromJson(name, j);
    if (c.state == "captured") {
      if (c.targets.empty()) {
        // Captured by a scribefs before issue 16: for the first target, its
        // rows in NAME.rows.
        c.targets = {first};
        c.target_rows[first] = c.rows;
        (void)rename((dir() + "/" + name + ".rows").c_str(), RowsPath(name, first).c_str());
      }
      for (const std::string& t : c.Pending())
        if (recorded[name].count(t)) c.stored_on.push_back(t);  // stored just before the kill
      for (const std::string& t : c.Pending()) {
        struct stat st;
        if (!captures.count(name))
          c.failed_on[t] = "its copy-on-write spool was lost (restart)";
        else if (stat(RowsPath(name, t).c_str(), &st) != 0 ||
                 stat(FrozenPath(name).c_str(), &st) != 0)
          c.failed_on[t] = "its manifest rows in " + dir() + " were lost (restart)";
      }
      if (c.Pending().empty()) {
        if (c.failed_on.empty()) {
          discard.push_back(c);
          continue;  // stored everywhere before the kill: its records say so
        }
        c.state = "failed";
        c.error = c.failed_on.begin()->second;
        c.stored_ns = NowNs();
        discard.push_back(c);
        spdlog::warn("checkpoint {} failed: {}", name, c.error);
      } else {
        spdlog::info("checkpoint {} is captured (journal seq {}): storing it", name, c.seq);
      }
    }
    list_[name] = c;
  }
  for (const auto& [id, ci] : captures)
    if (!list_.count(id) || list_[id].state != "captured") (void)spool_->Release(id);
  for (const CheckpointState& c : discard) Discard(c);
  if (Status s = Persist(); !s.ok()) spdlog::warn("checkpoints: {}", s.message());
}

void CheckpointStorer::Discard(const CheckpointState& c) {
  (void)spool_->Release(c.name);
  for (const std::string& t : c.targets) unlink(RowsPath(c.name, t).c_str());
  unlink(FrozenPath(c.name).c_str());
}

void CheckpointStorer::ForgetOldFailures() {
  std::vector<std::pair<int64_t, std::string>> failed;
  for (const auto& [name, c] : list_)
    if (c.state == "failed") failed.push_back({c.stored_ns, name});
  if (failed.size() <= kMaxFailedKept) return;
  std::sort(failed.begin(), failed.end());
  for (size_t i = 0; i + kMaxFailedKept < failed.size(); ++i) list_.erase(failed[i].second);
}

Status CheckpointStorer::Persist() {
  json all = json::object();
  for (const auto& [name, c] : list_) all[name] = ToJson(c);
  SCRIBEFS_RETURN_IF_ERROR(journal_->SetMeta(kMetaKey, all.dump()));
  return journal_->Sync();
}

Status CheckpointStorer::Add(CheckpointState c) {
  std::lock_guard lk(mu_);
  c.state = "captured";
  list_[c.name] = c;
  Status s = Persist();
  if (!s.ok()) {
    list_.erase(c.name);
    return s.WithContext("recording checkpoint " + c.name + " as captured");
  }
  cv_.notify_all();
  return Status::Ok();
}

bool CheckpointStorer::InFlight(const std::string& name) {
  std::lock_guard lk(mu_);
  auto it = list_.find(name);
  return it != list_.end() && it->second.state == "captured";
}

std::vector<CheckpointState> CheckpointStorer::List() {
  std::map<std::string, uint64_t> bytes;
  for (const CaptureInfo& ci : spool_->Captures()) bytes[ci.id] = ci.spool_bytes;
  std::vector<CheckpointState> out;
  {
    std::lock_guard lk(mu_);
    for (const auto& [name, c] : list_) {
      out.push_back(c);
      if (c.state == "captured") out.back().spool_bytes = bytes[name];
    }
  }
  std::sort(out.begin(), out.end(),
            [](const CheckpointState& a, const CheckpointState& b) { return a.seq < b.seq; });
  return out;
}

CheckpointState CheckpointStorer::Wait(const std::string& name, Clock::time_point deadline,
                                       const std::function<bool()>& cancelled) {
  std::unique_lock lk(mu_);
  while (true) {
    if (auto it = done_.find(name); it != done_.end()) return it->second;
    auto it = list_.find(name);
    if (it == list_.end()) {
      CheckpointState unknown;
      unknown.name = name;
      unknown.state = "unknown";
      return unknown;
    }
    if (it->second.state != "captured" || Clock::now() >= deadline || (cancelled && cancelled()))
      return it->second;
    cv_.wait_for(lk, std::chrono::milliseconds(100));
  }
}

Status CheckpointStorer::WaitAll(Clock::time_point deadline,
                                 const std::function<bool()>& cancelled) {
  std::unique_lock lk(mu_);
  while (true) {
    size_t captured = std::count_if(list_.begin(), list_.end(),
                                    [](const auto& kv) { return kv.second.state == "captured"; });
    if (captured == 0) return Status::Ok();
    if (cancelled && cancelled()) return Status::Error(ECANCELED, "cancelled");
    if (Clock::now() >= deadline)
      return Status::Error(ETIMEDOUT, std::to_string(captured) +
                                          " captured checkpoint(s) not stored yet "
                                          "(scribectl checkpoints)");
    cv_.wait_for(lk, std::chrono::milliseconds(100));
  }
}

void CheckpointStorer::Loop() {
  while (true) {
    std::vector<CheckpointState> captured;
    {
      std::unique_lock lk(mu_);
      if (stop_) return;
      for (const auto& [name, c] : list_)
        if (c.state == "captured") captured.push_back(c);
    }
    std::sort(captured.begin(), captured.end(),
              [](const CheckpointState& a, const CheckpointState& b) { return a.seq < b.seq; });
    std::set<std::string> waiting;  // targets an older checkpoint waits for
    bool acted = false;
    for (const CheckpointState& c : captured) acted = Step(c, &waiting) || acted;
    if (!acted) {
      std::unique_lock lk(mu_);
      if (stop_) return;
      cv_.wait_for(lk, std::chrono::milliseconds(200));
    }
  }
}

bool CheckpointStorer::Step(const CheckpointState& c, std::set<std::string>* waiting) {
  std::optional<CaptureInfo> capture;
  for (CaptureInfo& ci : spool_->Captures())
    if (ci.id == c.name) capture = ci;
  if (!capture) {
    FailPending(c.name, Status::Error(ENOENT, "its copy-on-write capture is gone"));
    return true;
  }
  if (capture->abandoned) {
    FailPending(c.name,
                Status::Error(EIO, "its copy-on-write capture was abandoned: " + capture->why));
    return true;
  }
  auto stopping = [&] {
    std::lock_guard lk(mu_);
    return stop_;
  };
  std::vector<std::string> pending = c.Pending();
  // About a second per round in all, so that an abandoned capture or a stop
  // is noticed; a target that is down takes its share and no more.
  const auto share = std::chrono::milliseconds(1000 / std::max<size_t>(1, pending.size()));
  bool acted = false;
  for (const std::string& t : pending) {
    if (waiting->count(t)) continue;
    Replicator* r = Find(t);
    if (!r) {
      FinishOn(c.name, t, Status::Error(ENOENT, "target " + t + " is not configured any more"));
      acted = true;
      continue;
    }
    // Replicator::WaitUploadedThrough: while it waits, files still open for
    // writing are stored at once, as for a flush.
    Status w = r->WaitUploadedThrough(c.seq, Clock::now() + share, stopping);
    if (w.code() == EIO) {
      FinishOn(c.name, t,
               w.WithContext("a journal record up to its mark (seq " + std::to_string(c.seq) +
                             ") failed to upload to " + t + " (scribectl journal --target " + t +
                             " --state failed)"));
      acted = true;
      continue;
    }
    if (!w.ok()) {  // not yet (ETIMEDOUT), or stopping
      waiting->insert(t);
      continue;
    }
    TestDelay("SCRIBEFS_TEST_STORE_DELAY_MS");
    if (stopping()) return true;  // left captured for the next start
    bool retry = false;
    CheckpointState stored;
    Status s = Store(c, t, *r, &retry, &stored);
    if (!s.ok() && retry) {
      spdlog::warn("checkpoint {}: storing the manifest on {}: {} (retried)", c.name, t,
                   s.message());
      waiting->insert(t);
      continue;
    }
    FinishOn(c.name, t, s, &stored);
    acted = true;
  }
  return acted;
}

Status CheckpointStorer::Store(const CheckpointState& c, const std::string& target, Replicator& r,
                               bool* retry, CheckpointState* stored) {
  std::ifstream in(FrozenPath(c.name));
  json frozen = json::parse(in, nullptr, false);
  if (!frozen.is_array()) return Status::Error(EIO, FrozenPath(c.name) + " is not readable");
  auto reader = JournalReader::Open(journal_->path());
  if (!reader.ok()) return reader.status();
  auto index = RemoteIndex::Over(*reader.value(), r.target());
  std::vector<ManifestEntry> extra;
  for (const json& p : frozen) {
    const std::string path = p.get<std::string>();
    if (r.IsExcluded(path)) continue;  // never stored there
    auto e = FrozenEntry(*spool_, *reader.value(), *index, r.target(), c.name, c.seq, path);
    if (!e.ok()) return e.status();
    if (*e) extra.push_back(std::move(**e));
  }
  ObjectStore& store = r.store();
  const std::string key = CheckpointManifestKey(c.name);
  auto mt = Clock::now();
  ManifestTempFile tmp(state_dir_, std::string(kCheckpointTempStem) + c.name);
  if (tmp.fd() < 0) return PosixError("temporary manifest in " + state_dir_, errno);
  uint64_t bytes = 0;
  auto rows_it = c.target_rows.find(target);
  const uint64_t rows = rows_it == c.target_rows.end() ? 0 : rows_it->second;
  const uint64_t paths = rows + extra.size();
  SCRIBEFS_RETURN_IF_ERROR(
      WriteMergedManifest(tmp.fd(), {c.name, c.captured_ns, c.seq, store.Describe()},
                          RowsPath(c.name, target), rows, std::move(extra), &bytes));
  TestDelay("SCRIBEFS_TEST_MANIFEST_DELAY_MS");
  Metadata meta = {{"scribefs-checkpoint", c.name}};
  auto put = store.Put(key, Payload::FromFile(tmp.fd(), 0, bytes), meta);
  if (!put.ok()) {
    *retry = put.status().retryable();  // a target that is down: later
    return put.status().status().WithContext("storing " + key);
  }
  json detail = {{"name", c.name},
                 {"manifest_key", key},
                 {"pause_seq", c.seq},
                 {"paths", paths},
                 {"held_ms", c.held_ms},
                 {"target", store.Describe()},
                 {"target_name", target},
                 {"etag", put->etag},
                 {"version_id", put->version_id},
                 {"captured_ns", c.captured_ns},
                 {"frozen", c.frozen}};
  Record rec = verbs::ControlRecord(Op::kCheckpoint, detail);
  if (Status s = journal_->Commit(rec, /*durable=*/true); !s.ok()) {
    (void)store.Delete(key);
    return s.WithContext("journal");
  }
  stored->paths = paths;
  stored->manifest_bytes = bytes;
  stored->manifest_ms =
      std::round(std::chrono::duration<double, std::milli>(Clock::now() - mt).count() * 10) / 10;
  spdlog::info("checkpoint {} stored on {}: {} paths ({} frozen) at journal seq {}, record {}",
               c.name, target, paths, c.frozen, c.seq, rec.seq);
  return Status::Ok();
}

void CheckpointStorer::FailPending(const std::string& name, const Status& why) {
  std::vector<std::string> pending;
  {
    std::lock_guard lk(mu_);
    auto it = list_.find(name);
    if (it == list_.end()) return;
    pending = it->second.Pending();
  }
  for (const std::string& t : pending) FinishOn(name, t, why);
}

void CheckpointStorer::FinishOn(const std::string& name, const std::string& target,
                                const Status& result, const CheckpointState* stored) {
  std::optional<CheckpointState> finished;
  {
    std::lock_guard lk(mu_);
    auto it = list_.find(name);
    if (it == list_.end()) return;
    CheckpointState& c = it->second;
    if (result.ok()) {
      c.stored_on.push_back(target);
      if (stored) {
        c.paths = stored->paths;
        c.manifest_bytes = stored->manifest_bytes;
        c.manifest_ms = stored->manifest_ms;
      }
    } else {
      c.failed_on[target] = result.message();
      spdlog::warn("checkpoint {} failed on {}: {} (writers were not affected)", name, target,
                   result.message());
    }
    if (c.Pending().empty()) {
      c.stored_ns = NowNs();
      if (c.failed_on.empty()) {
        c.state = "stored";
        done_[name] = c;
      } else {
        c.state = "failed";
        c.error = "checkpoint " + name + " failed";
        for (const auto& [t, why] : c.failed_on) c.error += " on " + t + ": " + why + ";";
        c.error += c.stored_on.empty()
                       ? " stored on no target"
                       : " stored on " + fmt::format("{}", fmt::join(c.stored_on, ", "));
      }
      finished = c;
      if (c.state == "stored")
        list_.erase(it);
      else
        ForgetOldFailures();
    }
    if (Status s = Persist(); !s.ok()) spdlog::warn("checkpoints: {}", s.message());
  }
  cv_.notify_all();
  if (finished)
    Discard(*finished);
  else
    unlink(RowsPath(name, target).c_str());
}

}  // namespace scribefs
