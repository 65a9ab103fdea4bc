// Helpers shared by the control tests (tests/control): running scribectl,
// talking to the control socket directly, child processes that make one
// change through the mount (to see whether a pause holds them), SHA-256,
// the RGW test server, and reading a target through an ObjectStore.
// Safe from any thread unless noted.
#pragma once

#include <sys/types.h>

#include <functional>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "tests/integration/mount_fixture.h"
#include "uploader/object_store.h"

namespace scribefs::ctltest {

using it::RunResult;
using json = nlohmann::json;

std::string ScribectlBin();

// scribectl --state-dir STATE ARGS...
RunResult Scribectl(const std::string& state_dir, const std::vector<std::string>& args,
                    double timeout_s = 60);
// Parses stdout as one JSON object (nullptr and ADD_FAILURE when it does not).
json JsonOut(const RunResult& r);

// One request line to STATE/control.sock, one answer (nullptr when the daemon
// closed the connection without answering).
json Ask(const std::string& state_dir, const std::string& line);

// A child process that runs fn() and _exits with its result (0 ok, else the
// errno). Only async-signal-safe work in fn (plain syscalls).
class Child {
 public:
  explicit Child(const std::function<int()>& fn);
  ~Child();  // kills and reaps a child still running
  Child(const Child&) = delete;
  Child& operator=(const Child&) = delete;
  // True when the child has exited (reaps it).
  bool Exited();
  // Waits up to timeout_s; the exit status, or nullopt if still running.
  std::optional<int> Wait(double timeout_s);
  pid_t pid() const { return pid_; }

 private:
  pid_t pid_ = -1;
  std::optional<int> status_;
};

std::string Sha256Hex(const std::string& data);

// The RGW started by the CTest fixture "rgw" (SCRIBEFS_TEST_S3_ENV).
struct S3Server {
  std::string endpoint, region, access_key, secret_key;
};
// nullopt (with ADD_FAILURE) when the env file is missing.
std::optional<S3Server> GetS3Server();
// Exports the credentials so that the daemon and the aws CLI find them.
void ExportCredentials(const S3Server& s);
// `aws --endpoint-url E s3api ARGS...`.
RunResult Aws(const S3Server& s, const std::vector<std::string>& args, double timeout_s = 60);
// A fresh bucket with a unique name; versioned if asked.
std::string MakeBucket(const S3Server& s, const std::string& stem, bool versioned);

// An ObjectStore for a target URL (S3 options from server when given).
std::unique_ptr<ObjectStore> OpenTarget(const std::string& url,
                                        const std::optional<S3Server>& server);

}  // namespace scribefs::ctltest
