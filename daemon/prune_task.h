// PruneTask: the daemon's automatic prune of the target's history
// (history/prune.h) every --prune-interval, with the daemon's --retention,
// --keep-hourly, --keep-daily, --keep-checkpoints and --prune-grace.
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
#include "history/prune.h"
#include "uploader/object_store.h"

namespace scribefs {

// Adds --retention, --keep-hourly, --keep-daily, --keep-checkpoints,
// --prune-interval and --prune-grace (group "History") to the daemon's
// command line.
void AddPruneOptions(CLI::App& app, Config& cfg);
// Parses them into cfg (retention_ns, prune_interval_s, prune_grace_ns); the
// message when one is bad.
std::optional<std::string> CheckPruneOptions(Config& cfg);

class PruneTask {
 public:
  struct Options {
    history::PruneOptions prune;  // policy and grace (now and cancel are set per run)
    std::chrono::milliseconds interval{std::chrono::hours(1)};
    // Called after a run that deleted chunks (or failed: it may have): the
    // replicator forgets the chunks it knows stored, so that identical new
    // content is stored again rather than referenced (docs/history.md,
    // "Chunks and prune"). May be empty.
    std::function<void()> chunks_deleted;
  };
  // From the parsed options of cfg.
  static Options FromConfig(const Config& cfg);

  // `store` must outlive this object.
  PruneTask(ObjectStore* store, Options options);
  ~PruneTask();  // Stop()
  PruneTask(const PruneTask&) = delete;
  PruneTask& operator=(const PruneTask&) = delete;

  // The first run comes one interval after Start.
  Status Start();
  void Stop();

  struct Last {
    int64_t finished_ns = 0;  // 0: no run finished yet
    bool ok = false;
    std::string summary;  // the logged line
  };
  Last last() const;

  // The one-line summary of a report (what the log shows).
  static std::string Summary(const history::PruneReport& r, double seconds);

 private:
  void Loop();

  ObjectStore* store_;
  Options options_;
  std::atomic<bool> cancel_{false};
  mutable std::mutex mu_;
  std::condition_variable cv_;
  bool stop_ = false;  // GUARDED_BY(mu_)
  Last last_;          // GUARDED_BY(mu_)
  std::thread thread_;
};

}  // namespace scribefs
