// Gathers the daemon's figures into a MetricsSnapshot (daemon/metrics_format.h)
// for each scrape and each --metrics-file write: the journal's stats query
// (the same as `scribectl stats`; bounded by the pending work), the journal
// file sizes, the uploader's counters, the pause state and the checkpoint
// hold histogram.
//
// Thread-safe: Collect() may be called from the HTTP thread and the file
// writer at once (it serializes on its own reader of the journal).
#pragma once

#include <memory>
#include <mutex>
#include <string>

#include "daemon/checkpoint_storer.h"
#include "daemon/lag_monitor.h"
#include "daemon/metrics_format.h"
#include "fs/inode_table.h"
#include "fs/pause_controller.h"
#include "journal/journal.h"
#include "journal/reader.h"
#include "uploader/replicator.h"
#include "uploader/target_set.h"

namespace scribefs {

class MetricsCollector {
 public:
  struct Sources {
    Journal* journal = nullptr;          // required
    Replicator* replicator = nullptr;    // the first target's; nullptr: journal only
    PauseController* pauser = nullptr;   // may be null
    const DurationHistogram* checkpoint_hold = nullptr;  // may be null
    std::string version;
    int64_t started_ns = 0;
    LagMonitor* lag = nullptr;  // bounded lag; may be null
    InodeTable* inodes = nullptr;  // the FUSE layer's; may be null
    CheckpointStorer* storer = nullptr;  // captured checkpoints; may be null
    TargetSet* targets = nullptr;        // every target's uploader; null: journal only
  };
  explicit MetricsCollector(Sources sources) : src_(std::move(sources)) {}

  MetricsSnapshot Collect();
  std::string Render() { return FormatMetrics(Collect()); }

 private:
  // Each target's figures into m.targets (after m.journal is filled).
  void CollectTargets(MetricsSnapshot& m);
  const Sources src_;
  std::mutex mu_;
  std::unique_ptr<JournalReader> reader_;  // opened on first use; reopened after an error
};

}  // namespace scribefs
