// Independent checks that a bucket mirrors a local tree, used by the
// durability tests next to `scribectl verify` (so that a bug in verify cannot
// hide a bug in the uploader, and the other way round).
#pragma once

#include <string>
#include <vector>

#include "tests/integration/mount_fixture.h"
#include "tests/replication/replication_util.h"

namespace scribefs::dur {

// Lists the bucket with scribefs's S3 client and compares it with the tree at
// `root` (rep::ExpectedObjects): the same keys ("dir/" markers for
// directories), the same sizes, and for single-part objects an ETag equal to
// the local MD5 (RGW's ETag of a plain PUT is the body's MD5). Keys under
// ".scribefs/" are ignored. Returns one line per problem; empty when equal.
std::vector<std::string> MirrorProblems(const rep::S3Env& env, const std::string& bucket,
                                        const std::string& root);

// `scribectl --state-dir STATE ARGS...`
it::RunResult Scribectl(const std::string& state_dir, const std::vector<std::string>& args,
                        double timeout_s = 300);

}  // namespace scribefs::dur
