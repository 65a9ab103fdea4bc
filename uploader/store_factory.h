// Turns a --target URL into an ObjectStore:
//   s3://BUCKET[/PREFIX]   S3Store; --endpoint URL (path-style), --region
//   file:///ABS/PATH       LocalStore
// Errors say what is wrong with the URL and what a valid one looks like.
#pragma once

#include <memory>
#include <string>

#include "common/status.h"
#include "uploader/bandwidth.h"
#include "uploader/credentials.h"
#include "uploader/object_store.h"

namespace scribefs {

struct TargetOptions {
  std::string endpoint;  // S3 only: "http(s)://host[:port]"
  // S3 only. Empty: AWS_REGION, then AWS_DEFAULT_REGION, then us-east-1.
  std::string region;
  bool verify_tls = true;
  std::string ca_file;
  // Environment lookup for credentials and region; default ::getenv.
  GetEnvFn getenv_fn;
  // Upload bodies pass through it (--bwlimit); null: no limit.
  std::shared_ptr<BandwidthLimiter> bandwidth;
};

struct TargetUrl {
  enum class Kind { kS3, kFile };
  Kind kind = Kind::kFile;
  std::string bucket;  // kS3
  std::string prefix;  // kS3: without leading/trailing "/"
  std::string path;    // kFile: absolute, percent-decoded
};

Result<TargetUrl> ParseTargetUrl(const std::string& url);

Result<std::unique_ptr<ObjectStore>> OpenStore(const std::string& url,
                                               const TargetOptions& options);

}  // namespace scribefs
