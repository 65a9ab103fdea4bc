#include "daemon/control_plane.h"

#include <fcntl.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <cmath>
#include <memory>
#include <nlohmann/json.hpp>

#include "daemon/verbs.h"
#include "fs/fuse_adapter.h"

namespace scribefs {

using Clock = std::chrono::steady_clock;
using json = nlohmann::json;

void UploadRate::Sample(uint64_t bytes_sent) {
  std::lock_guard lk(mu_);
  auto now = Clock::now();
  samples_.push_back({now, bytes_sent});
  while (samples_.size() > 2 && now - samples_.front().first > std::chrono::seconds(10))
    samples_.pop_front();
}

double UploadRate::BytesPerSecond() const {
  std::lock_guard lk(mu_);
  if (samples_.size() < 2) return 0;
  double dt = std::chrono::duration<double>(samples_.back().first - samples_.front().first).count();
  if (dt <= 0) return 0;
  return std::round(static_cast<double>(samples_.back().second - samples_.front().second) / dt);
}

std::map<std::string, ControlHandler> MakeControlHandlers(const ControlDeps* deps) {
  auto shared = std::make_shared<verbs::VerbLocks>();
  const ControlDeps& d = *deps;
  std::map<std::string, ControlHandler> h;
  h["status"] = [&d](const json& r, const ControlRequest& c) { return verbs::StatusVerb(d, r, c); };
  h["pause"] = [&d](const json& r, const ControlRequest& c) { return verbs::PauseVerb(d, r, c); };
  h["resume"] = [&d](const json& r, const ControlRequest& c) { return verbs::ResumeVerb(d, r, c); };
  h["flush"] = [&d](const json& r, const ControlRequest& c) { return verbs::FlushVerb(d, r, c); };
  h["retry"] = [&d](const json& r, const ControlRequest& c) { return verbs::RetryVerb(d, r, c); };
  h["stop"] = [&d](const json& r, const ControlRequest& c) { return verbs::StopVerb(d, r, c); };
  h["set"] = [&d](const json& r, const ControlRequest& c) { return verbs::SetVerb(d, r, c); };
  h["checkpoints"] = [&d](const json& r, const ControlRequest& c) { return verbs::CheckpointsVerb(d, r, c); };
  h["checkpoint"] = [&d, shared](const json& r, const ControlRequest& c) {
    return verbs::CheckpointVerb(d, *shared, r, c);
  };
  h["rescan"] = [&d, shared](const json& r, const ControlRequest& c) {
    return verbs::RescanVerb(d, *shared, r, c);
  };
  return h;
}

namespace {

PauseOptions MakePauseOptions(const ControlPlane::Options& o) {
  PauseOptions po;
  po.max_pause_s = o.max_pause_s;
  // Writes the kernel still caches for the mount (writeback cache) reach us
  // before the gate closes: syncfs() on the mount itself.
  po.writeback = [mountpoint = o.info.mountpoint]() -> Status {
    UniqueFd m(open(mountpoint.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    if (!m) return PosixError("open " + mountpoint, errno);
    if (syncfs(m.get()) != 0) return PosixError("syncfs " + mountpoint, errno);
    return Status::Ok();
  };
  if (o.datadir_fd >= 0) {
    po.sync_backing = [fd = o.datadir_fd]() -> Status {
      if (syncfs(fd) != 0) return PosixError("syncfs DATADIR", errno);
      return Status::Ok();
    };
  }
  return po;
}

}  // namespace

ControlPlane::ControlPlane(MutationGate* gate, Filesystem* fs, Journal* journal,
                           Replicator* replicator, Options options)
    : gate_(gate),
      options_(std::move(options)),
      pauser_(gate, fs, journal, MakePauseOptions(options_)) {
  deps_.info = options_.info;
  deps_.journal = journal;
  deps_.fs = fs;
  deps_.pauser = &pauser_;
  deps_.replicator = replicator;
  deps_.rate = &rate_;
  deps_.sweeps = options_.sweeps;
  deps_.targets = options_.targets;
  deps_.datadir_fd = options_.datadir_fd;
  deps_.checkpoint_hold = &checkpoint_hold_;
  deps_.stop = options_.stop;
  deps_.lag = options_.lag;
  deps_.probe = options_.probe;
  if (replicator && options_.targets && options_.spool) {
    storer_ = std::make_unique<CheckpointStorer>(
        journal, options_.targets, options_.spool,
        CheckpointStorer::Options{options_.info.state_dir, options_.info.datadir});
    deps_.storer = storer_.get();
  }
}

ControlPlane::~ControlPlane() { Stop(); }

Status ControlPlane::Start() {
  if (storer_) SCRIBEFS_RETURN_IF_ERROR(storer_->Start().WithContext("checkpoints"));
  auto s = ControlServer::Start(options_.socket_path, MakeControlHandlers(&deps_));
  if (!s.ok()) return s.status();
  server_ = std::move(s.value());
  return Status::Ok();
}

void ControlPlane::WatchSession(FuseServer* server) {
  watcher_ = std::thread([this, server] {
    int tick = 0;
    while (!watch_stop_.load()) {
      if (server->Exiting()) {
        pauser_.Shutdown();
        return;
      }
      if (deps_.replicator && tick++ % 10 == 0)
        rate_.Sample(deps_.replicator->store().stats().bytes_sent);
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
  });
}

void ControlPlane::Stop() {
  watch_stop_ = true;
  if (watcher_.joinable()) watcher_.join();
  pauser_.Shutdown();
  if (!gate_->WaitReleased(Clock::now() + std::chrono::seconds(30)))
    spdlog::warn("held operations still running 30 s after the unmount");
  if (server_) server_->Stop();
  server_.reset();
  if (storer_) storer_->Stop();
}

}  // namespace scribefs
