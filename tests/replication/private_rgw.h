// A Ceph cluster of the test's own (tests/testbed/rgw-up.sh), so that
// stopping its gateway disturbs no other test. Removed when destroyed.
// A test target that includes this defines SCRIBEFS_TESTBED_DIR.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

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

  // memstore_bytes: the OSD's in-memory disk (0: rgw-up.sh's default, 2 GiB);
  // memory is taken only as data is stored. extra_conf: lines for the
  // gateway's section of ceph.conf.
  std::optional<S3Env> Start(std::string* error, uint64_t memstore_bytes = 0,
                             const std::string& extra_conf = "") {
    started_ = true;
    std::vector<std::string> argv = {Script("rgw-up.sh"), dir_, "0"};
    if (!extra_conf.empty()) argv.insert(argv.begin(), "RGW_EXTRA_CONF=" + extra_conf);
    if (memstore_bytes)
      argv.insert(argv.begin(), "RGW_MEMSTORE_BYTES=" + std::to_string(memstore_bytes));
    if (argv.size() > 3) argv.insert(argv.begin(), "env");
    it::RunResult r = it::RunCommand(argv, 240);
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
