#include "uploader/orphan_sweep.h"

#include <spdlog/spdlog.h>

#include <nlohmann/json.hpp>
#include <unordered_set>
#include <vector>

#include "uploader/exclude_filter.h"
#include "journal/remote_index.h"

namespace scribefs {

using Clock = std::chrono::steady_clock;

OrphanSweep::OrphanSweep(Journal* journal, ObjectStore* store, int64_t target,
                         std::function<bool(const std::string&)> excluded)
    : journal_(journal), store_(store), target_(target), excluded_(std::move(excluded)) {}

OrphanSweep::~OrphanSweep() {
  {
    std::lock_guard lk(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

void OrphanSweep::Schedule(std::chrono::milliseconds delay) {
  std::lock_guard lk(mu_);
  if (pending_ || stop_) return;
  pending_ = true;
  if (thread_.joinable()) thread_.join();  // an earlier sweep has finished (pending_ was false)
  auto due = Clock::now() + delay;
  thread_ = std::thread([this, due] { Loop(due); });
}

bool OrphanSweep::pending() {
  std::lock_guard lk(mu_);
  return pending_;
}

Status OrphanSweep::Wait(Clock::time_point deadline, const std::function<bool()>& cancelled) {
  std::unique_lock lk(mu_);
  while (pending_) {
    if (cancelled && cancelled()) return Status::Error(ECANCELED, "cancelled");
    if (Clock::now() >= deadline)
      return Status::Error(ETIMEDOUT, "the target's check for objects an earlier daemon left "
                                      "(after its unclean stop) has not run yet");
    cv_.wait_until(lk, std::min(deadline, Clock::now() + std::chrono::milliseconds(100)));
  }
  return Status::Ok();
}

void OrphanSweep::Loop(Clock::time_point due) {
  std::unique_lock lk(mu_);
  while (!stop_) {
    if (cv_.wait_until(lk, due, [&] { return stop_; })) break;
    lk.unlock();
    auto report = RunOnce();
    lk.lock();
    if (report.ok()) {
      spdlog::info("checked the target after an unclean stop: {} objects, {} not accounted for "
                   "(journaled for the uploader) in {:.2f} s",
                   report->listed, report->unaccounted, report->seconds);
      break;
    }
    spdlog::warn("checking the target after an unclean stop: {}; again in 5 s",
                 report.status().message());
    due = Clock::now() + std::chrono::seconds(5);
  }
  pending_ = false;
  cv_.notify_all();
}

Result<OrphanSweep::Report> OrphanSweep::RunOnce() {
  auto t0 = Clock::now();
  Report rep;
  auto index = RemoteIndex::Open(journal_->path(), target_);
  if (!index.ok()) return index.status();
  auto rows = index.value()->All();
  if (!rows.ok()) return rows.status();
  std::unordered_set<std::string> known;
  known.reserve(rows->size());
  for (auto& r : *rows) known.insert(std::move(r.path));

  std::vector<Record> batch;
  Status committed = Status::Ok();
  auto flush = [&] {
    if (!batch.empty() && committed.ok()) committed = journal_->Commit(batch);
    batch.clear();
  };
  StoreStatus listed = store_->List(ListOptions{}, [&](const ListEntry& e) {
    if (e.is_prefix) return true;
    std::string path = e.key;
    if (path.ends_with("/")) path.pop_back();  // a directory marker
    if (path.empty() || IsReservedPath(path)) return true;
    rep.listed++;
    if (known.count(path) || excluded_(path)) return true;
    rep.unaccounted++;
    Record r;
    r.op = Op::kReconcile;
    r.path = path;
    r.detail = nlohmann::json{{"reason", "unaccounted"}}.dump();
    batch.push_back(std::move(r));
    if (batch.size() >= 2000) flush();
    return committed.ok();
  });
  flush();
  if (!committed.ok()) return committed;
  if (!listed.ok()) return listed.status();
  rep.seconds = std::chrono::duration<double>(Clock::now() - t0).count();
  return rep;
}

}  // namespace scribefs
