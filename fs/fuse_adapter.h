// FuseServer: binds a Filesystem to the kernel through libfuse's low-level API.
// The only code that sees libfuse types.
#pragma once

#include <string>
#include <vector>

#include "common/status.h"
#include "fs/filesystem.h"

namespace scribefs {

struct FuseOptions {
  std::string mountpoint;
  std::string fsname;             // shown in /proc/mounts
  std::vector<std::string> fuse_opts;  // passed to the kernel/libfuse (-o ...)
  double cache_timeout = 1.0;     // entry and attribute validity, seconds
  unsigned max_threads = 16;
  bool clone_fd = true;
};

class FuseServer {
 public:
  // Creates the session, installs SIGTERM/SIGINT/SIGHUP handlers that end
  // Run(), and mounts. fs must outlive the server.
  static Result<std::unique_ptr<FuseServer>> Mount(const FuseOptions& options, Filesystem* fs);
  ~FuseServer();
  FuseServer(const FuseServer&) = delete;
  FuseServer& operator=(const FuseServer&) = delete;

  // Serves until unmounted or signalled (SIGTERM, SIGINT, SIGHUP). Returns
  // after the kernel connection is gone or the session was told to exit.
  Status Run();
  // Asks Run() to return (thread-safe, async-signal-unsafe).
  void Exit();
  // True once the session was told to end (signal, unmount, Exit()): Run()
  // is about to return once every request in progress has been answered.
  bool Exiting() const;
  // Unmounts (idempotent).
  void Unmount();

  struct Context;  // shared with the C callbacks

 private:
  FuseServer() = default;
  Context* ctx_ = nullptr;
  void* session_ = nullptr;  // struct fuse_session*
  bool mounted_ = false;
  bool signals_ = false;
  unsigned max_threads_ = 16;
  bool clone_fd_ = true;
};

}  // namespace scribefs
