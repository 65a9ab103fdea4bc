// ReplicationTest: MountTest (tests/integration/mount_fixture.h, reused
// unchanged) plus an uploader target: a fresh bucket on the RGW that the CTest
// fixture "rgw" started, or a file:// directory in the test's temp dir.
#pragma once

#include <gtest/gtest.h>
#include <stdlib.h>

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "tests/integration/mount_fixture.h"
#include "tests/replication/replication_util.h"

namespace scribefs::rep {

class ReplicationTest : public it::MountTest {
 protected:
  // Loads the server's env file, exports its credentials for the daemon and
  // creates a fresh bucket (bucket_). Fatal failure when RGW is not there.
  void SetUpS3(const std::string& tag) {
    std::string error;
    auto env = LoadS3Env(&error);
    ASSERT_TRUE(env.has_value()) << error;
    SetUpS3On(*env, tag);
  }
  // The same on another S3 server (e.g. a test's private RGW).
  void SetUpS3On(const S3Env& env, const std::string& tag) {
    env_ = env;
    // The daemon (a child of this process) takes its credentials from here.
    setenv("AWS_ACCESS_KEY_ID", env_.access_key.c_str(), 1);
    setenv("AWS_SECRET_ACCESS_KEY", env_.secret_key.c_str(), 1);
    unsetenv("AWS_SESSION_TOKEN");
    unsetenv("AWS_PROFILE");
    setenv("AWS_REGION", env_.region.c_str(), 1);
    bucket_ = NewBucketName(tag);
    std::string err = CreateBucket(env_, bucket_);
    ASSERT_EQ(err, "") << "cannot create bucket " << bucket_;
  }

  // scribectl --state-dir state() ARGS.
  it::RunResult Ctl(const std::vector<std::string>& args, double timeout_s = 120) {
    std::vector<std::string> argv = {SCRIBECTL_BIN, "--state-dir", state()};
    argv.insert(argv.end(), args.begin(), args.end());
    return it::RunCommand(argv, timeout_s);
  }
  // `scribectl flush`, which must succeed; the journal seq it covered (-1: none).
  int64_t CtlFlush() {
    it::RunResult r = Ctl({"--json", "flush"});
    EXPECT_EQ(r.exit_code, 0) << r.Describe();
    auto j = nlohmann::json::parse(r.out, nullptr, false);
    return j.is_object() ? j.value("seq", int64_t(-1)) : -1;
  }

  // Mounts data() on mnt() replicating to `target` with `extra` options.
  void MountWithTarget(const std::string& target, const std::vector<std::string>& extra) {
    Options o;
    o.args = {"--target", target};
    o.args.insert(o.args.end(), extra.begin(), extra.end());
    Mount(o);
  }
  // s3://bucket_ through `endpoint` (default: RGW itself).
  void MountS3(const std::vector<std::string>& extra, const std::string& endpoint = "") {
    std::vector<std::string> args = {"--endpoint", endpoint.empty() ? env_.endpoint : endpoint};
    args.insert(args.end(), extra.begin(), extra.end());
    MountWithTarget("s3://" + bucket_, args);
  }

  // WaitForUploads on state(), failing (non-fatally) with what is pending.
  bool Flush(double timeout_s) {
    WaitResult w = WaitForUploads(state(), timeout_s);
    EXPECT_TRUE(w.ok) << "uploads did not finish: " << w.why;
    if (w.ok) printf("[ flush    ] uploads finished in %.1f s\n", w.seconds);
    return w.ok;
  }

  // Every journal record in state `state_name`.
  std::vector<Record> RecordsIn(const std::string& state_name) {
    std::vector<Record> out;
    for (auto& r : Records())
      if (r.state == state_name) out.push_back(r);
    return out;
  }

  S3Env env_;
  std::string bucket_;
};

}  // namespace scribefs::rep
