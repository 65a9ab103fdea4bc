// ByteRange: [offset, offset + length). Shared by the journal (dirty ranges)
// and the object stores (ranged reads, part copies).
#pragma once

#include <cstdint>

namespace scribefs {

struct ByteRange {
  uint64_t offset = 0;
  uint64_t length = 0;
  uint64_t end() const { return offset + length; }
  bool operator==(const ByteRange&) const = default;
};

}  // namespace scribefs
