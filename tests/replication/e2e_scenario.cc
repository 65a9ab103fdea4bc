#include "tests/replication/e2e_scenario.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <future>
#include <set>

#include "uploader/local_store.h"

namespace scribefs::rep {
namespace {

std::string P(const std::string& root, const std::string& rel) { return root + "/" + rel; }

void Mkdir(const std::string& path, mode_t mode = 0755) {
  EXPECT_EQ(mkdir(path.c_str(), mode), 0) << "mkdir " << path << ": " << strerror(errno);
}

void Write(const std::string& path, const std::string& content, int flags = O_TRUNC) {
  int fd = open(path.c_str(), O_WRONLY | O_CREAT | O_CLOEXEC | flags, 0644);
  ASSERT_GE(fd, 0) << "open " << path << ": " << strerror(errno);
  size_t done = 0;
  while (done < content.size()) {
    ssize_t n = write(fd, content.data() + done, content.size() - done);
    ASSERT_GT(n, 0) << "write " << path << ": " << strerror(errno);
    done += n;
  }
  ASSERT_EQ(close(fd), 0) << "close " << path << ": " << strerror(errno);
}

void PWrite(const std::string& path, uint64_t off, const std::string& content) {
  int fd = open(path.c_str(), O_WRONLY | O_CLOEXEC);
  ASSERT_GE(fd, 0) << "open " << path << ": " << strerror(errno);
  ASSERT_EQ(pwrite(fd, content.data(), content.size(), off), ssize_t(content.size()))
      << "pwrite " << path << ": " << strerror(errno);
  ASSERT_EQ(close(fd), 0) << "close " << path << ": " << strerror(errno);
}

void Rename(const std::string& from, const std::string& to) {
  EXPECT_EQ(rename(from.c_str(), to.c_str()), 0)
      << "rename " << from << " -> " << to << ": " << strerror(errno);
}
void Unlink(const std::string& path) {
  EXPECT_EQ(unlink(path.c_str()), 0) << "unlink " << path << ": " << strerror(errno);
}
void Rmdir(const std::string& path) {
  EXPECT_EQ(rmdir(path.c_str()), 0) << "rmdir " << path << ": " << strerror(errno);
}
void Symlink(const std::string& target, const std::string& path) {
  EXPECT_EQ(symlink(target.c_str(), path.c_str()), 0) << "symlink " << path << ": " << strerror(errno);
}

std::string SmallName(int i) {
  char b[32];
  snprintf(b, sizeof b, "small/d%02d/f%03d", i / 100, i % 100);
  return b;
}

}  // namespace

void BuildTree(const std::string& root) {
  // Nested and empty directories.
  for (const char* d : {"a", "a/b", "a/b/c", "d", "d/e", "d/e/f", "d/e/f/g", "empty1", "a/empty2",
                        "small", "big", "links", "renamed", "doomed", "gone"})
    Mkdir(P(root, d));
  for (int i = 0; i < 10; ++i) {
    char b[32];
    snprintf(b, sizeof b, "small/d%02d", i);
    Mkdir(P(root, b));
  }
  // 1,000 small files, 0 to 8 KiB.
  for (int i = 0; i < kSmallFiles; ++i)
    ASSERT_NO_FATAL_FAILURE(Write(P(root, SmallName(i)), RandomBytes((i * 37) % 8192, i + 1)));
  ASSERT_NO_FATAL_FAILURE(Write(P(root, "a/b/y.txt"), "in a/b\n"));
  ASSERT_NO_FATAL_FAILURE(Write(P(root, "a/b/c/x.txt"), "in a/b/c\n"));
  ASSERT_NO_FATAL_FAILURE(Write(P(root, "a/b/c/z.bin"), RandomBytes(300000, 77)));
  ASSERT_NO_FATAL_FAILURE(Write(P(root, "d/e/f/g/deep.txt"), "deep\n"));
  for (int i = 0; i < 5; ++i)
    ASSERT_NO_FATAL_FAILURE(Write(P(root, "doomed/f" + std::to_string(i)), "doomed\n"));
  ASSERT_NO_FATAL_FAILURE(Write(P(root, "rewrite.txt"), "version -1\n"));
  // The 100 MiB file, written in 4 MiB chunks.
  {
    int fd = open(P(root, "big/big.bin").c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    ASSERT_GE(fd, 0) << strerror(errno);
    const uint64_t chunk = 4ull << 20;
    for (uint64_t off = 0; off < kBigFileSize; off += chunk) {
      std::string data = RandomBytes(chunk, 1000 + off / chunk);
      ASSERT_EQ(write(fd, data.data(), data.size()), ssize_t(data.size())) << strerror(errno);
    }
    ASSERT_EQ(close(fd), 0) << strerror(errno);
  }
  // Symlinks: relative, dangling, absolute, to a directory.
  Symlink("../small/d00/f001", P(root, "links/to-file"));
  Symlink("does/not/exist", P(root, "links/dangling"));
  Symlink("/etc/hostname", P(root, "links/abs"));
  Symlink("../a", P(root, "links/to-dir"));
  // Mode and owner.
  EXPECT_EQ(chmod(P(root, "small/d04/f000").c_str(), 0600), 0) << strerror(errno);
  EXPECT_EQ(chown(P(root, "small/d04/f000").c_str(), 1234, 5678), 0) << strerror(errno);
  EXPECT_EQ(chmod(P(root, "d/e").c_str(), 0700), 0) << strerror(errno);
  EXPECT_EQ(chmod(P(root, "small/d04/f001").c_str(), 0755), 0) << strerror(errno);
  // Born and moved / born and gone before any upload.
  ASSERT_NO_FATAL_FAILURE(Write(P(root, "born.txt"), "born\n"));
  Rename(P(root, "born.txt"), P(root, "renamed/born-and-moved.txt"));
  ASSERT_NO_FATAL_FAILURE(Write(P(root, "ephemeral.txt"), "ephemeral\n"));
  Unlink(P(root, "ephemeral.txt"));
}

void MutateTree(const std::string& root) {
  // Renames: a file, the 100 MiB file, a directory with a subtree, a rename
  // over an existing file.
  Rename(P(root, "small/d01/f005"), P(root, "renamed/f005-moved"));
  Rename(P(root, "big/big.bin"), P(root, "big/big-renamed.bin"));
  Rename(P(root, "a/b"), P(root, "a/b-renamed"));
  Rename(P(root, "small/d05/f001"), P(root, "small/d05/f002"));
  // Deletes: files, an empty directory, a directory with files.
  for (int i = 0; i < 10; ++i) Unlink(P(root, SmallName(200 + i)));
  Rmdir(P(root, "gone"));
  for (int i = 0; i < 5; ++i) Unlink(P(root, "doomed/f" + std::to_string(i)));
  Rmdir(P(root, "doomed"));
  // Overwrites: whole (O_TRUNC) and in place.
  for (int i = 0; i < 10; ++i)
    ASSERT_NO_FATAL_FAILURE(Write(P(root, SmallName(300 + i)), "overwritten " + std::to_string(i)));
  ASSERT_NO_FATAL_FAILURE(PWrite(P(root, SmallName(650)), 100, "PATCHED-IN-PLACE"));
  ASSERT_NO_FATAL_FAILURE(PWrite(P(root, "a/b-renamed/c/z.bin"), 123456, "patched after the move"));
  // A file rewritten 100 times.
  for (int i = 0; i < 100; ++i)
    ASSERT_NO_FATAL_FAILURE(
        Write(P(root, "rewrite.txt"), "version " + std::to_string(i) + "\n" + RandomBytes(i * 10, i)));
  // A symlink replaced; a file replaced by a directory; a new empty directory.
  Unlink(P(root, "links/to-file"));
  Symlink("../small/d09/f099", P(root, "links/to-file"));
  Unlink(P(root, SmallName(700)));
  Mkdir(P(root, SmallName(700)));
  Mkdir(P(root, "empty3"));
  // Appends.
  ASSERT_NO_FATAL_FAILURE(Write(P(root, SmallName(800)), "appended\n", O_APPEND));
}

std::vector<std::string> SampleKeys() {
  return {"small/d04/f000", "big/big-renamed.bin", "links/to-file", "a/b-renamed/", "d/e/",
          "rewrite.txt"};
}

void VerifyS3Mirror(const S3Env& env, const std::string& bucket,
                    const std::map<std::string, Expected>& want, const std::string& download_dir,
                    const std::vector<std::string>& aws_head_keys) {
  // 1. The listing (AWS CLI) equals the directory.
  std::string error;
  auto listed = AwsList(env, bucket, &error);
  ASSERT_TRUE(listed.has_value()) << error;
  std::vector<std::string> missing, extra, wrong_size;
  for (const auto& [key, e] : want) {
    auto it = listed->find(key);
    if (it == listed->end()) {
      missing.push_back(key);
    } else if (it->second.size != e.size) {
      wrong_size.push_back(key + ": " + std::to_string(it->second.size) + " bytes, local " +
                           std::to_string(e.size));
    }
  }
  for (const auto& [key, o] : *listed)
    if (!want.count(key)) extra.push_back(key);
  EXPECT_TRUE(missing.empty()) << missing.size() << " keys missing from the bucket:" << Head(missing);
  EXPECT_TRUE(extra.empty()) << extra.size() << " keys in the bucket but not local:" << Head(extra);
  EXPECT_TRUE(wrong_size.empty()) << "sizes differ:" << Head(wrong_size);
  printf("[ verify   ] aws s3api list-objects-v2: %zu keys (want %zu)\n", listed->size(), want.size());

  // 2. Every body's SHA-256, downloaded by the AWS CLI.
  it::RunResult cp = Aws(env, {"s3", "cp", "s3://" + bucket, download_dir, "--recursive",
                               "--exclude", ".scribefs/*", "--only-show-errors"},
                         240);
  ASSERT_EQ(cp.exit_code, 0) << "aws s3 cp --recursive: " << cp.Describe();
  std::vector<std::string> bad_hash;
  for (const auto& [key, e] : want) {
    if (e.type == 'd') continue;
    std::string got = Sha256OfFile(download_dir + "/" + key);
    if (got != e.sha256)
      bad_hash.push_back(key + ": downloaded sha256 " + (got.empty() ? "(unreadable)" : got) +
                         ", local " + e.sha256);
  }
  EXPECT_TRUE(bad_hash.empty()) << bad_hash.size() << " objects differ from the local files:"
                                << Head(bad_hash);
  // Nothing else was downloaded (markers are skipped by `aws s3 cp`).
  std::vector<std::string> extra_dl;
  for (const auto& [rel, st] : it::ListTree(download_dir))
    if (!S_ISDIR(st.st_mode) && !want.count(rel)) extra_dl.push_back(rel);
  EXPECT_TRUE(extra_dl.empty()) << "downloaded but not local:" << Head(extra_dl);

  // 3. Metadata of every object (scribefs's own S3 client: one connection,
  // fast), and of a sample with the AWS CLI.
  auto store = OpenS3(env, bucket);
  ASSERT_NE(store, nullptr);
  std::vector<std::string> bad_meta;
  for (const auto& [key, e] : want) {
    auto h = store->Head(key);
    if (!h.ok()) {
      bad_meta.push_back(key + ": HEAD failed: " + h.status().ToString());
      continue;
    }
    for (auto& p : CheckMetadata(key, e, h->metadata)) bad_meta.push_back(p);
  }
  EXPECT_TRUE(bad_meta.empty()) << bad_meta.size() << " metadata problems:" << Head(bad_meta);

  std::vector<std::future<std::pair<std::string, std::string>>> heads;
  for (const auto& key : aws_head_keys) {
    heads.push_back(std::async(std::launch::async, [&env, &bucket, &want, key] {
      std::string err;
      auto j = AwsHead(env, bucket, key, &err);
      if (!j) return std::make_pair(key, err);
      auto it = want.find(key);
      if (it == want.end()) return std::make_pair(key, std::string("not a local entry"));
      std::map<std::string, std::string> meta;
      if (j->contains("Metadata"))
        for (auto& [k, v] : (*j)["Metadata"].items()) meta[k] = v.get<std::string>();
      std::string problems;
      for (auto& p : CheckMetadata(key, it->second, meta)) problems += p + "; ";
      if (j->value("ContentLength", uint64_t(0)) != it->second.size)
        problems += "ContentLength " + std::to_string(j->value("ContentLength", uint64_t(0)));
      return std::make_pair(key, problems);
    }));
  }
  for (auto& f : heads) {
    auto [key, problems] = f.get();
    EXPECT_EQ(problems, "") << "aws s3api head-object " << key;
  }
}

void VerifyFileMirror(const std::string& target_dir, const std::map<std::string, Expected>& want) {
  // The target directory as keys: "dir/" for directories, "file" otherwise.
  std::map<std::string, struct stat> have;
  for (const auto& [rel, st] : it::ListTree(target_dir)) {
    if (rel == ".scribefs-local" || rel.rfind(".scribefs-local/", 0) == 0) continue;
    // The reserved .scribefs/ (history, checkpoints) is not the mirror.
    if (rel == ".scribefs" || rel.rfind(".scribefs/", 0) == 0) continue;
    have[S_ISDIR(st.st_mode) ? rel + "/" : rel] = st;
  }
  std::vector<std::string> missing, extra, bad;
  for (const auto& [key, e] : want) {
    auto it = have.find(key);
    if (it == have.end()) {
      missing.push_back(key);
      continue;
    }
    if (e.type == 'd') continue;
    if (!S_ISREG(it->second.st_mode)) {
      bad.push_back(key + ": not a regular file in the target");
      continue;
    }
    std::string got = Sha256OfFile(target_dir + "/" + key);
    if (got != e.sha256) bad.push_back(key + ": target sha256 " + got + ", local " + e.sha256);
  }
  for (const auto& [key, st] : have)
    if (!want.count(key)) extra.push_back(key);
  EXPECT_TRUE(missing.empty()) << missing.size() << " missing from the target:" << Head(missing);
  EXPECT_TRUE(extra.empty()) << extra.size() << " in the target but not local:" << Head(extra);
  EXPECT_TRUE(bad.empty()) << bad.size() << " bodies differ:" << Head(bad);
  printf("[ verify   ] target dir: %zu entries (want %zu)\n", have.size(), want.size());

  auto store = LocalStore::Open(target_dir);
  ASSERT_TRUE(store.ok()) << store.status().ToString();
  std::vector<std::string> bad_meta;
  for (const auto& [key, e] : want) {
    auto h = store.value()->Head(key);
    if (!h.ok()) {
      bad_meta.push_back(key + ": Head failed: " + h.status().ToString());
      continue;
    }
    for (auto& p : CheckMetadata(key, e, h->metadata)) bad_meta.push_back(p);
  }
  EXPECT_TRUE(bad_meta.empty()) << bad_meta.size() << " metadata problems:" << Head(bad_meta);
}

}  // namespace scribefs::rep
