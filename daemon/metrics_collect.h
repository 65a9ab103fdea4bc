// Gathers the daemon's figures into a MetricsSnapshot (daemon/metrics_format.h)
// for each scrape and each --metrics-file write: the journal's stats query
// (the same as `scribectl stats`; bounded by the pending work), the journal
// file sizes, the uploader's counters, the pause state and the checkpoint
// hold histogram.
//
// Thread-safe: Collect() may be called from the HTTP thread and the file
// writer at once (it serializes on its own reader of the journal).
#pragma once

#include <chrono>
#include <memory>
#include <mutex>
#include <optional>
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

// The journal's figures (JournalReader::Stats) take time in proportion to the
// pending work: milliseconds with a target that keeps up, seconds with millions
// of records pending (bench/README.md, "Journal queries at 10,000,000 records").
// A scrape computes them again only when the last ones are older than
// kJournalFiguresReuse times what they took, so that scrapes spend at most
// about 1/kJournalFiguresReuse of a core on them, whatever the backlog: every
// scrape when they take 10 ms (fresh for 200 ms), once a minute when 3 s.
inline constexpr int kJournalFiguresReuse = 20;
bool ReuseJournalFigures(std::chrono::steady_clock::duration took,
                         std::chrono::steady_clock::duration age);

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
  // The journal's figures into m.journal (reused while young: see above).
  void CollectJournal(MetricsSnapshot& m);
  // Each target's figures into m.targets (after m.journal is filled).
  void CollectTargets(MetricsSnapshot& m);
  const Sources src_;
  std::mutex mu_;
  std::unique_ptr<JournalReader> reader_;  // opened on first use; reopened after an error
  // The last journal figures, when they were computed and what that took.
  std::optional<JournalStats> stats_;
  std::chrono::steady_clock::time_point stats_at_;
  std::chrono::steady_clock::duration stats_took_{};
};

}  // namespace scribefs
