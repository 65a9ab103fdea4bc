// StateDigest: what a writer needs of a path's stored state, whether an
// entry would change it (uploader/history_recorder.h, history/digest_tree.h).
#pragma once

#include <array>
#include <cstdint>

#include "history/segment.h"

namespace scribefs::history {

// What a writer needs of a path's stored state: whether an entry would change
// it. 16 bytes (SHA-256 of the state's fields, truncated) in place of the
// state with its chunk names, several hundred bytes: the uploader keeps one
// per stored path in memory (uploader/history_recorder.h).
struct StateDigest {
  std::array<uint8_t, 16> bytes{};
  bool operator==(const StateDigest&) const = default;
  static StateDigest Of(const Entry& put);
};
// Equal states have equal digests; different states differ but for a
// collision of SHA-256 truncated to 128 bits.
StateDigest DigestOf(const PathState& state);

}  // namespace scribefs::history
