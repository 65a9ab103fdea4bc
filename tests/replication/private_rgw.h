// A Ceph cluster of the test's own (tests/testbed/rgw-up.sh), so that
// stopping its gateway disturbs no other test. Removed when destroyed.
// A test target that includes this defines SCRIBEFS_TESTBED_DIR.
#pragma once

#include <optional>
#include <string>
#include <utility>

#include "tests/integration/mount_fixture.h"
#include "tests/replication/replication_util.h"

namespace scribefs::rep {

class PrivateRgw {
 public:
  explicit PrivateRgw(std::string dir) : dir_(std::move(dir)) {}
  ~PrivateRgw() {
    if (started_) it::RunCommand({Script("rgw-down.sh"), dir_}, 90);
  }
  PrivateRgw(const PrivateRgw&) = delete;
  PrivateRgw& operator=(const PrivateRgw&) = delete;

  std::optional<S3Env> Start(std::string* error) {
    started_ = true;
    it::RunResult r = it::RunCommand({Script("rgw-up.sh"), dir_, "0"}, 240);
    if (r.exit_code != 0) {
      *error = "rgw-up.sh: " + r.Describe();
      return std::nullopt;
    }
    return LoadS3EnvFile(dir_ + "/env", error);
  }
  // "stop" or "start" the gateway only; "" or what went wrong.
  std::string Gateway(const std::string& verb) {
    it::RunResult r = it::RunCommand({Script("rgw-gateway.sh"), dir_, verb}, 60);
    return r.exit_code == 0 ? "" : "rgw-gateway.sh " + verb + ": " + r.Describe();
  }

 private:
  static std::string Script(const std::string& name) {
    return std::string(SCRIBEFS_TESTBED_DIR) + "/" + name;
  }
  const std::string dir_;
  bool started_ = false;
};

}  // namespace scribefs::rep
