// The object layout: how DATADIR is stored in a target. This module is the
// one owner of that format; the replicator (writes it), checkpoints (write
// manifests), `scribectl verify` (compares against it) and `scribectl restore`
// (reads it back) all call it instead of re-implementing a rule.
//
//   - Keys (a mirror): key = relative/path for a file, a symlink or a special
//     file; "relative/path/" (a marker object) for a directory. The target's
//     PREFIX is the store's business, not this module's.
//   - Metadata (s3fs-compatible, sent as x-amz-meta-*): "mode" (decimal
//     st_mode, type bits included), "uid", "gid", "mtime" (whole seconds),
//     plus "scribefs-mtime-ns" (exact) and "rdev" for device nodes.
//   - Reserved: the top-level ".scribefs" directory holds scribefs's own
//     objects (checkpoint manifests under ".scribefs/checkpoints/"); no local
//     path there is ever stored.
//   - Checkpoint manifests: JSON, see ManifestEntry / ManifestJson below.
//   - The walk of DATADIR: WalkTree, over directory descriptors, never
//     following symlinks.
//
// Plain functions over values; thread-safe.
#pragma once

#include <sys/stat.h>

#include <cstdint>
#include <functional>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"
#include "uploader/object_store.h"

namespace scribefs {

// ---- reserved prefix ----------------------------------------------------------

// Top-level directory reserved for scribefs in the target.
inline constexpr std::string_view kReservedDir = ".scribefs";
// Where checkpoint manifests live (relative to the target's prefix).
inline constexpr std::string_view kCheckpointKeyPrefix = ".scribefs/checkpoints/";

// True for ".scribefs" and everything below it.
bool IsReservedPath(std::string_view path);

// ---- keys -------------------------------------------------------------------

// The key of the object that stores `path` ("a/b"): "a/b/" for a directory
// (its marker object), "a/b" for anything else.
std::string ObjectKey(std::string_view path, bool is_dir);
// The path a key stores: a marker key loses its trailing '/'.
std::string PathOfKey(std::string_view key);
inline bool IsMarkerKey(std::string_view key) { return key.ends_with('/'); }

// The object type names of the journal's objects table and of manifests.
inline constexpr std::string_view kTypeFile = "file";
inline constexpr std::string_view kTypeDir = "dir";
inline constexpr std::string_view kTypeSymlink = "symlink";
inline constexpr std::string_view kTypeSpecial = "special";
// file | dir | symlink | special (FIFO, socket, device).
std::string_view ObjectTypeOf(mode_t mode);

// ---- metadata -----------------------------------------------------------------

inline constexpr char kMetaMode[] = "mode";
inline constexpr char kMetaUid[] = "uid";
inline constexpr char kMetaGid[] = "gid";
inline constexpr char kMetaMtime[] = "mtime";               // whole seconds (s3fs)
inline constexpr char kMetaMtimeNs[] = "scribefs-mtime-ns";  // exact
inline constexpr char kMetaRdev[] = "rdev";                  // device nodes only

int64_t MtimeNs(const struct stat& st);

// The metadata an object for a file with attributes `st` carries.
Metadata EncodeMetadata(const struct stat& st);

// A decimal value of `m` (as EncodeMetadata writes them): nullopt when absent,
// empty or not entirely digits (signs and spaces included).
std::optional<uint64_t> MetaUint(const Metadata& m, const char* name);

// An object's attributes as its metadata states them; what is absent or
// malformed is nullopt (an object another tool stored may carry none).
struct DecodedMetadata {
  std::optional<uint64_t> mode, uid, gid, rdev;
  // From scribefs-mtime-ns (exact), else from mtime (seconds, not exact).
  std::optional<int64_t> mtime_ns;
  bool mtime_exact = false;
};
DecodedMetadata DecodeMetadata(const Metadata& m);

// ---- checkpoint manifests -------------------------------------------------------
//
// Format (JSON, one object):
//   {"format":"scribefs-checkpoint","version":1,"name":"...","time_ns":N,
//    "time":"2026-01-02T03:04:05.123Z","journal_seq":S,"target":"s3://b/p",
//    "paths":N,"entries":[{"path":"a/b","key":"a/b","type":"file","size":..,
//    "mode":..,"uid":..,"gid":..,"mtime_ns":..,"etag":"..","sha256":".."|null,
//    "version_id":".."|null}, ...]}   (entries in the order given: by path)

inline constexpr int kManifestVersion = 1;

struct ManifestHeader {
  std::string name;
  int64_t time_ns = 0;
  int64_t journal_seq = 0;  // the pause record the checkpoint describes
  std::string target;       // ObjectStore::Describe(): no secrets
};

struct ManifestEntry {
  std::string path, key, type;
  uint64_t size = 0;
  uint32_t mode = 0, uid = 0, gid = 0;
  int64_t mtime_ns = 0;
  std::string etag, sha256, version_id;  // "" = none (null in the JSON)
  // Parsing only: false when size/mode/uid/gid/mtime_ns are missing or not numbers.
  bool has_attributes = true;
};

nlohmann::ordered_json ManifestJson(const ManifestHeader& header,
                                    const std::vector<ManifestEntry>& entries);

// Writes a manifest entry by entry to a file, in constant memory: the same
// bytes as ManifestJson(header, entries).dump() (compact, invalid UTF-8
// replaced), so every reader of the format reads it. The format states the
// number of entries before them: `paths` must be the number of Add() calls
// (Finish fails otherwise). Not thread-safe.
class ManifestWriter {
 public:
  // fd: written at its current offset; not owned, must outlive the writer.
  ManifestWriter(int fd, const ManifestHeader& header, uint64_t paths);
  Status Add(const ManifestEntry& entry);
  // Ends the document and writes what is buffered.
  Status Finish();
  uint64_t bytes() const { return bytes_; }  // written so far (all, after Finish)

 private:
  Status Put(std::string_view s);
  Status Drain();

  int fd_;
  uint64_t expected_, added_ = 0, bytes_ = 0;
  std::string buf_;
  Status status_;  // the first failure, sticky
};

struct Manifest {
  std::string target;  // "" when absent
  std::vector<ManifestEntry> entries;
};
// Parses a manifest; `what` names it in errors ("the manifest KEY ..."):
// EINVAL when it is not JSON, not a scribefs manifest, of another version,
// has no entries, or an entry lacks its path, key or type (as strings).
// Entries are otherwise taken as they are (a reader decides what to admit).
Result<Manifest> ParseManifest(std::string_view body, const std::string& what);
// The same, streamed from fd (from its current offset to the end; fd is not
// closed), in memory bounded by the largest entry: on_entry gets each entry
// as it is read, in order. The checks and errors are ParseManifest's (and a
// second "entries" list is refused too); since some come only at the end, an
// entry handed on is the caller's only once the result is OK. After the first
// error (a bad entry, or one on_entry returned) no more entries are handed
// on. target: set to the manifest's "target" ("" when absent) when OK.
Status ReadManifest(int fd, const std::string& what, std::string* target,
                    const std::function<Status(ManifestEntry&&)>& on_entry);

// "2026-01-02T03:04:05.123Z"
std::string IsoTimeUtc(int64_t time_ns);

// ---- the walk of DATADIR -----------------------------------------------------------

// The names in directory `dir` (relative to root_fd; "" is DATADIR), without
// "." and "..". Opened beneath root_fd without following symlinks.
Result<std::vector<std::string>> ListDir(int root_fd, const std::string& dir);

struct WalkCallbacks {
  // Called before an entry is looked at: true leaves it (and, for a
  // directory, everything below it) out.
  std::function<bool(const std::string& path)> skip;
  // Every entry below the start (lstat attributes); for a directory, false
  // means do not descend.
  std::function<bool(const std::string& path, const struct stat& st)> visit;
  // A problem with one entry; the walk goes on. `where` is the path, with a
  // trailing '/' (or "." for DATADIR) when it is a directory that could not
  // be read. Entries that vanish during the walk are not reported.
  std::function<void(const std::string& where, const Status& error)> error;
};

// Depth-first over directory descriptors, below directory `start` (relative
// to root_fd; "" is DATADIR), never following symlinks. Fails only when
// `start` cannot be opened.
Status WalkTree(int root_fd, const std::string& start, const WalkCallbacks& callbacks);

}  // namespace scribefs
