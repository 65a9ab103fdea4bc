// Checks of the history the replicator writes (tests/replication/history_*):
// the tree as the mount shows it, and as the target's timeline restores it.
#pragma once

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <map>
#include <string>

#include "common/unique_fd.h"
#include "history/history_store.h"
#include "history/replay.h"
#include "tests/replication/replication_util.h"
#include "uploader/object_layout.h"

namespace scribefs::rep {

namespace fs = std::filesystem;

// What a restore must reproduce of one path. Directory mtimes are left out:
// adding or removing a child changes them without a record of the
// directory's own (the mirror's markers have the same limit).
struct Node {
  std::string type;
  uint64_t size = 0;
  uint32_t mode = 0, uid = 0, gid = 0;
  int64_t mtime_ns = 0;
  std::string content;  // files: sha256; symlinks: the target
  bool operator==(const Node&) const = default;
};
using Snapshot = std::map<std::string, Node>;

inline std::string Describe(const Snapshot& s) {
  std::string out;
  for (const auto& [p, n] : s)
    out += "  " + p + " " + n.type + " size=" + std::to_string(n.size) +
           " mode=" + std::to_string(n.mode) + " mtime=" + std::to_string(n.mtime_ns) + " " +
           n.content.substr(0, 12) + "\n";
  return out;
}

// The tree below `root` as the mount shows it.
inline Snapshot SnapshotOf(const std::string& root) {
  Snapshot s;
  for (auto it = fs::recursive_directory_iterator(root); it != fs::recursive_directory_iterator();
       ++it) {
    std::string rel = it->path().lexically_relative(root).string();
    struct stat st;
    if (lstat(it->path().c_str(), &st) != 0) continue;
    Node n;
    n.type = std::string(ObjectTypeOf(st.st_mode));
    n.mode = st.st_mode;
    n.uid = st.st_uid;
    n.gid = st.st_gid;
    if (S_ISREG(st.st_mode)) {
      n.size = st.st_size;
      n.mtime_ns = MtimeNs(st);
      n.content = Sha256OfFile(it->path());
    } else if (S_ISLNK(st.st_mode)) {
      n.content = fs::read_symlink(it->path()).string();
      n.size = n.content.size();
      n.mtime_ns = MtimeNs(st);
    }
    s[rel] = n;
  }
  return s;
}

// The tree the history in `store` holds at `at`, each file restored (into
// `tmp`) and hashed. Fatal failure when the timeline does not load.
inline void RestoredSnapshot(ObjectStore& store, const history::Instant& at, const std::string& tmp,
                             Snapshot* out) {
  history::HistoryStore hs(store);
  auto segments = hs.LoadTimeline(at);
  ASSERT_TRUE(segments.ok()) << segments.status().message();
  ASSERT_FALSE(segments->empty()) << "no segment in the target";
  history::Tree tree = history::Replay(*segments, at);
  for (const auto& [path, stored] : tree) {
    const history::PathState& st = stored.state;
    Node n;
    n.type = st.type;
    n.mode = st.mode;
    n.uid = st.uid;
    n.gid = st.gid;
    if (st.type == kTypeFile) {
      n.size = st.size;
      n.mtime_ns = st.mtime_ns;
      UniqueFd fd(open(tmp.c_str(), O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600));
      ASSERT_TRUE(fd) << strerror(errno);
      auto s = hs.RestoreFile(st, fd.get());
      ASSERT_TRUE(s.ok()) << path << ": " << s.message();
      n.content = Sha256OfFile(tmp);
    } else if (st.type == kTypeSymlink) {
      n.content = st.target;
      n.size = st.size;
      n.mtime_ns = st.mtime_ns;
    }
    (*out)[path] = n;
  }
}

inline void ExpectRestores(ObjectStore& store, const history::Instant& at, const std::string& tmp,
                           const Snapshot& want) {
  Snapshot got;
  ASSERT_NO_FATAL_FAILURE(RestoredSnapshot(store, at, tmp, &got));
  EXPECT_EQ(got, want) << "restored:\n" << Describe(got) << "wanted:\n" << Describe(want);
}

}  // namespace scribefs::rep
