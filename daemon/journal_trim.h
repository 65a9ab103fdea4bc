// JournalTrimTask: keeps the local journal bounded (README, "Bounded journal";
// issue 11, item 5). A thread runs TrimJournal (journal/trim.h) every
// `interval` (10 s) and at stop: records that are done or skipped, already in
// the target's history (meta key history_stored_through, written by the
// replicator) and older than --journal-retention are deleted in batches of
// 10,000 rows, each its own short transaction of the journal's writer.
// Without history in the target nothing is deleted.
//
// Thread-safe; the journal must outlive the task.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <string>
#include <thread>

#include "common/status.h"
#include "journal/trim.h"

namespace scribefs {

class Journal;

// --journal-retention: "0" (as soon as the history is stored) or a positive
// duration with a unit: s, m, min, h, d (e.g. 7d, 12h, 30m). Nanoseconds.
Result<int64_t> ParseJournalRetention(const std::string& text);

class JournalTrimTask {
 public:
  struct Options {
    int64_t retention_ns = 0;
    std::chrono::milliseconds interval{10'000};
  };
  JournalTrimTask(Journal* journal, Options options);
  ~JournalTrimTask();  // stops the thread
  JournalTrimTask(const JournalTrimTask&) = delete;
  JournalTrimTask& operator=(const JournalTrimTask&) = delete;

  void Start();

 private:
  void Loop();
  void RunOnce();

  Journal* journal_;
  const Options options_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool stop_ = false;  // GUARDED_BY(mu_)
  std::thread thread_;
};

}  // namespace scribefs
