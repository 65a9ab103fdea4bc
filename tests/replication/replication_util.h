// Helpers for the replication tests (tests/replication/): the S3 server the
// CTest fixture "rgw" started, the AWS CLI as an independent client, waiting
// for the uploader to catch up, the uploader's counters, and snapshots of a
// local tree as the target should mirror it.
#pragma once

#include <sys/stat.h>

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "tests/integration/mount_fixture.h"
#include "uploader/object_store.h"
#include "uploader/s3_store.h"

namespace scribefs::rep {

// ---- the S3 server -----------------------------------------------------------

struct S3Env {
  std::string endpoint;  // http://127.0.0.1:PORT
  std::string region = "us-east-1";
  std::string access_key, secret_key;
  std::string host;  // 127.0.0.1
  int port = 0;
};

// Reads the env file named by $SCRIBEFS_TEST_S3_ENV (written by rgw-up.sh).
// nullopt with *error when it is missing or incomplete.
std::optional<S3Env> LoadS3Env(std::string* error);
// The same from an env file at `path` (e.g. a private cluster's DIR/env).
std::optional<S3Env> LoadS3EnvFile(const std::string& path, std::string* error);

// A fresh, valid bucket name: "rep-TAG-PID-RANDOM".
std::string NewBucketName(const std::string& tag);

// An S3Store on env's server (or `endpoint` when given).
std::unique_ptr<S3Store> OpenS3(const S3Env& env, const std::string& bucket,
                                const std::string& endpoint = "");
// Creates the bucket (own S3 client); empty string or the error.
std::string CreateBucket(const S3Env& env, const std::string& bucket);

// ---- the AWS CLI ---------------------------------------------------------------

// $SCRIBEFS_TEST_AWS, else /usr/bin/aws (Debian's awscli), else "aws" from PATH.
std::string AwsBin();
// Runs `aws --endpoint-url ... --region ... ARGS` with env's credentials.
it::RunResult Aws(const S3Env& env, const std::vector<std::string>& args, double timeout_s = 180);

struct ListedObject {
  uint64_t size = 0;
  std::string etag;  // without quotes
};
// `aws s3api list-objects-v2 --bucket B` (every page): key -> size, ETag;
// the mirror only (keys under the reserved .scribefs/ are left out).
std::optional<std::map<std::string, ListedObject>> AwsList(const S3Env& env,
                                                           const std::string& bucket,
                                                           std::string* error);
// `aws s3api head-object`; nullopt with *error (containing "404" / "Not Found"
// when there is no such object).
std::optional<nlohmann::json> AwsHead(const S3Env& env, const std::string& bucket,
                                      const std::string& key, std::string* error);

// ---- the journal and the uploader's counters ----------------------------------

struct UploaderCounters {
  bool present = false;  // meta 'uploader' exists
  uint64_t uploads = 0, copies = 0, deletes = 0, partial_uploads = 0, skipped_unchanged = 0;
  uint64_t retries = 0, failures = 0, bytes_sent = 0;
  std::map<std::string, uint64_t> retry_causes;  // server_error, throttled, network, changed, other
  std::string last_error;
  int64_t updated_ns = 0;
  std::string raw;
  std::string Describe() const { return raw.empty() ? "(no uploader counters)" : raw; }
};
UploaderCounters ReadCounters(const std::string& state_dir);

// Records per upload state.
std::map<std::string, int64_t> CountStates(const std::string& state_dir);

struct WaitResult {
  bool ok = false;
  double seconds = 0;
  std::string why;  // when !ok: what was still pending
};
// "Flush" until there is a control socket: polls STATE/journal.db until no
// record is pending or uploading and the meta 'uploader' counters have not
// changed for `quiet_s`. Failed records do not count as pending.
WaitResult WaitForUploads(const std::string& state_dir, double timeout_s, double quiet_s = 1.0);

// ---- hashing ---------------------------------------------------------------

std::string Sha256Hex(const std::string& data);
std::string Md5Hex(const std::string& data);
// Of a whole file ("" when unreadable).
std::string Sha256OfFile(const std::string& path);
std::string Md5OfFile(const std::string& path);

// Fast deterministic bytes (xorshift), for large files.
std::string RandomBytes(size_t n, uint64_t seed);

// ---- what the target should hold --------------------------------------------

struct Expected {
  char type = 'f';  // f file, d directory (key ends in "/"), l symlink
  uint64_t size = 0;
  mode_t mode = 0;  // st_mode, type bits included
  uid_t uid = 0;
  gid_t gid = 0;
  int64_t mtime_ns = 0;
  std::string sha256, md5;  // of the object body (a symlink's: its target)
  std::string local_path;
};
// Every entry below root as its object key: "dir/" for directories, "file",
// "link" (body = the link target). Entries whose first component is in `skip`
// are left out.
std::map<std::string, Expected> ExpectedObjects(const std::string& root,
                                                const std::vector<std::string>& skip = {});

// Problems in the object metadata (x-amz-meta-*: mode, uid, gid, mtime,
// scribefs-mtime-ns) compared with what the local entry says; empty when it
// matches. Directories: mode, uid, gid only (their mtime changes with every
// entry and is not re-uploaded).
std::vector<std::string> CheckMetadata(const std::string& key, const Expected& e,
                                       const std::map<std::string, std::string>& meta);

// First `max` entries of a list, one per line, for failure messages.
std::string Head(const std::vector<std::string>& items, size_t max = 20);

}  // namespace scribefs::rep
