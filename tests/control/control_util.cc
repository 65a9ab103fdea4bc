#include "tests/control/control_util.h"

#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <fstream>
#include <random>
#include <thread>

#include "common/unix_socket.h"
#include "uploader/digest.h"
#include "uploader/store_factory.h"

namespace scribefs::ctltest {

std::string ScribectlBin() {
  const char* env = getenv("SCRIBEFS_CTL_BIN");
  return env && *env ? env : SCRIBECTL_BIN;
}

RunResult Scribectl(const std::string& state_dir, const std::vector<std::string>& args,
                    double timeout_s) {
  std::vector<std::string> argv = {ScribectlBin(), "--state-dir", state_dir};
  argv.insert(argv.end(), args.begin(), args.end());
  return it::RunCommand(argv, timeout_s);
}

json JsonOut(const RunResult& r) {
  json j = json::parse(r.out, nullptr, false);
  if (j.is_discarded() || !j.is_object()) {
    ADD_FAILURE() << "stdout is not one JSON object: " << r.Describe();
    return nullptr;
  }
  return j;
}

json Ask(const std::string& state_dir, const std::string& line) {
  auto fd = ConnectUnix(state_dir + "/control.sock");
  if (!fd.ok()) {
    ADD_FAILURE() << "connect: " << fd.status().ToString();
    return nullptr;
  }
  if (!SendAll(fd->get(), line + "\n", 5000).ok()) return nullptr;
  std::string buf;
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  while (std::chrono::steady_clock::now() < deadline) {
    auto nl = buf.find('\n');
    if (nl != std::string::npos) return json::parse(buf.substr(0, nl), nullptr, false);
    pollfd p = {fd->get(), POLLIN, 0};
    if (poll(&p, 1, 100) <= 0) continue;
    char chunk[4096];
    ssize_t n = recv(fd->get(), chunk, sizeof chunk, 0);
    if (n <= 0) return nullptr;
    buf.append(chunk, n);
  }
  ADD_FAILURE() << "no answer to " << line;
  return nullptr;
}

Child::Child(const std::function<int()>& fn) {
  pid_ = fork();
  if (pid_ == 0) {
    int rc = fn();
    _exit(rc);
  }
  if (pid_ < 0) ADD_FAILURE() << "fork failed";
}

Child::~Child() {
  if (pid_ > 0 && !status_) {
    kill(pid_, SIGKILL);
    waitpid(pid_, nullptr, 0);
  }
}

bool Child::Exited() { return Wait(0).has_value(); }

std::optional<int> Child::Wait(double timeout_s) {
  if (status_) return status_;
  if (pid_ <= 0) return -1;
  auto deadline = std::chrono::steady_clock::now() +
                  std::chrono::milliseconds(static_cast<int64_t>(timeout_s * 1000));
  while (true) {
    int st;
    pid_t r = waitpid(pid_, &st, WNOHANG);
    if (r == pid_) {
      status_ = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
      return status_;
    }
    if (std::chrono::steady_clock::now() >= deadline) return std::nullopt;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
}

std::string Sha256Hex(const std::string& data) {
  auto d = Sha256(data);
  return d.ok() ? HexEncode(*d) : "";
}

std::optional<S3Server> GetS3Server() {
  const char* path = getenv("SCRIBEFS_TEST_S3_ENV");
  if (!path || !*path) {
    ADD_FAILURE() << "SCRIBEFS_TEST_S3_ENV is not set (run through ctest, which starts RGW)";
    return std::nullopt;
  }
  std::ifstream in(path);
  if (!in) {
    ADD_FAILURE() << "cannot read " << path << ": did the rgw_up fixture fail?";
    return std::nullopt;
  }
  std::map<std::string, std::string> kv;
  std::string line;
  while (std::getline(in, line)) {
    auto eq = line.find('=');
    if (eq != std::string::npos) kv[line.substr(0, eq)] = line.substr(eq + 1);
  }
  S3Server s{kv["S3_ENDPOINT"], kv["S3_REGION"].empty() ? "us-east-1" : kv["S3_REGION"],
             kv["AWS_ACCESS_KEY_ID"], kv["AWS_SECRET_ACCESS_KEY"]};
  if (s.endpoint.empty() || s.access_key.empty()) {
    ADD_FAILURE() << path << " lacks the endpoint or the keys";
    return std::nullopt;
  }
  return s;
}

void ExportCredentials(const S3Server& s) {
  setenv("AWS_ACCESS_KEY_ID", s.access_key.c_str(), 1);
  setenv("AWS_SECRET_ACCESS_KEY", s.secret_key.c_str(), 1);
  setenv("AWS_DEFAULT_REGION", s.region.c_str(), 1);
  setenv("AWS_REGION", s.region.c_str(), 1);
  unsetenv("AWS_SESSION_TOKEN");
  unsetenv("AWS_PROFILE");
}

RunResult Aws(const S3Server& s, const std::vector<std::string>& args, double timeout_s) {
  ExportCredentials(s);
  std::vector<std::string> argv = {"aws", "--endpoint-url", s.endpoint, "s3api"};
  argv.insert(argv.end(), args.begin(), args.end());
  return it::RunCommand(argv, timeout_s);
}

std::string MakeBucket(const S3Server& s, const std::string& stem, bool versioned) {
  std::mt19937_64 rng{std::random_device{}()};
  char suffix[17];
  snprintf(suffix, sizeof suffix, "%016llx", static_cast<unsigned long long>(rng()));
  std::string bucket = stem + "-" + suffix;
  RunResult r = Aws(s, {"create-bucket", "--bucket", bucket});
  if (r.exit_code != 0) {
    ADD_FAILURE() << "create-bucket " << bucket << ": " << r.Describe();
    return "";
  }
  if (versioned) {
    r = Aws(s, {"put-bucket-versioning", "--bucket", bucket, "--versioning-configuration",
                "Status=Enabled"});
    if (r.exit_code != 0) ADD_FAILURE() << "put-bucket-versioning: " << r.Describe();
  }
  return bucket;
}

std::unique_ptr<ObjectStore> OpenTarget(const std::string& url,
                                        const std::optional<S3Server>& server) {
  TargetOptions o;
  if (server) {
    ExportCredentials(*server);
    o.endpoint = server->endpoint;
    o.region = server->region;
  }
  auto store = OpenStore(url, o);
  if (!store.ok()) {
    ADD_FAILURE() << "open " << url << ": " << store.status().ToString();
    return nullptr;
  }
  return std::move(store.value());
}

}  // namespace scribefs::ctltest
