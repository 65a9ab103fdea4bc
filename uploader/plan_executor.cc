#include "uploader/plan_executor.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <future>
#include <set>

#include "common/beneath.h"
#include "journal/record.h"
#include "uploader/digest.h"
#include "uploader/object_layout.h"

namespace scribefs {

namespace {

const StoreStatus& StatusOf(const StoreStatus& s) { return s; }

StoreResult<std::string> FileSha256(int fd, uint64_t size) {
  auto sha = FileSha256Hex(fd, size);
  if (!sha.ok()) return StoreStatus(sha.status());
  return std::move(sha).value();
}

// Hex SHA-256 of a payload read on demand (a file at a checkpoint's mark).
StoreResult<std::string> ContentSha256Hex(const Payload& p) {
  auto h = Hasher::Create(Hasher::Algorithm::kSha256);
  if (!h.ok()) return StoreStatus(h.status());
  std::string buf(1 << 20, '\0');
  for (uint64_t off = 0; off < p.size();) {
    auto n = p.ReadAt(buf.data(), std::min<uint64_t>(buf.size(), p.size() - off), off);
    if (!n.ok()) return n.status();
    if (*n == 0) return S3LikeError(EAGAIN, 0, "SourceChanged", "the content ended early");
    SCRIBEFS_RETURN_IF_ERROR(h->Update(std::string_view(buf.data(), *n)));
    off += *n;
  }
  auto d = h->Finish();
  if (!d.ok()) return StoreStatus(d.status());
  return HexEncode(*d);
}
template <typename T>
const StoreStatus& StatusOf(const StoreResult<T>& r) {
  return r.status();
}

}  // namespace

struct PlanExecutor::Run {
  const std::string& path;
  const UploadPlan& plan;
  int file_fd;
  const std::string& link_target;
  RemoteObject obj;  // what gets recorded
  PathOutcome out;
  bool skip_copies = false;  // a CopyFrom was refused for good: upload instead
};

template <typename Op>
auto PlanExecutor::WithRequestRetries(Op op) -> decltype(op()) {
  constexpr int kRequestTries = 4;
  auto r = op();
  for (int attempt = 1; attempt < kRequestTries && StatusOf(r).retryable() &&
                        StatusOf(r).error_code() != "SourceChanged";
       ++attempt) {
    if (env_.retry_wait && !env_.retry_wait(attempt, StatusOf(r))) break;
    r = op();
  }
  return r;
}

PathOutcome PlanExecutor::Execute(const std::string& path, const UploadPlan& plan, int file_fd,
                                  const std::string& link_target) {
  Run run{path, plan, file_fd, link_target, plan.object, {}};
  if (plan.skipped_unchanged) run.out.skipped_unchanged = 1;
  for (const plan::Step& step : plan.steps) {
    Next next = std::visit(
        [&](const auto& s) -> Next {
          using T = std::decay_t<decltype(s)>;
          if constexpr (std::is_same_v<T, plan::Delete>) return DoDelete(run, s);
          if constexpr (std::is_same_v<T, plan::PutMarker>)
            return DoPutSmall(run, ObjectKey(path, true), Payload::FromMemory(""), false);
          if constexpr (std::is_same_v<T, plan::CopyRenamedChildren>) return DoChildren(run, s);
          if constexpr (std::is_same_v<T, plan::PutSymlink>)
            return DoPutSmall(run, path, Payload::FromMemory(link_target), true);
          if constexpr (std::is_same_v<T, plan::PutEmpty>)
            return DoPutSmall(run, path, Payload::FromMemory(""), false);
          if constexpr (std::is_same_v<T, plan::RewriteMetadata>) return DoRewriteMetadata(run, s);
          if constexpr (std::is_same_v<T, plan::CopyFrom>) return DoCopyFrom(run, s);
          if constexpr (std::is_same_v<T, plan::PutFile>) return DoPutFile(run);
          if constexpr (std::is_same_v<T, plan::Multipart>) return DoMultipart(run, s);
        },
        step);
    if (next == Next::kDone) break;
  }
  return std::move(run.out);
}

bool PlanExecutor::Record(Run& run, const RemoteObject& o) {
  Status s = env_.record(o);
  if (!s.ok()) {
    run.out.status = StoreStatus(s);
    return false;
  }
  // Is it still there under this name? The path, or a directory above it,
  // may have been renamed or removed during the upload, and that record's
  // own upload may have run already (a directory's removal deletes what is
  // stored below it, which did not yet include this). Then go again: the
  // next attempt finds the path gone and deletes what was just stored,
  // instead of leaving it in the target.
  if (env_.at_mark) return true;  // the state at the mark: stored for good
  auto again = OpenBeneath(env_.root_fd, run.path, O_PATH | O_NOFOLLOW);
  struct stat now;
  if (!again.ok() || fstat(again->get(), &now) != 0 || now.st_ino != o.ino)
    run.out.changed_during = true;
  return true;
}

Payload PlanExecutor::Content(const Run& run, uint64_t off, uint64_t len) const {
  if (env_.at_mark) return Payload::FromSource(env_.marked_content, off, len);
  return Payload::FromFile(run.file_fd, off, len);
}

bool PlanExecutor::Unchanged(Run& run) {
  if (env_.at_mark) return true;  // a state at a mark does not change
  struct stat st2;
  if (fstat(run.file_fd, &st2) != 0 || uint64_t(st2.st_size) != run.plan.object.size ||
      MtimeNs(st2) != run.plan.object.mtime_ns) {
    run.out.changed_during = true;
    return false;
  }
  return true;
}

PlanExecutor::Next PlanExecutor::DoDelete(Run& run, const plan::Delete& step) {
  std::vector<std::string> keys = step.keys;
  if (!step.list_prefix.empty()) {
    std::set<std::string> known(keys.begin(), keys.end());
    ListOptions lo;
    lo.prefix = step.list_prefix;
    StoreStatus listed = env_.store->List(lo, [&](const ListEntry& e) {
      if (!known.count(e.key)) keys.push_back(e.key);
      return true;
    });
    if (!listed.ok()) {
      run.out.status = listed;
      return Next::kDone;
    }
  }
  run.out.status = WithRequestRetries([&] { return env_.store->DeleteMany(keys); });
  if (!run.out.status.ok()) return Next::kDone;
  Status erased = env_.erase(step.erase);
  if (!step.gone) return Next::kContinue;  // the new object follows
  if (!erased.ok()) {
    run.out.status = StoreStatus(erased);
    return Next::kDone;
  }
  run.out.deletes += step.erase.size();
  return Next::kDone;
}

// A directory marker (content = false: not counted when it is a special
// file), a symlink or a special file: one small PUT.
PlanExecutor::Next PlanExecutor::DoPutSmall(Run& run, const std::string& key,
                                            const Payload& payload, bool content) {
  auto put = WithRequestRetries([&] { return env_.store->Put(key, payload, run.plan.metadata); });
  if (!put.ok()) {
    run.out.status = put.status();
    return Next::kDone;
  }
  RemoteObject& obj = run.obj;
  obj.etag = put->etag;
  obj.uploaded_ns = NowNs();
  const bool dir = IsMarkerKey(key);
  if (dir || content) {
    obj.version_id = put->version_id;
    obj.sha256 = put->sha256_hex;
  }
  if (content) {  // a symlink: its records carry what was stored
    run.out.etag = obj.etag;
    run.out.sha256 = obj.sha256;
    run.out.version_id = obj.version_id;
  }
  bool recorded = Record(run, obj);
  if (dir) {
    if (!recorded) return Next::kDone;
    run.out.uploads++;
    return Next::kContinue;  // the children of a renamed directory follow
  }
  if (content) run.out.uploads++;
  return Next::kDone;
}

PlanExecutor::Next PlanExecutor::DoRewriteMetadata(Run& run, const plan::RewriteMetadata& step) {
  const RemoteObject& old = step.stored;
  CopyOptions co;
  co.metadata = run.plan.metadata;
  co.if_match = old.etag;
  auto c = WithRequestRetries([&] { return env_.store->Copy(run.path, run.path, co); });
  if (!c.ok()) return Next::kContinue;  // store it again instead
  RemoteObject& obj = run.obj;
  obj.etag = run.out.etag = c->etag.empty() ? old.etag : c->etag;
  obj.sha256 = run.out.sha256 = old.sha256;
  obj.version_id = run.out.version_id = c->version_id;
  obj.part_size = old.part_size;
  obj.uploaded_ns = NowNs();
  Record(run, obj);
  return Next::kDone;
}

PlanExecutor::Next PlanExecutor::DoCopyFrom(Run& run, const plan::CopyFrom& step) {
  if (run.skip_copies) return Next::kContinue;
  const RemoteObject& s = step.source;
  CopyOptions co;
  co.metadata = run.plan.metadata;
  co.if_match = s.etag;
  auto c = WithRequestRetries([&] { return env_.store->Copy(s.path, run.path, co); });
  if (!c.ok()) {
    if (c.status().retryable()) {
      run.out.status = c.status();
      return Next::kDone;
    }
    run.skip_copies = true;  // source gone or changed: upload instead
    return Next::kContinue;
  }
  RemoteObject& obj = run.obj;
  obj.etag = run.out.etag = c->etag;
  obj.sha256 = run.out.sha256 = s.sha256;
  obj.version_id = run.out.version_id = c->version_id;
  obj.part_size = s.part_size;
  obj.uploaded_ns = NowNs();
  // Stored either way: recorded, so that a later delete or rename finds it.
  bool unchanged = Unchanged(run);
  Record(run, obj);
  if (unchanged) run.out.copies++;
  return Next::kDone;
}

PlanExecutor::Next PlanExecutor::DoPutFile(Run& run) {
  RemoteObject& obj = run.obj;
  auto put = WithRequestRetries(
      [&] { return env_.store->Put(run.path, Content(run, 0, obj.size), run.plan.metadata); });
  if (!put.ok()) {
    if (put.status().error_code() == "SourceChanged")
      run.out.changed_during = true;
    else
      run.out.status = put.status();
    return Next::kDone;
  }
  obj.etag = run.out.etag = put->etag;
  obj.sha256 = run.out.sha256 = put->sha256_hex;
  obj.version_id = run.out.version_id = put->version_id;
  obj.uploaded_ns = NowNs();
  // Stored either way: recorded, so that a later delete or rename finds it
  // (the file changing meanwhile only means it goes up again).
  bool unchanged = Unchanged(run);
  Record(run, obj);
  if (unchanged) run.out.uploads++;
  return Next::kDone;
}

PlanExecutor::Next PlanExecutor::DoMultipart(Run& run, const plan::Multipart& step) {
  const std::string& path = run.path;
  RemoteObject& obj = run.obj;
  ObjectStore& store = *env_.store;
  const uint64_t ps = step.part_size, nparts = step.parts;
  bool partial = !step.stored_etag.empty();
  if (partial) {
    auto head = WithRequestRetries([&] { return store.Head(path); });
    if (!head.ok() || head->etag != step.stored_etag) partial = false;
  }
  auto upload_id =
      WithRequestRetries([&] { return store.CreateMultipartUpload(path, run.plan.metadata); });
  if (!upload_id.ok()) {
    run.out.status = upload_id.status();
    return Next::kDone;
  }
  std::vector<CompletedPart> done(nparts);
  std::vector<StoreStatus> errors(nparts);
  std::atomic<uint64_t> next{0};
  std::atomic<bool> copied_any{false};
  auto parts = [&] {
    for (uint64_t i; (i = next.fetch_add(1)) < nparts;) {
      uint64_t off = i * ps, len = std::min(ps, obj.size - off);
      int pn = static_cast<int>(i + 1);
      StoreResult<PartResult> r = StoreStatus(Status::Error(EINVAL, "no part"));
      if (partial && step.copy[i]) {
        r = WithRequestRetries([&] {
          return store.UploadPartCopy(path, *upload_id, pn, path, ByteRange{off, len},
                                      step.stored_etag);
        });
        if (r.ok()) copied_any = true;
      } else {
        r = WithRequestRetries(
            [&] { return store.UploadPart(path, *upload_id, pn, Content(run, off, len)); });
      }
      if (!r.ok()) {
        errors[i] = r.status();
        return;
      }
      done[i] = {pn, r->etag};
    }
  };
  {
    std::vector<std::future<void>> fs;
    int par = std::max(1, std::min<int>(env_.part_parallelism, int(nparts)));
    for (int t = 0; t < par; ++t) fs.push_back(std::async(std::launch::async, parts));
    for (auto& f : fs) f.get();
  }
  for (uint64_t i = 0; i < nparts; ++i) {
    if (errors[i].ok()) continue;
    (void)WithRequestRetries([&] { return store.AbortMultipartUpload(path, *upload_id); });
    if (errors[i].precondition_failed() || errors[i].error_code() == "SourceChanged")
      run.out.changed_during = true;  // next attempt sends everything (whole)
    else
      run.out.status = errors[i];
    return Next::kDone;
  }
  // Completing makes the object (a version, in a versioned bucket): the parts
  // of a file that changed while they went up must not become one, torn. So
  // the file is hashed and checked unchanged before, and the upload aborted
  // (and sent again: changed_during) when it changed.
  auto abort = [&] {
    (void)WithRequestRetries([&] { return store.AbortMultipartUpload(path, *upload_id); });
    return Next::kDone;
  };
  if (!Unchanged(run)) return abort();
  auto sha = env_.at_mark ? ContentSha256Hex(Content(run, 0, obj.size))
                          : FileSha256(run.file_fd, obj.size);
  if (!sha.ok()) {
    if (sha.status().error_code() == "SourceChanged")
      run.out.changed_during = true;  // the capture was abandoned: go again (live)
    else
      run.out.status = sha.status();
    return abort();
  }
  if (!Unchanged(run)) return abort();
  obj.sha256 = run.out.sha256 = *sha;
  auto complete = store.CompleteMultipartUpload(path, *upload_id, done);
  if (!complete.ok()) {
    run.out.status = complete.status();
    return abort();
  }
  obj.etag = run.out.etag = complete->etag;
  obj.version_id = run.out.version_id = complete->version_id;
  obj.part_size = ps;
  obj.uploaded_ns = NowNs();
  bool unchanged = Unchanged(run);
  // Stored either way: recorded, so that a later delete or rename finds it.
  Record(run, obj);
  if (!unchanged) return Next::kDone;
  run.out.uploads++;
  if (copied_any) run.out.partial_uploads++;
  return Next::kDone;
}

PlanExecutor::Next PlanExecutor::DoChildren(Run& run, const plan::CopyRenamedChildren& step) {
  // Everything below a directory moved here is new under this name: each
  // child is reconciled with its old name as a rename source (so content the
  // old name stored is copied, and child directories recurse the same way).
  auto names = ListDir(env_.root_fd, run.path);
  if (!names.ok()) return Next::kDone;  // changed meanwhile: its own records cover it
  for (const auto& n : *names) {
    PathOutcome child = env_.reconcile_child(run.path + "/" + n, step.from + "/" + n);
    if (!child.status.ok() || child.changed_during) {
      child.Add(run.out);  // the counters so far
      run.out = std::move(child);
      return Next::kDone;
    }
    run.out.Add(child);
  }
  return Next::kDone;
}

}  // namespace scribefs
