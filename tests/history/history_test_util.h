// Builders of timeline entries for the history tests.
#pragma once

#include <sys/stat.h>

#include <string>
#include <vector>

#include "history/chunker.h"
#include "history/segment.h"
#include "uploader/object_layout.h"

namespace scribefs::history::testing {

inline Entry FilePut(uint64_t seq, const std::string& path, const std::string& content,
                     int64_t time_ns = -1) {
  Entry e;
  e.seq = seq;
  e.time_ns = time_ns < 0 ? static_cast<int64_t>(seq) * 1000 : time_ns;
  e.op = EntryOp::kPut;
  e.path = path;
  e.state.type = std::string(kTypeFile);
  e.state.mode = S_IFREG | 0644;
  e.state.uid = 1000;
  e.state.gid = 1000;
  e.state.mtime_ns = e.time_ns;
  e.state.size = content.size();
  e.state.chunks = ChunkBytes(content, 4).value();  // small parts: several chunks per file
  return e;
}

inline Entry DirPut(uint64_t seq, const std::string& path, int64_t time_ns = -1) {
  Entry e;
  e.seq = seq;
  e.time_ns = time_ns < 0 ? static_cast<int64_t>(seq) * 1000 : time_ns;
  e.op = EntryOp::kPut;
  e.path = path;
  e.state.type = std::string(kTypeDir);
  e.state.mode = S_IFDIR | 0755;
  e.state.mtime_ns = e.time_ns;
  return e;
}

inline Entry SymlinkPut(uint64_t seq, const std::string& path, const std::string& target) {
  Entry e = DirPut(seq, path);
  e.state.type = std::string(kTypeSymlink);
  e.state.mode = S_IFLNK | 0777;
  e.state.target = target;
  e.state.size = target.size();
  return e;
}

inline Entry DevicePut(uint64_t seq, const std::string& path, uint64_t rdev) {
  Entry e = DirPut(seq, path);
  e.state.type = std::string(kTypeSpecial);
  e.state.mode = S_IFCHR | 0600;
  e.state.rdev = rdev;
  return e;
}

inline Entry Delete(uint64_t seq, const std::string& path, int64_t time_ns = -1) {
  Entry e;
  e.seq = seq;
  e.time_ns = time_ns < 0 ? static_cast<int64_t>(seq) * 1000 : time_ns;
  e.op = EntryOp::kDelete;
  e.path = path;
  return e;
}

inline Entry Rename(uint64_t seq, const std::string& from, const std::string& to,
                    bool exchange = false, int64_t time_ns = -1) {
  Entry e = Delete(seq, from, time_ns);
  e.op = EntryOp::kRename;
  e.new_path = to;
  e.exchange = exchange;
  return e;
}

// A delta covering exactly its entries' seqs.
inline Segment Delta(std::vector<Entry> entries, int level = 0) {
  uint64_t first = entries.empty() ? 1 : entries.front().seq;
  uint64_t last = entries.empty() ? 1 : entries.back().seq;
  return MakeDelta(std::move(entries), level, first, last);
}

}  // namespace scribefs::history::testing
