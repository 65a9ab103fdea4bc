// InodeKey: a file's identity on the backing filesystem, (st_dev, st_ino), as
// a hash map key.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <functional>

namespace scribefs {

struct InodeKey {
  dev_t dev;
  ino_t ino;
  bool operator==(const InodeKey&) const = default;
};

struct InodeKeyHash {
  size_t operator()(const InodeKey& k) const {
    return std::hash<uint64_t>()(k.ino ^ (uint64_t(k.dev) << 48));
  }
};

}  // namespace scribefs
