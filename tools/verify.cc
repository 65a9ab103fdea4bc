#include "tools/verify.h"

#include <fcntl.h>
#include <limits.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <map>
#include <mutex>
#include <optional>
#include <thread>

#include "common/beneath.h"
#include "common/unique_fd.h"
#include "history/history_store.h"
#include "history/layout.h"
#include "uploader/digest.h"
#include "uploader/local_open.h"
#include "uploader/object_layout.h"

namespace scribefs::ctl {
namespace {

// Excluded itself, or below an excluded directory (whose subtree the
// start-up scan does not look into either), or reserved.
bool Ignored(const ExcludeFilter& filter, const std::string& path) {
  for (size_t slash = path.find('/'); slash != std::string::npos; slash = path.find('/', slash + 1))
    if (filter.Excluded(path.substr(0, slash))) return true;
  return filter.Excluded(path);
}

bool InScope(const std::string& prefix, const std::string& path) {
  return prefix.empty() || path == prefix ||
         (path.size() > prefix.size() && path.starts_with(prefix) && path[prefix.size()] == '/');
}

const char* TypeName(mode_t mode) {
  switch (mode & S_IFMT) {
    case S_IFREG:
      return "file";
    case S_IFDIR:
      return "directory";
    case S_IFLNK:
      return "symlink";
    case S_IFIFO:
      return "fifo";
    case S_IFSOCK:
      return "socket";
    case S_IFCHR:
      return "character device";
    case S_IFBLK:
      return "block device";
    default:
      return "unknown type";
  }
}

std::string Octal(mode_t mode) {
  char buf[16];
  snprintf(buf, sizeof buf, "%04o", unsigned(mode & 07777));
  return buf;
}

std::string NsString(int64_t ns) {
  char buf[48];
  snprintf(buf, sizeof buf, "%lld.%09lld", static_cast<long long>(ns / 1000000000),
           static_cast<long long>(ns % 1000000000));
  return buf;
}

struct LocalEntry {
  std::string path;
  struct stat st;
};

// Compares one object's metadata with the local entry, appending reasons.
void CompareMetadata(const Metadata& meta, const struct stat& st, bool check_mtime,
                     std::vector<std::string>* reasons) {
  const DecodedMetadata target = DecodeMetadata(meta);
  if (!target.mode) {
    reasons->push_back("metadata: no x-amz-meta-mode");
    return;
  }
  mode_t target_mode = static_cast<mode_t>(*target.mode);
  if ((target_mode & S_IFMT) != (st.st_mode & S_IFMT)) {
    reasons->push_back(std::string("type: local ") + TypeName(st.st_mode) + ", target " +
                       TypeName(target_mode));
    return;
  }
  // A symlink's permissions are always 0777 and not its own to change.
  if (!S_ISLNK(st.st_mode) && (target_mode & 07777) != (st.st_mode & 07777))
    reasons->push_back("mode: local " + Octal(st.st_mode) + ", target " + Octal(target_mode));
  const auto& uid = target.uid;
  const auto& gid = target.gid;
  if ((uid && *uid != st.st_uid) || (gid && *gid != st.st_gid))
    reasons->push_back("owner: local " + std::to_string(st.st_uid) + ":" +
                       std::to_string(st.st_gid) + ", target " +
                       (uid ? std::to_string(*uid) : "?") + ":" +
                       (gid ? std::to_string(*gid) : "?"));
  if ((S_ISCHR(st.st_mode) || S_ISBLK(st.st_mode))) {
    const auto& rdev = target.rdev;
    if (!rdev || *rdev != st.st_rdev)
      reasons->push_back("device number: local " + std::to_string(major(st.st_rdev)) + "," +
                         std::to_string(minor(st.st_rdev)) + ", target " +
                         (rdev ? std::to_string(major(*rdev)) + "," + std::to_string(minor(*rdev))
                               : std::string("none")));
  }
  if (check_mtime) {
    if (!target.mtime_ns) {
      reasons->push_back("metadata: no x-amz-meta-mtime");
    } else if (target.mtime_exact) {
      if (*target.mtime_ns != MtimeNs(st))
        reasons->push_back("mtime: local " + NsString(MtimeNs(st)) + ", target " +
                           NsString(*target.mtime_ns));
    } else {  // s3fs: whole seconds
      int64_t secs = *target.mtime_ns / 1000000000;
      if (secs != int64_t(st.st_mtim.tv_sec))
        reasons->push_back("mtime: local " + std::to_string(st.st_mtim.tv_sec) + ", target " +
                           std::to_string(secs));
    }
  }
}

std::string Join(const std::vector<std::string>& parts) {
  std::string out;
  for (const auto& p : parts) {
    if (!out.empty()) out += "; ";
    out += p;
  }
  return out;
}

struct Outcome {
  std::vector<std::string> reasons;  // empty: identical
  std::string error;                 // not empty: could not compare
  bool retryable = false;            // the error may go away (network, 5xx, throttling)
  uint64_t bytes = 0;
};

void StoreFailed(const StoreStatus& status, Outcome* out) {
  out->error = status.message();
  out->retryable = status.retryable();
}

std::string SizeReason(uint64_t local, uint64_t target) {
  return "size: local " + std::to_string(local) + ", target " + std::to_string(target);
}

// Compares a regular file's size and content chunk by chunk (ranged GETs),
// hashing both sides. Sets *meta to the object's metadata when it got that far.
void CompareFileContent(ObjectStore* store, const std::string& key, int fd, const struct stat& st,
                        const VerifyConfig& config, Outcome* out, std::optional<Metadata>* meta) {
  uint64_t size = uint64_t(st.st_size);
  if (size == 0) {
    auto head = store->Head(key);
    if (!head.ok()) {
      StoreFailed(head.status(), out);
      return;
    }
    if (head->size != 0) out->reasons.push_back(SizeReason(0, head->size));
    *meta = head->metadata;
    return;
  }
  auto local_hash = Hasher::Create(Hasher::Algorithm::kSha256);
  auto target_hash = Hasher::Create(Hasher::Algorithm::kSha256);
  if (!local_hash.ok() || !target_hash.ok()) {
    out->error = "cannot create a SHA-256 hasher";
    return;
  }
  std::string buf;
  std::string etag;
  uint64_t off = 0;
  while (off < size) {
    uint64_t len = std::min(config.chunk_size, size - off);
    auto got = store->Get(key, ByteRange{off, len});
    if (!got.ok()) {
      if (off == 0 && got.status().error_code() == "InvalidRange") {  // target smaller: empty
        auto head = store->Head(key);
        if (head.ok()) {
          out->reasons.push_back(SizeReason(size, head->size));
          *meta = head->metadata;
          return;
        }
      }
      StoreFailed(got.status(), out);
      return;
    }
    if (off == 0) {
      etag = got->info.etag;
      *meta = got->info.metadata;
      if (got->info.size != size) {
        out->reasons.push_back(SizeReason(size, got->info.size));
        return;  // no point reading content of another length
      }
    } else if (got->info.etag != etag) {
      out->error = "the object changed while it was read";
      out->retryable = true;
      return;
    }
    if (got->body.size() != len) {
      out->error = "short read from the target (" + std::to_string(got->body.size()) + " of " +
                   std::to_string(len) + " bytes at offset " + std::to_string(off) + ")";
      return;
    }
    buf.resize(len);
    uint64_t have = 0;
    while (have < len) {
      ssize_t n = pread(fd, buf.data() + have, len - have, off + have);
      if (n < 0) {
        if (errno == EINTR) continue;
        out->error = PosixError("read", errno).message();
        return;
      }
      if (n == 0) break;
      have += n;
    }
    if (have != len) {
      out->reasons.push_back("local file changed during verify (shorter now)");
      return;
    }
    if (!local_hash->Update(buf).ok() || !target_hash->Update(got->body).ok()) {
      out->error = "SHA-256 failed";
      return;
    }
    out->bytes += len;
    off += len;
  }
  auto l = local_hash->Finish();
  auto t = target_hash->Finish();
  if (!l.ok() || !t.ok()) {
    out->error = "SHA-256 failed";
    return;
  }
  if (*l != *t)
    out->reasons.push_back("content: SHA-256 local " + HexEncode(*l).substr(0, 16) +
                           "..., target " + HexEncode(*t).substr(0, 16) + "...");
}

Outcome CompareOne(ObjectStore* store, int root_fd, const LocalEntry& local,
                   const VerifyConfig& config) {
  Outcome out;
  const std::string key = ObjectKey(local.path, S_ISDIR(local.st.st_mode));
  const struct stat& st = local.st;
  if (S_ISREG(st.st_mode)) {
    auto opened = OpenLocalForRead(root_fd, local.path, &st);
    if (!opened.ok()) {
      if (opened.status().code() != ENOENT && opened.status().code() != ESTALE) {
        out.error = opened.status().message();
      } else {
        out.reasons.push_back("local file changed during verify (gone or replaced)");
      }
      return out;
    }
    const struct stat& now = opened->st;
    if (config.quick) {
      auto head = store->Head(key);
      if (!head.ok()) {
        StoreFailed(head.status(), &out);
        return out;
      }
      if (head->size != uint64_t(now.st_size))
        out.reasons.push_back(SizeReason(now.st_size, head->size));
      CompareMetadata(head->metadata, now, true, &out.reasons);
      return out;
    }
    std::optional<Metadata> meta;
    CompareFileContent(store, key, opened->fd.get(), now, config, &out, &meta);
    if (meta && out.error.empty()) CompareMetadata(*meta, now, true, &out.reasons);
    struct stat after;
    if (!out.reasons.empty() && fstat(opened->fd.get(), &after) == 0 &&
        (after.st_size != now.st_size || MtimeNs(after) != MtimeNs(now)))
      out.reasons.push_back("local file changed during verify");
    return out;
  }
  if (S_ISLNK(st.st_mode)) {
    auto fd = OpenBeneath(root_fd, local.path, O_PATH | O_NOFOLLOW | O_CLOEXEC);
    char target[PATH_MAX + 1];
    ssize_t n = -1;
    struct stat now;
    if (fd.ok() && fstat(fd->get(), &now) == 0 && S_ISLNK(now.st_mode))
      n = readlinkat(fd->get(), "", target, sizeof target - 1);
    if (n < 0) {
      out.reasons.push_back("local symlink changed during verify (gone or replaced)");
      return out;
    }
    std::string link(target, n);
    // Read at most a little more than the local target: a longer body
    // differs anyway.
    auto got = store->Get(key, ByteRange{0, uint64_t(PATH_MAX) + 1});
    if (!got.ok() && got.status().error_code() == "InvalidRange") got = store->Get(key);
    if (!got.ok()) {
      StoreFailed(got.status(), &out);
      return out;
    }
    if (got->body != link)
      out.reasons.push_back(
          "symlink target: local '" + link + "', target '" +
          (got->info.size > got->body.size() ? got->body.substr(0, 64) + "..." : got->body) + "'");
    CompareMetadata(got->info.metadata, now, false, &out.reasons);
    return out;
  }
  // Directories (their mtime changes with every entry and is not uploaded
  // again) and special files: the object's metadata.
  auto head = store->Head(key);
  if (!head.ok()) {
    StoreFailed(head.status(), &out);
    return out;
  }
  if (!S_ISDIR(st.st_mode) && head->size != 0) out.reasons.push_back(SizeReason(0, head->size));
  CompareMetadata(head->metadata, st, false, &out.reasons);
  return out;
}

Status WalkLocal(int root_fd, const std::string& prefix, const ExcludeFilter& filter,
                 std::map<std::string, LocalEntry>* entries, std::vector<VerifyError>* errors) {
  if (!prefix.empty()) {
    if (Ignored(filter, prefix)) return Status::Ok();
    auto fd = OpenBeneath(root_fd, prefix, O_PATH | O_NOFOLLOW | O_CLOEXEC);
    if (!fd.ok()) {
      if (fd.status().code() == ENOENT) return Status::Ok();  // all in the target is extra
      return fd.status().WithContext(prefix);
    }
    LocalEntry e{prefix, {}};
    if (fstat(fd->get(), &e.st) != 0) return PosixError(prefix, errno);
    (*entries)[ObjectKey(prefix, S_ISDIR(e.st.st_mode))] = e;
    if (!S_ISDIR(e.st.st_mode)) return Status::Ok();
  }
  WalkCallbacks cb;
  // Excluded: and, for a directory, everything below it.
  cb.skip = [&](const std::string& path) { return filter.Excluded(path); };
  cb.visit = [&](const std::string& path, const struct stat& st) {
    (*entries)[ObjectKey(path, S_ISDIR(st.st_mode))] = LocalEntry{path, st};
    return true;
  };
  cb.error = [&](const std::string& where, const Status& s) {
    errors->push_back({where, s.message()});
  };
  Status s = WalkTree(root_fd, prefix, cb);
  if (!s.ok() && !prefix.empty()) return s.WithContext(prefix);
  return s;
}

}  // namespace

Result<std::string> NormalizeVerifyPrefix(const std::string& path) {
  size_t b = path.find_first_not_of('/');
  if (b == std::string::npos) return std::string();
  size_t e = path.find_last_not_of('/');
  std::string p = path.substr(b, e - b + 1);
  size_t start = 0;
  while (true) {
    size_t slash = p.find('/', start);
    std::string comp =
        p.substr(start, slash == std::string::npos ? std::string::npos : slash - start);
    if (comp.empty() || comp == "." || comp == "..")
      return Status::Error(EINVAL, "--path " + path + ": empty, '.' or '..' component");
    if (slash == std::string::npos) break;
    start = slash + 1;
  }
  return p;
}

Result<VerifyReport> Verify(ObjectStore* store, const std::string& dir, const ExcludeFilter& filter,
                            const VerifyConfig& config) {
  auto t0 = std::chrono::steady_clock::now();
  VerifyReport rep;
  UniqueFd root(open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!root) return PosixError(dir, errno);

  std::map<std::string, LocalEntry> local;
  SCRIBEFS_RETURN_IF_ERROR(WalkLocal(root.get(), config.prefix, filter, &local, &rep.errors));

  std::map<std::string, ListEntry> remote;
  ListOptions lo;
  lo.prefix = config.prefix;
  StoreStatus ls = store->List(lo, [&](const ListEntry& e) {
    std::string path = PathOfKey(e.key);
    if (path.empty() || !InScope(config.prefix, path) || Ignored(filter, path)) return true;
    remote[e.key] = e;
    return true;
  });
  if (!ls.ok()) return ls.status().WithContext("listing " + store->Describe());

  // Pair them up. A path that is a directory on one side and not on the
  // other is one difference (type), not a missing and an extra key.
  std::vector<const LocalEntry*> jobs;
  std::vector<VerifyDifference> different;
  std::map<std::string, bool> seen_paths;
  for (const auto& [key, e] : local) {
    seen_paths[e.path] = true;
    if (remote.count(key)) {
      jobs.push_back(&e);
      continue;
    }
    std::string other = S_ISDIR(e.st.st_mode) ? e.path : e.path + "/";
    if (auto it = remote.find(other); it != remote.end()) {
      different.push_back(
          {key, std::string("type: local ") + TypeName(e.st.st_mode) + ", target " +
                    (S_ISDIR(e.st.st_mode) ? "object " + other : "directory marker " + other)});
      remote.erase(it);
      continue;
    }
    rep.missing.push_back(key);
  }
  for (const auto& [key, e] : remote) {
    seen_paths[PathOfKey(key)] = true;
    if (!local.count(key)) rep.extra.push_back(key);
  }
  rep.checked = seen_paths.size();

  // Compare the pairs on `workers` threads.
  std::mutex mu;
  std::condition_variable cv;
  std::atomic<size_t> next{0};
  size_t done = 0;
  std::vector<Outcome> outcomes(jobs.size());
  int n = std::max(1, std::min<int>(config.workers, int(jobs.size())));
  std::vector<std::thread> threads;
  for (int i = 0; i < n && !jobs.empty(); ++i) {
    threads.emplace_back([&] {
      for (size_t j; (j = next.fetch_add(1)) < jobs.size();) {
        Outcome o;
        // Transient store errors (network, 5xx, throttling) are tried
        // again a few times, as the uploader would.
        for (int attempt = 0;; ++attempt) {
          o = Outcome();
          try {
            o = CompareOne(store, root.get(), *jobs[j], config);
          } catch (const std::exception& ex) {
            o.error = ex.what();
          }
          if (o.error.empty() || !o.retryable || attempt == 3) break;
          std::this_thread::sleep_for(std::chrono::milliseconds(200 << attempt));
        }
        std::lock_guard lk(mu);
        outcomes[j] = std::move(o);
        ++done;
        cv.notify_all();
      }
    });
  }
  {
    std::unique_lock lk(mu);
    while (done < jobs.size()) {
      cv.wait_for(lk, std::chrono::milliseconds(200));
      if (config.progress) {
        size_t d = done;
        lk.unlock();
        config.progress(d, jobs.size());
        lk.lock();
      }
    }
  }
  for (auto& t : threads) t.join();

  for (size_t j = 0; j < jobs.size(); ++j) {
    std::string key = ObjectKey(jobs[j]->path, S_ISDIR(jobs[j]->st.st_mode));
    rep.bytes_compared += outcomes[j].bytes;
    if (!outcomes[j].error.empty())
      rep.errors.push_back({key, outcomes[j].error});
    else if (!outcomes[j].reasons.empty())
      different.push_back({key, Join(outcomes[j].reasons)});
  }
  std::sort(different.begin(), different.end(),
            [](const auto& a, const auto& b) { return a.path < b.path; });
  rep.different = std::move(different);
  std::sort(rep.errors.begin(), rep.errors.end(),
            [](const auto& a, const auto& b) { return a.path < b.path; });
  rep.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return rep;
}

// ---- verify --history ----

namespace {

// What the history needs of one chunk.
struct ChunkNeed {
  uint64_t size = 0;
  std::vector<HistoryChunkUse> used_by;
  uint64_t uses = 0;
};

// Reads every base and delta and gathers the chunks their entries reference.
// A segment that cannot be read is an error of the report; the others count.
StoreStatus GatherChunks(history::HistoryStore& hs, const HistoryVerifyConfig& config,
                         std::map<std::string, ChunkNeed>* needs, HistoryVerifyReport* report) {
  auto list = hs.ListSegments();
  if (!list.ok()) return list.status();
  std::vector<history::SegmentRef> refs = list->bases;
  refs.insert(refs.end(), list->deltas.begin(), list->deltas.end());
  for (const history::SegmentRef& ref : refs) {
    auto seg = hs.LoadSegment(ref);
    if (!seg.ok()) {
      report->errors.push_back({ref.key, seg.status().message()});
      continue;
    }
    ++report->segments;
    const history::SegmentHeader& h = seg->header;
    report->first_seq = std::min(report->first_seq.value_or(h.first_seq), h.first_seq);
    report->last_seq = std::max(report->last_seq.value_or(h.last_seq), h.last_seq);
    for (const history::Entry& e : seg->entries) {
      ++report->entries;
      if (e.op != history::EntryOp::kPut) continue;
      for (const history::ChunkRef& c : e.state.chunks) {
        auto [it, added] = needs->try_emplace(c.sha256);
        ChunkNeed& need = it->second;
        if (added) need.size = c.size;
        ++need.uses;
        if (need.used_by.size() < config.max_uses) need.used_by.push_back({e.path, e.seq, ref.key});
      }
    }
  }
  return StoreStatus();
}

// Reads the chunk in ranged GETs and compares its SHA-256 with its name. Sets
// *problem when it differs; returns an error when it could not be read.
Status HashChunk(ObjectStore* store, const std::string& key, const std::string& sha256,
                 uint64_t size, uint64_t step, std::string* problem) {
  auto hasher = Hasher::Create(Hasher::Algorithm::kSha256);
  if (!hasher.ok()) return hasher.status();
  for (uint64_t off = 0; off < size; off += step) {
    uint64_t len = std::min(step, size - off);
    auto got = store->Get(key, ByteRange{off, len});
    if (!got.ok()) return Status::Error(got.status().code(), got.status().message());
    if (got->body.size() != len)
      return Status::Error(EIO, "short read at " + std::to_string(off) + " (" +
                                    std::to_string(got->body.size()) + " of " +
                                    std::to_string(len) + " bytes)");
    SCRIBEFS_RETURN_IF_ERROR(hasher->Update(got->body));
  }
  auto digest = hasher->Finish();
  if (!digest.ok()) return digest.status();
  std::string hex = HexEncode(*digest);
  if (hex != sha256) *problem = "SHA-256 is " + hex;
  return Status::Ok();
}

// deep: hashes the chunks present with the right size, on `workers` threads.
void HashChunks(ObjectStore* store, const HistoryVerifyConfig& config,
                const std::vector<std::pair<std::string, const ChunkNeed*>>& todo,
                HistoryVerifyReport* report, std::map<std::string, std::string>* corrupt) {
  std::atomic<size_t> next{0};
  std::mutex mu;
  auto work = [&] {
    for (size_t i; (i = next.fetch_add(1)) < todo.size();) {
      const auto& [sha, need] = todo[i];
      std::string key = history::ChunkKey(sha), problem;
      Status s = HashChunk(store, key, sha, need->size, std::max<uint64_t>(config.chunk_size, 1),
                           &problem);
      std::lock_guard lk(mu);
      if (!s.ok()) {
        report->errors.push_back({key, s.message()});
        continue;
      }
      report->bytes_hashed += need->size;
      if (!problem.empty()) (*corrupt)[sha] = problem;
    }
  };
  int n = std::max(1, std::min<int>(config.workers, static_cast<int>(todo.size())));
  std::vector<std::thread> threads;
  for (int i = 1; i < n; ++i) threads.emplace_back(work);
  work();
  for (std::thread& t : threads) t.join();
}

}  // namespace

Result<HistoryVerifyReport> VerifyHistory(ObjectStore* store, const HistoryVerifyConfig& config) {
  auto t0 = std::chrono::steady_clock::now();
  HistoryVerifyReport report;
  history::HistoryStore hs(*store);
  std::map<std::string, ChunkNeed> needs;
  if (StoreStatus g = GatherChunks(hs, config, &needs, &report); !g.ok())
    return Status::Error(g.code(), "listing the timeline: " + g.message());
  // One List of the chunks instead of a HEAD per chunk.
  std::map<std::string, uint64_t> present;
  StoreStatus listed =
      store->List({std::string(history::kChunkKeyPrefix), "", 1000}, [&](const ListEntry& e) {
        auto sha = history::ParseChunkKey(e.key);
        if (sha.ok()) present[*sha] = e.size;
        return true;
      });
  if (!listed.ok()) return Status::Error(listed.code(), "listing the chunks: " + listed.message());
  std::vector<std::pair<std::string, const ChunkNeed*>> to_hash;
  std::map<std::string, std::pair<std::string, std::string>> bad;  // sha -> kind, detail
  for (const auto& [sha, need] : needs) {
    ++report.chunks;
    report.chunk_bytes += need.size;
    auto it = present.find(sha);
    if (it == present.end()) {
      bad[sha] = {"missing", "not in the target"};
    } else if (it->second != need.size) {
      bad[sha] = {"size",
                  "size " + std::to_string(it->second) + ", expected " + std::to_string(need.size)};
    } else if (config.deep) {
      to_hash.emplace_back(sha, &need);
    }
  }
  std::map<std::string, std::string> corrupt;
  if (!to_hash.empty()) HashChunks(store, config, to_hash, &report, &corrupt);
  for (const auto& [sha, detail] : corrupt) bad[sha] = {"corrupt", detail};
  for (const auto& [sha, what] : bad) {
    const ChunkNeed& need = needs[sha];
    report.problems.push_back(
        {history::ChunkKey(sha), what.first, what.second, need.size, need.used_by, need.uses});
  }
  std::sort(report.errors.begin(), report.errors.end(),
            [](const VerifyError& a, const VerifyError& b) { return a.path < b.path; });
  report.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return report;
}

}  // namespace scribefs::ctl
