// The end-to-end scenario shared by the s3:// and file:// tests: a tree of
// nested and empty directories, 1,000 small files, a 100 MiB file, symlinks,
// owner and mode changes (phase 1), then renames of files and directories,
// deletes, overwrites, a type change, and a file rewritten 100 times (phase 2).
// Every helper records gtest failures; call them under ASSERT_NO_FATAL_FAILURE.
#pragma once

#include <map>
#include <string>

#include "tests/replication/replication_util.h"

namespace scribefs::rep {

inline constexpr int kSmallFiles = 1000;
inline constexpr uint64_t kBigFileSize = 100ull << 20;

void BuildTree(const std::string& root);
void MutateTree(const std::string& root);

// Keys whose metadata the AWS CLI checks as an independent client (the rest
// are checked with scribefs's own S3 client): a chown'ed/chmod'ed file, the
// renamed 100 MiB file, a symlink, directory markers, the 100-times file.
std::vector<std::string> SampleKeys();

// The s3:// mirror: `aws s3api list-objects-v2` equals `want` (every file,
// marker, symlink; sizes), `aws s3 cp --recursive` into download_dir gives
// bodies whose SHA-256 equal the local ones, and every object's metadata
// (HEAD with scribefs's S3 client; `aws_head_keys` also with `aws s3api
// head-object`) matches.
void VerifyS3Mirror(const S3Env& env, const std::string& bucket,
                    const std::map<std::string, Expected>& want, const std::string& download_dir,
                    const std::vector<std::string>& aws_head_keys = SampleKeys());

// The file:// mirror: the target directory (without .scribefs-local) holds
// exactly `want` (directories for markers, regular files for files and
// symlinks), SHA-256 of every body matches, and each object's sidecar
// metadata (LocalStore::Head) matches.
void VerifyFileMirror(const std::string& target_dir, const std::map<std::string, Expected>& want);

}  // namespace scribefs::rep
