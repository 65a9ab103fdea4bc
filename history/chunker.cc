#include "history/chunker.h"

#include <unistd.h>

#include <algorithm>
#include <cerrno>

#include "uploader/digest.h"

namespace scribefs::history {
namespace {

constexpr size_t kReadBuffer = 1 << 20;

Status CheckPartSize(uint64_t part_size) {
  if (part_size == 0) return Status::Error(EINVAL, "chunking: part size 0");
  return Status::Ok();
}

}  // namespace

Result<std::vector<ChunkRef>> ChunkFile(int fd, uint64_t size, uint64_t part_size) {
  SCRIBEFS_RETURN_IF_ERROR(CheckPartSize(part_size));
  std::vector<ChunkRef> chunks;
  std::string buf(kReadBuffer, '\0');
  for (uint64_t start = 0; start < size; start += part_size) {
    const uint64_t len = std::min(part_size, size - start);
    auto h = Hasher::Create(Hasher::Algorithm::kSha256);
    if (!h.ok()) return h.status();
    for (uint64_t done = 0; done < len;) {
      const size_t want = static_cast<size_t>(std::min<uint64_t>(buf.size(), len - done));
      ssize_t n = pread(fd, buf.data(), want, static_cast<off_t>(start + done));
      if (n < 0) {
        if (errno == EINTR) continue;
        return PosixError("chunking: read", errno);
      }
      if (n == 0) {
        return Status::Error(EIO, "chunking: file shrank to " + std::to_string(start + done) +
                                      " bytes while read (expected " + std::to_string(size) + ")");
      }
      SCRIBEFS_RETURN_IF_ERROR(h->Update(std::string_view(buf.data(), static_cast<size_t>(n))));
      done += static_cast<uint64_t>(n);
    }
    auto digest = h->Finish();
    if (!digest.ok()) return digest.status();
    chunks.push_back({HexEncode(*digest), len});
  }
  return chunks;
}

Result<std::vector<ChunkRef>> ChunkBytes(std::string_view data, uint64_t part_size) {
  SCRIBEFS_RETURN_IF_ERROR(CheckPartSize(part_size));
  std::vector<ChunkRef> chunks;
  for (uint64_t start = 0; start < data.size(); start += part_size) {
    std::string_view piece = data.substr(start, part_size);
    auto digest = Sha256(piece);
    if (!digest.ok()) return digest.status();
    chunks.push_back({HexEncode(*digest), piece.size()});
  }
  return chunks;
}

}  // namespace scribefs::history
