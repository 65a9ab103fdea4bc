#include "daemon/journal_trim.h"

#include <spdlog/spdlog.h>

#include <cmath>
#include <utility>

#include "journal/journal.h"
#include "journal/record.h"

namespace scribefs {
namespace {

// The WAL's size beyond which a pass checkpoints it between two commits
// (Journal::BoundWal); journal_size_limit truncates it back to this size.
constexpr uint64_t kMaxWalBytes = 64ull << 20;

}  // namespace

Result<int64_t> ParseJournalRetention(const std::string& text) {
  auto bad = [&] {
    return Status::Error(EINVAL, "'" + text + "' is not a retention (e.g. 7d, 12h, 30m, 0)");
  };
  size_t used = 0;
  double v;
  try {
    v = std::stod(text, &used);
  } catch (const std::exception&) {
    return bad();
  }
  std::string unit = text.substr(used);
  if (v == 0 && (unit.empty() || unit == "s")) return int64_t{0};
  static const std::pair<const char*, double> kUnits[] = {
      {"s", 1}, {"m", 60}, {"min", 60}, {"h", 3600}, {"d", 86400}};
  for (const auto& [name, scale] : kUnits) {
    if (unit != name) continue;
    double ns = v * scale * 1e9;
    if (!(v > 0) || !std::isfinite(ns) || ns > 9e18) return bad();
    return static_cast<int64_t>(ns);
  }
  return bad();
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
