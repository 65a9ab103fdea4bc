// PruneTask: the daemon's automatic prune of the target's history
// (history/prune.h) every --prune-interval, with the daemon's --retention,
// --keep-hourly, --keep-daily, --keep-checkpoints and --prune-grace; and on
// the same thread, every --compact-interval, the compaction of the timeline's
// small segments into levels and a base every --base-interval
// (history/compact.h), so that a restore reads a few segments, not every
// level-0 delta since the beginning.
//
// A background thread of its own: it reads and deletes in the target through
// the replicator's store (thread-safe) and never touches the mutation gate,
// so writers are never held by a prune. Each run logs a one-line summary (or
// the error; the next run retries: a failed prune harms nothing retained).
// Stop() cancels a run in progress at its next step (as safe as a crash).
//
// Thread-safe.
#pragma once

#include <CLI/CLI.hpp>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <optional>
#include <string>
#include <thread>

#include "common/status.h"
#include "daemon/config.h"
#include "history/compact.h"
#include "history/prune.h"
#include "uploader/object_store.h"

namespace scribefs {

// Adds --retention, --keep-hourly, --keep-daily, --keep-checkpoints,
// --prune-interval, --prune-grace, --compact-interval and --base-interval
// (group "History") to the daemon's command line.
void AddPruneOptions(CLI::App& app, Config& cfg);
// Parses them into cfg (retention_ns, prune_interval_s, prune_grace_ns,
// compact_interval_s, base_interval_ns); the message when one is bad.
std::optional<std::string> CheckPruneOptions(Config& cfg);

class PruneTask {
 public:
  struct Options {
    history::PruneOptions prune;  // policy and grace (now and cancel are set per run)
    std::chrono::milliseconds interval{std::chrono::hours(1)};  // 0: no prune
    // Called after a run that deleted chunks (or failed: it may have): the
    // replicator forgets the chunks it knows stored, so that identical new
    // content is stored again rather than referenced (docs/history.md,
    // "Chunks and prune"). May be empty.
    std::function<void()> chunks_deleted;
    // Compaction and the periodic base, every compact_interval (0: never).
    std::chrono::milliseconds compact_interval{std::chrono::minutes(1)};
    history::CompactionPolicy compaction;
    history::BasePolicy base;
    // Several targets: "target NAME: " before each summary. Empty with one.
    std::string label;
  };
  // From the parsed options of cfg.
  static Options FromConfig(const Config& cfg);

  // `store` must outlive this object.
  PruneTask(ObjectStore* store, Options options);
  ~PruneTask();  // Stop()
  PruneTask(const PruneTask&) = delete;
  PruneTask& operator=(const PruneTask&) = delete;

  // The first run of each comes one of its intervals after Start.
  Status Start();
  void Stop();

  struct Last {
    int64_t finished_ns = 0;  // 0: no run finished yet
    bool ok = false;
    std::string summary;  // the logged line
  };
  Last last() const;             // of the prune
  Last last_compaction() const;  // of the compaction and base

  // What one compaction and base step did.
  struct Compacted {
    history::CompactionReport compaction;
    history::BaseReport base;
    std::string summary;  // the logged line
    bool changed() const {
      return compaction.segments_written + compaction.segments_deleted > 0 || base.written;
    }
  };
  // Runs one compaction and base step now, on the calling thread (what each
  // compact_interval runs).
  Result<Compacted> CompactNow();

  // The one-line summary of a report (what the log shows).
  static std::string Summary(const history::PruneReport& r, double seconds);
  static std::string CompactionSummary(const history::CompactionReport& c,
                                       const history::BaseReport& b, double seconds);

 private:
  void Loop();
  void PruneOnce();
  void CompactOnce();

  ObjectStore* store_;
  Options options_;
  std::atomic<bool> cancel_{false};
  mutable std::mutex mu_;
  std::condition_variable cv_;
  bool stop_ = false;     // GUARDED_BY(mu_)
  Last last_;             // GUARDED_BY(mu_)
  Last last_compaction_;  // GUARDED_BY(mu_)
  std::thread thread_;
};

}  // namespace scribefs
