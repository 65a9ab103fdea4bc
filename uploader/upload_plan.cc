#include "uploader/upload_plan.h"

#include <algorithm>
#include <set>

#include "uploader/object_layout.h"

namespace scribefs {

uint64_t PartSizeFor(uint64_t size, uint64_t ps) {
  uint64_t nparts = (size + ps - 1) / ps;
  if (nparts > uint64_t(kMaxParts))
    ps = ((size + kMaxParts - 1) / kMaxParts + (1 << 20) - 1) & ~uint64_t((1 << 20) - 1);
  return ps;
}

namespace {

std::string KeyOf(const RemoteObject& o) { return ObjectKey(o.path, o.type == kTypeDir); }

// The path is gone: delete what was stored under it (and below it, for a
// directory).
void PlanGone(const std::string& path, const RemoteState& remote, const PathChange& change,
              UploadPlan* p) {
  plan::Delete del;
  del.gone = true;
  for (const auto& r : remote.subtree) {
    del.keys.push_back(KeyOf(r));
    del.erase.push_back(r.path);
  }
  if (remote.subtree.empty()) {
    // Nothing recorded: usually nothing stored either (a file created and
    // deleted before its upload), and no request is needed. But an upload
    // whose answer was lost (a timeout after the server stored it), or one
    // that an earlier daemon finished just before it was killed, before it
    // could record it, did store something. Deleting a key that does not
    // exist succeeds, so then delete both names the path could have had
    // (file, directory marker) in one request.
    if (!change.maybe_stored) {
      p->skip_reason = "nothing stored";
      return;
    }
    del.keys = {ObjectKey(path, false), ObjectKey(path, true)};
  } else if (remote.subtree.front().path == path && remote.subtree.front().type == kTypeDir) {
    // A directory: objects below it that were stored but not recorded go too.
    del.list_prefix = ObjectKey(path, true);
  }
  p->steps.push_back(std::move(del));
}

// A regular file: skip, rewrite metadata, copy server-side, or upload.
void PlanFile(const LocalState& local, const RemoteState& remote, const PathChange& change,
              const PlanOptions& options, UploadPlan* p) {
  RemoteObject& obj = p->object;
  const std::optional<RemoteObject>& old = remote.current;
  obj.size = local.file_st.st_size;
  obj.mtime_ns = MtimeNs(local.file_st);
  obj.mode = local.file_st.st_mode;
  p->metadata = EncodeMetadata(local.file_st);
  bool same_meta = old && old->type == kTypeFile && old->mode == obj.mode && old->uid == obj.uid &&
                   old->gid == obj.gid;
  // The same file as stored: size, mtime and inode. The inode tells apart
  // another file renamed over this name with the same size and mtime (two
  // files written within one clock tick).
  bool same_content = old && old->type == kTypeFile && old->size == obj.size &&
                      old->mtime_ns == obj.mtime_ns && old->ino == obj.ino &&
                      !change.content_changed;
  if (same_content) {
    if (same_meta) {
      p->skip_reason = "unchanged";
      p->skipped_unchanged = true;
      return;
    }
    p->steps.push_back(plan::RewriteMetadata{*old});
  }
  // Renamed or linked here with its content unchanged: the newest name first.
  for (size_t i = remote.sources.size(); i-- > 0;) {
    const auto& src = remote.sources[i];
    if (!src) continue;
    const RemoteObject& s = *src;
    if (s.type != kTypeFile || s.size != obj.size || s.mtime_ns != obj.mtime_ns ||
        s.ino != obj.ino || obj.size > kMaxServerSideCopy || change.content_changed)
      continue;
    p->steps.push_back(plan::CopyFrom{s});
  }
  if (obj.size <= options.part_size) {
    p->steps.push_back(plan::PutFile{});
    return;
  }
  plan::Multipart mp;
  mp.part_size = PartSizeFor(obj.size, options.part_size);
  mp.parts = (obj.size + mp.part_size - 1) / mp.part_size;
  // Re-send only parts the journal saw change, if the stored object is the
  // one recorded and was cut the same way.
  bool partial = old && old->type == kTypeFile && old->part_size == mp.part_size &&
                 !change.whole && !old->etag.empty() && old->size > 0;
  if (partial) {
    mp.stored_etag = old->etag;
    mp.copy.resize(mp.parts);
    for (uint64_t i = 0; i < mp.parts; ++i) {
      uint64_t off = i * mp.part_size, len = std::min(mp.part_size, obj.size - off);
      bool dirty = off + len > old->size;
      for (const auto& r : change.dirty)
        if (r.offset < off + len && off < r.end()) dirty = true;
      mp.copy[i] = !dirty;
    }
  }
  p->steps.push_back(std::move(mp));
}

}  // namespace

UploadPlan PlanUpload(const std::string& path, const LocalState& local, const RemoteState& remote,
                      const PathChange& change, const PlanOptions& options) {
  UploadPlan p;
  if (IsReservedPath(path)) {  // never touch scribefs's own keys (a rename may lead here)
    p.skip_reason = "reserved";
    return p;
  }
  if (!local.exists) {
    if (!options.delete_remote) {
      p.skip_reason = "kept (--delete keep)";
      return p;
    }
    PlanGone(path, remote, change, &p);
    return p;
  }
  const struct stat& st = local.st;
  RemoteObject& obj = p.object;
  obj.path = path;
  obj.type = ObjectTypeOf(st.st_mode);
  obj.mtime_ns = MtimeNs(st);
  obj.mode = st.st_mode;
  obj.uid = st.st_uid;
  obj.gid = st.st_gid;
  obj.ino = st.st_ino;
  obj.seq = change.max_seq;
  p.metadata = EncodeMetadata(st);
  const std::optional<RemoteObject>& old = remote.current;
  // A different kind of object used to live here: remove it first.
  if (old && old->type != obj.type && options.delete_remote && !remote.subtree.empty()) {
    plan::Delete del;
    for (const auto& r : remote.subtree) {
      del.keys.push_back(KeyOf(r));
      del.erase.push_back(r.path);
    }
    p.steps.push_back(std::move(del));
  }
  bool same_meta = old && old->type == obj.type && old->mode == obj.mode && old->uid == obj.uid &&
                   old->gid == obj.gid;
  if (S_ISDIR(st.st_mode)) {
    // A directory's mtime changes with every entry, so only mode and owner count.
    if (!same_meta) p.steps.push_back(plan::PutMarker{});
    // A directory moved here: everything below it is new under this name.
    if (!change.renamed_from.empty())
      p.steps.push_back(plan::CopyRenamedChildren{change.renamed_from.back()});
  } else if (S_ISLNK(st.st_mode)) {
    obj.size = local.link_target.size();
    if (!(same_meta && old->size == obj.size && old->mtime_ns == obj.mtime_ns &&
          old->ino == obj.ino))
      p.steps.push_back(plan::PutSymlink{});
  } else if (!S_ISREG(st.st_mode)) {  // FIFO, socket, device: an empty object with its mode
    if (!same_meta) p.steps.push_back(plan::PutEmpty{});
  } else {
    PlanFile(local, remote, change, options, &p);
  }
  if (p.steps.empty() && p.skip_reason.empty()) p.skip_reason = "unchanged";
  return p;
}

}  // namespace scribefs
