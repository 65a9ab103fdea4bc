// PlanExecutor: performs an UploadPlan (uploader/upload_plan.h) for one path
// against an ObjectStore, and records what it stored through callbacks (the
// replicator writes the journal's objects index with them).
//
// Each request is tried up to 4 times in all while it fails with a
// retryable error other than SourceChanged, waiting between tries through
// Env::retry_wait, before the path's upload as a whole is retried (by the
// caller, with its long backoff). So one failed part does not restart a
// multipart upload, nor one failed copy the walk of a renamed directory. Not
// for CompleteMultipartUpload: a second try after an answer was lost may find
// the upload gone (NoSuchUpload, permanent).
//
// After storing, the executor looks at the path again: if the file changed
// while it was read, or the path no longer is the same inode (renamed or
// removed during the upload), the outcome says changed_during and the caller
// goes again (what was stored is recorded either way, so that a later delete
// or rename finds it).
//
// One Execute at a time per executor; the store must be thread-safe (parts
// of a multipart upload go in parallel).
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "common/status.h"
#include "uploader/object_store.h"
#include "journal/remote_index.h"
#include "uploader/upload_plan.h"

namespace scribefs {

// What storing one path came to.
struct PathOutcome {
  StoreStatus status;
  bool changed_during = false;  // local file changed while uploading: go again
  bool unstorable = false;      // no store can hold its key: skipped, not failed
  std::string etag, sha256, version_id;
  // Counters for ReplicatorStats.
  uint64_t uploads = 0, copies = 0, deletes = 0, partial_uploads = 0, skipped_unchanged = 0;
  void Add(const PathOutcome& child) {
    uploads += child.uploads;
    copies += child.copies;
    deletes += child.deletes;
    partial_uploads += child.partial_uploads;
    skipped_unchanged += child.skipped_unchanged;
  }
};

class PlanExecutor {
 public:
  struct Env {
    ObjectStore* store = nullptr;
    int root_fd = -1;  // DATADIR
    int part_parallelism = 4;
    // A pass at a checkpoint's mark (uploader/marked_states.h): nothing is
    // checked against the live path (the state at the mark cannot change,
    // whatever happened to the path since), and a regular file's content
    // is read from marked_content (file_fd is -1).
    bool at_mark = false;
    const PayloadSource* marked_content = nullptr;
    // A request failed with `status` (retryable) on try `attempt` (1-based):
    // wait before the next try; false: do not try again (stopping).
    std::function<bool(int attempt, const StoreStatus& status)> retry_wait;
    // Index updates: a stored object, and rows of deleted ones.
    std::function<Status(const RemoteObject&)> record;
    std::function<Status(const std::vector<std::string>& paths)> erase;
    // CopyRenamedChildren: reconcile `child` (renamed from `from`) as a
    // path of its own; the caller leaves excluded paths out.
    std::function<PathOutcome(const std::string& child, const std::string& from)> reconcile_child;
  };

  explicit PlanExecutor(Env env) : env_(std::move(env)) {}

  // file_fd: for a regular file, the descriptor the plan's file_st came
  // from (content is read from it); -1 otherwise (or at a mark: see
  // Env::marked_content). link_target: a symlink's.
  PathOutcome Execute(const std::string& path, const UploadPlan& plan, int file_fd,
                      const std::string& link_target);

  // Runs op() and, while it fails retryably (not SourceChanged), again.
  template <typename Op>
  auto WithRequestRetries(Op op) -> decltype(op());

 private:
  struct Run;  // one Execute
  enum class Next { kContinue, kDone, kFallThrough };
  Next DoDelete(Run& run, const plan::Delete& step);
  Next DoPutSmall(Run& run, const std::string& key, const Payload& payload, bool content);
  Next DoRewriteMetadata(Run& run, const plan::RewriteMetadata& step);
  Next DoCopyFrom(Run& run, const plan::CopyFrom& step);
  Next DoPutFile(Run& run);
  Next DoMultipart(Run& run, const plan::Multipart& step);
  Next DoChildren(Run& run, const plan::CopyRenamedChildren& step);
  // Records `o` in the index, then checks the path is still the same inode.
  bool Record(Run& run, const RemoteObject& o);
  // False (and changed_during) when the file changed since file_st.
  bool Unchanged(Run& run);
  // [off, off + len) of the file's content (the descriptor, or at a mark).
  Payload Content(const Run& run, uint64_t off, uint64_t len) const;

  Env env_;
};

}  // namespace scribefs
