// Chunking: a file's content as a list of content-addressed chunks.
//
// Boundaries are fixed: every `part_size` bytes from offset 0, the same part
// size the uploader uses for multipart uploads (8 MiB by default). So chunk
// i of a file is exactly part i+1 of its mirror object, and a later
// increment can assemble the mirror from chunks with UploadPartCopy (and a
// 4 KiB change touches one chunk). Fixed boundaries do not find content that
// moved by a few bytes (content-defined chunking would); scribefs's changes
// are in-place writes, where fixed boundaries cost nothing and keep the
// mirror and the history the same bytes.
//
// A file of at most part_size bytes is one chunk; an empty file has none.
// Pure functions (plus pread); thread-safe.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"

namespace scribefs::history {

inline constexpr uint64_t kDefaultPartSize = 8ull << 20;

struct ChunkRef {
  std::string sha256;  // 64 lower-case hex digits
  uint64_t size = 0;   // > 0; part_size for all chunks but the last
  bool operator==(const ChunkRef&) const = default;
};

// The chunks of the first `size` bytes of the file open at `fd` (read with
// pread; the offset is left alone). EIO ("file shrank") when the file has
// fewer bytes. `part_size` must be > 0.
Result<std::vector<ChunkRef>> ChunkFile(int fd, uint64_t size,
                                        uint64_t part_size = kDefaultPartSize);
// The same for bytes in memory.
Result<std::vector<ChunkRef>> ChunkBytes(std::string_view data,
                                         uint64_t part_size = kDefaultPartSize);

// Offset of chunk `index` in the file.
inline uint64_t ChunkOffset(size_t index, uint64_t part_size = kDefaultPartSize) {
  return static_cast<uint64_t>(index) * part_size;
}

}  // namespace scribefs::history
