#include "daemon/journal_trim.h"

#include <spdlog/spdlog.h>

#include <cmath>
#include <utility>

#include "common/units.h"
#include "journal/journal.h"
#include "journal/record.h"

namespace scribefs {
namespace {

// The WAL's size beyond which a pass checkpoints it between two commits
// (Journal::BoundWal); journal_size_limit truncates it back to this size.
constexpr uint64_t kMaxWalBytes = 64ull << 20;

}  // namespace

Result<int64_t> ParseJournalRetention(const std::string& text) {
  static constexpr UnitScale kUnits[] = {
      {"s", 1e9}, {"m", 60e9}, {"min", 60e9}, {"h", 3600e9}, {"d", 86400e9}};
  if (text == "0") return int64_t{0};
  auto ns = ParseScaled(text, kUnits);
  if (ns && *ns == 0) return int64_t{0};  // "0s", "0h"
  if (!ns || !(*ns > 0) || !std::isfinite(*ns) || *ns > 9e18)
    return Status::Error(EINVAL, "'" + text + "' is not a retention (e.g. 7d, 12h, 30m, 0)");
  return static_cast<int64_t>(*ns);
}

JournalTrimTask::JournalTrimTask(Journal* journal, Options options)
    : journal_(journal), options_(options) {}

JournalTrimTask::~JournalTrimTask() {
  {
    std::lock_guard lk(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

void JournalTrimTask::Start() {
  thread_ = std::thread([this] { Loop(); });
}

void JournalTrimTask::Loop() {
  std::unique_lock lk(mu_);
  while (!cv_.wait_for(lk, options_.interval, [&] { return stop_; })) {
    lk.unlock();
    RunOnce();
    lk.lock();
  }
}

void JournalTrimTask::RunOnce() {
  TrimPolicy policy;
  policy.retention_ns = options_.retention_ns;
  // At most 100 batches (1M rows) per pass: a first pass over a long
  // journal must not keep the thread from noticing a stop for minutes.
  policy.max_batches = 100;
  auto r = TrimJournal(*journal_, policy, NowNs());
  // Also when nothing was trimmed: the WAL grows under any steady load.
  if (auto w = journal_->BoundWal(kMaxWalBytes); !w.ok())
    spdlog::warn("journal checkpoint: {}", w.status().message());
  if (!r.ok()) {
    spdlog::warn("journal trim: {}", r.status().message());
    return;
  }
  if (r->deleted > 0)
    spdlog::debug("journal trim: deleted {} records (trimmed through seq {})", r->deleted,
                  r->trimmed_through.value_or(0));
}

}  // namespace scribefs
