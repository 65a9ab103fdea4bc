// RunMarker: what a daemon notes in the journal's meta table (key "run")
// about its run, so that the next daemon knows how the last one stopped: on
// which boot it ran, when it started serving, and whether it stopped cleanly.
// This module is the only owner of that entry.
//
// Why the boot matters (README, "What survives a crash or power loss"): the
// journal commits without an fsync (synchronous=NORMAL), so only the kernel's
// page cache orders a record before the data change it covers. A daemon that
// dies alone (kill -9) loses nothing: the next one reads the same page cache.
// A power cut or kernel crash can keep the data and lose its record; the next
// daemon then runs on another boot and must check content, not only size and
// mtime.
//
// Both writes are durable (the WAL is fsynced), so that a marker read back
// after a power cut is one that reached the disk with everything committed
// before it. Thread-safe as Journal is.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "common/status.h"

namespace scribefs {

class Journal;

struct RunMarker {
  std::string boot_id;     // /proc/sys/kernel/random/boot_id of the run
  int64_t started_ns = 0;  // wall clock when it began to serve
  bool running = false;    // false once it stopped cleanly
};

// Records m and makes it (and everything committed before it) durable.
Status WriteRunMarker(Journal& journal, const RunMarker& m);
// The marker the last daemon left; nullopt when there is none (a new
// journal, or one from a version that did not write it) or it is unreadable.
Result<std::optional<RunMarker>> ReadRunMarker(Journal& journal);

}  // namespace scribefs
