// scribectl verify --history [--deep] (issue 11, item 6): a history built with
// HistoryStore (PutChunks + AppendSegment) in a file:// target verifies clean;
// then one chunk is deleted, one truncated and one corrupted in place: each is
// found with the paths and seqs that need it (the corrupt one only with
// --deep), through the engine (VerifyHistory) and the real scribectl binary.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>

#include "history/history_store.h"
#include "history/layout.h"
#include "tests/uploader/test_util.h"
#include "tools/ctl_common.h"
#include "tools/verify.h"
#include "uploader/local_store.h"
#include "uploader/object_layout.h"

namespace scribefs::ctl {
namespace {

using nlohmann::json;
using testing_util::TempDir;
using testing_util::WriteFile;

struct CtlRun {
  int exit_code = -1;
  std::string out, err;
};

// scribectl ARGS, stdout captured, stderr to a file.
CtlRun Ctl(const std::string& args, const std::string& tmp) {
  std::string err_file = tmp + "/stderr";
  std::string cmd =
      std::string("env -u SCRIBEFS_STATE_DIR ") + SCRIBECTL_BIN + " " + args + " 2>" + err_file;
  CtlRun r;
  FILE* p = popen(cmd.c_str(), "r");
  if (!p) return r;
  char buf[4096];
  for (size_t n; (n = fread(buf, 1, sizeof buf, p)) > 0;) r.out.append(buf, n);
  int status = pclose(p);
  r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  std::ifstream in(err_file);
  std::stringstream ss;
  ss << in.rdbuf();
  r.err = ss.str();
  return r;
}

history::Entry Put(uint64_t seq, const std::string& path, uint64_t size,
                   std::vector<history::ChunkRef> chunks) {
  history::Entry e;
  e.seq = seq;
  e.time_ns = static_cast<int64_t>(seq) * 1'000'000'000;
  e.path = path;
  e.state.type = std::string(kTypeFile);
  e.state.mode = S_IFREG | 0644;
  e.state.mtime_ns = e.time_ns;
  e.state.size = size;
  e.state.chunks = std::move(chunks);
  return e;
}

class VerifyHistoryTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto store = LocalStore::Open(target_dir());
    ASSERT_TRUE(store.ok()) << store.status().ToString();
    store_ = std::move(store).value();
    history::HistoryStore hs(*store_);
    a_ = Store(hs, "a.txt", std::string(5000, 'a'));
    b_ = Store(hs, "b.txt", std::string(3000, 'b'));
    c_ = Store(hs, "c.txt", std::string(7000, 'c'));
    using history::EntryOp;
    history::Entry del;
    del.seq = 6;
    del.time_ns = 6'000'000'000;
    del.op = EntryOp::kDelete;
    del.path = "b.txt";
    // d.txt has a.txt's content: one chunk, needed by two paths.
    for (const history::Segment& s :
         {history::MakeDelta({Put(1, "a.txt", 5000, a_), Put(2, "b.txt", 3000, b_),
                              Put(3, "docs/c.txt", 7000, c_)},
                             0, 1, 3),
          history::MakeDelta({Put(5, "d.txt", 5000, a_), del}, 0, 4, 6)}) {
      auto put = hs.AppendSegment(s);
      ASSERT_TRUE(put.ok()) << put.status().ToString();
    }
  }
  std::vector<history::ChunkRef> Store(history::HistoryStore& hs, const std::string& name,
                                       const std::string& content) {
    UniqueFd fd = WriteFile(data_.path() + "/" + name, content);
    auto chunks = hs.PutChunks(fd.get(), content.size());
    EXPECT_TRUE(chunks.ok()) << chunks.status().ToString();
    EXPECT_EQ(chunks->size(), 1u);
    return *chunks;
  }
  std::string target_dir() const { return target_.path() + "/target"; }
  std::string ChunkFile(const std::vector<history::ChunkRef>& c) const {
    return target_dir() + "/" + history::ChunkKey(c.at(0).sha256);
  }
  CtlRun VerifyCmd(const std::string& flags) {
    return Ctl(flags + " verify --history --target file://" + target_dir(), data_.path());
  }

  TempDir data_, target_;
  std::unique_ptr<LocalStore> store_;
  std::vector<history::ChunkRef> a_, b_, c_;
};

TEST_F(VerifyHistoryTest, CleanHistoryVerifies) {
  for (bool deep : {false, true}) {
    HistoryVerifyConfig config;
    config.deep = deep;
    auto r = VerifyHistory(store_.get(), config);
    ASSERT_TRUE(r.ok()) << r.status().ToString();
    EXPECT_TRUE(r->ok());
    EXPECT_EQ(r->segments, 2u);
    EXPECT_EQ(r->entries, 5u);
    EXPECT_EQ(r->chunks, 3u);
    EXPECT_EQ(r->chunk_bytes, 15000u);
    EXPECT_EQ(r->bytes_hashed, deep ? 15000u : 0u);
    EXPECT_EQ(r->first_seq, 1u);
    EXPECT_EQ(r->last_seq, 6u);
  }
  CtlRun r = VerifyCmd("");
  EXPECT_EQ(r.exit_code, kExitOk) << r.out << r.err;
  EXPECT_NE(r.out.find("OK: every chunk the history references is present with its size"),
            std::string::npos)
      << r.out;
  r = VerifyCmd("--json");
  ASSERT_EQ(r.exit_code, kExitOk) << r.err;
  json j = json::parse(r.out);
  EXPECT_EQ(j["ok"], true);
  EXPECT_EQ(j["chunks"], 3);
  EXPECT_EQ(j["problems"], json::array());
}

TEST_F(VerifyHistoryTest, FindsMissingShortAndCorruptChunks) {
  ASSERT_EQ(unlink(ChunkFile(b_).c_str()), 0);
  ASSERT_EQ(truncate(ChunkFile(c_).c_str(), 100), 0);
  {
    UniqueFd fd(open(ChunkFile(a_).c_str(), O_WRONLY));
    ASSERT_TRUE(fd);
    ASSERT_EQ(pwrite(fd.get(), "X", 1, 4000), 1);  // same size, other content
  }
  HistoryVerifyConfig config;
  auto quick = VerifyHistory(store_.get(), config);
  ASSERT_TRUE(quick.ok()) << quick.status().ToString();
  ASSERT_EQ(quick->problems.size(), 2u);
  for (const HistoryChunkProblem& p : quick->problems) {
    if (p.kind == "missing") {
      EXPECT_EQ(p.key, history::ChunkKey(b_[0].sha256));
      ASSERT_EQ(p.used_by.size(), 1u);
      EXPECT_EQ(p.used_by[0].path, "b.txt");
      EXPECT_EQ(p.used_by[0].seq, 2u);
    } else {
      EXPECT_EQ(p.kind, "size");
      EXPECT_EQ(p.key, history::ChunkKey(c_[0].sha256));
      EXPECT_EQ(p.detail, "size 100, expected 7000");
      ASSERT_EQ(p.used_by.size(), 1u);
      EXPECT_EQ(p.used_by[0].path, "docs/c.txt");
    }
  }
  config.deep = true;
  auto deep = VerifyHistory(store_.get(), config);
  ASSERT_TRUE(deep.ok());
  ASSERT_EQ(deep->problems.size(), 3u);
  const HistoryChunkProblem* corrupt = nullptr;
  for (const HistoryChunkProblem& p : deep->problems)
    if (p.kind == "corrupt") corrupt = &p;
  ASSERT_NE(corrupt, nullptr);
  EXPECT_EQ(corrupt->key, history::ChunkKey(a_[0].sha256));
  EXPECT_EQ(corrupt->uses, 2u);
  ASSERT_EQ(corrupt->used_by.size(), 2u);
  EXPECT_EQ(corrupt->used_by[0].path, "a.txt");
  EXPECT_EQ(corrupt->used_by[0].seq, 1u);
  EXPECT_EQ(corrupt->used_by[1].path, "d.txt");
  EXPECT_EQ(corrupt->used_by[1].seq, 5u);
  EXPECT_EQ(deep->bytes_hashed, 5000u);  // only the chunk with the right size

  // The command: exit 6 (kExitDifferences), the keys and who needs them.
  CtlRun r = VerifyCmd("");
  EXPECT_EQ(r.exit_code, kExitDifferences) << r.out << r.err;
  EXPECT_NE(r.out.find("missing  " + history::ChunkKey(b_[0].sha256) +
                       ": not in the target; needed by b.txt (seq 2)"),
            std::string::npos)
      << r.out;
  EXPECT_NE(r.out.find("size     " + history::ChunkKey(c_[0].sha256) +
                       ": size 100, expected 7000; needed by docs/c.txt (seq 3)"),
            std::string::npos)
      << r.out;
  EXPECT_EQ(r.out.find("\ncorrupt "), std::string::npos) << r.out;
  r = VerifyCmd("--json");
  EXPECT_EQ(r.exit_code, kExitDifferences);
  EXPECT_EQ(json::parse(r.out)["problems"].size(), 2u);
  r = Ctl("--json verify --history --deep --target file://" + target_dir(), data_.path());
  EXPECT_EQ(r.exit_code, kExitDifferences) << r.err;
  json j = json::parse(r.out);
  EXPECT_EQ(j["ok"], false);
  ASSERT_EQ(j["problems"].size(), 3u);
  bool seen = false;
  for (const json& p : j["problems"]) {
    if (p["kind"] != "corrupt") continue;
    seen = true;
    EXPECT_EQ(p["used_by"][1]["path"], "d.txt");
    EXPECT_EQ(p["used_by"][1]["seq"], 5);
  }
  EXPECT_TRUE(seen) << r.out;
}

TEST_F(VerifyHistoryTest, UsageErrors) {
  EXPECT_EQ(
      Ctl("verify --deep --target file://" + target_dir() + " --dir " + data_.path(), data_.path())
          .exit_code,
      kExitUsage);
  EXPECT_EQ(VerifyCmd("--json").exit_code, kExitOk);
  EXPECT_EQ(Ctl("verify --history --quick --target file://" + target_dir(), data_.path()).exit_code,
            kExitUsage);
}

}  // namespace
}  // namespace scribefs::ctl
