#include "tests/durability/mirror_check.h"

#include <map>

namespace scribefs::dur {

std::vector<std::string> MirrorProblems(const rep::S3Env& env, const std::string& bucket,
                                        const std::string& root) {
  std::vector<std::string> problems;
  auto want = rep::ExpectedObjects(root);
  auto store = rep::OpenS3(env, bucket);
  if (!store) return {"cannot open an S3 client for " + bucket};
  auto listed = store->ListAll(ListOptions{});
  if (!listed.ok()) return {"cannot list " + bucket + ": " + listed.status().ToString()};
  std::map<std::string, ListEntry> have;
  for (auto& e : *listed)
    if (!e.key.starts_with(".scribefs/")) have[e.key] = e;
  for (const auto& [key, e] : want) {
    auto it = have.find(key);
    if (it == have.end()) {
      problems.push_back("missing in bucket: " + key);
      continue;
    }
    if (e.type == 'd') continue;
    if (it->second.size != e.size) {
      problems.push_back("size differs: " + key + " local " + std::to_string(e.size) +
                         " bucket " + std::to_string(it->second.size));
    } else if (it->second.etag.find('-') == std::string::npos && it->second.etag != e.md5) {
      problems.push_back("content differs: " + key + " local md5 " + e.md5 + " bucket ETag " +
                         it->second.etag);
    }
  }
  for (const auto& [key, e] : have)
    if (!want.count(key)) problems.push_back("extra in bucket: " + key);
  return problems;
}

it::RunResult Scribectl(const std::string& state_dir, const std::vector<std::string>& args,
                        double timeout_s) {
  std::vector<std::string> argv = {SCRIBECTL_BIN, "--state-dir", state_dir};
  argv.insert(argv.end(), args.begin(), args.end());
  return it::RunCommand(argv, timeout_s);
}

}  // namespace scribefs::dur
