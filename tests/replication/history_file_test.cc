// History in the target (issue 11, uploader/history_recorder.h) on real
// mounts replicating to file://: after `scribectl flush` the target's
// timeline, replayed (history/replay.h) and restored chunk by chunk, equals
// the tree in DATADIR, at the latest instant and at an earlier flush; what a
// change costs in stored bytes; a kill -9 before a segment; --history off.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <map>
#include <string>
#include <thread>
#include <vector>

#include "common/unique_fd.h"
#include "tests/replication/history_check.h"
#include "tests/replication/replication_fixture.h"
#include "uploader/local_store.h"
#include "uploader/object_layout.h"

namespace scribefs::rep {
namespace {

namespace fs = std::filesystem;

class HistoryFile : public ReplicationTest {
 protected:
  std::string target() { return root() + "/target"; }
  void MountHistory(std::vector<std::string> extra = {}) {
    // Segments only at flush and stop: the tests decide when one is written.
    extra.insert(extra.begin(), {"--history-interval", "1h"});
    ASSERT_NO_FATAL_FAILURE(MountWithTarget("file://" + target(), extra));
  }
  std::unique_ptr<LocalStore> Store() {
    auto s = LocalStore::Open(target());
    EXPECT_TRUE(s.ok()) << s.status().message();
    return s.ok() ? std::move(s.value()) : nullptr;
  }
  void ExpectRestores(const history::Instant& at, const Snapshot& want) {
    auto store = Store();
    ASSERT_TRUE(store);
    ASSERT_NO_FATAL_FAILURE(rep::ExpectRestores(*store, at, root() + "/restored.tmp", want));
  }
  // Objects and bytes under target()/.scribefs/<sub>.
  std::pair<uint64_t, uint64_t> Usage(const std::string& sub) {
    uint64_t n = 0, bytes = 0;
    std::string dir = target() + "/.scribefs/" + sub;
    if (!fs::exists(dir)) return {0, 0};
    for (auto& e : fs::recursive_directory_iterator(dir)) {
      if (!e.is_regular_file()) continue;
      ++n;
      bytes += e.file_size();
    }
    return {n, bytes};
  }
};

// Files, directories (empty ones too), symlinks, chmod, overwrite, delete,
// rm -r, renames of files and of a directory with content: the latest
// instant and an earlier flush both restore exactly.
TEST_F(HistoryFile, ReplayAtFlushesEqualsTheTree) {
  ASSERT_NO_FATAL_FAILURE(MountHistory());
  ASSERT_EQ(mkdir(mp("docs").c_str(), 0755), 0);
  ASSERT_EQ(mkdir(mp("docs/sub").c_str(), 0700), 0);
  ASSERT_EQ(mkdir(mp("empty").c_str(), 0755), 0);
  ASSERT_EQ(mkdir(mp("gone").c_str(), 0755), 0);
  ASSERT_TRUE(it::WriteFile(mp("docs/a.txt"), "alpha\n"));
  ASSERT_TRUE(it::WriteFile(mp("docs/sub/b.bin"), RandomBytes(300000, 7)));
  ASSERT_TRUE(it::WriteFile(mp("gone/x"), "x"));
  ASSERT_TRUE(it::WriteFile(mp("top.txt"), "top"));
  ASSERT_TRUE(it::WriteFile(mp("empty.txt"), ""));
  ASSERT_EQ(symlink("docs/a.txt", mp("link").c_str()), 0);
  ASSERT_EQ(chmod(mp("top.txt").c_str(), 0600), 0);
  const int64_t seq1 = CtlFlush();
  ASSERT_GT(seq1, 0);
  const Snapshot first = SnapshotOf(mp());

  ASSERT_EQ(rename(mp("docs").c_str(), mp("papers").c_str()), 0);  // a directory with content
  ASSERT_EQ(rename(mp("top.txt").c_str(), mp("papers/top.txt").c_str()), 0);
  ASSERT_TRUE(it::WriteFile(mp("papers/a.txt"), "alpha, rewritten\n"));
  ASSERT_EQ(unlink(mp("empty.txt").c_str()), 0);
  ASSERT_EQ(unlink(mp("gone/x").c_str()), 0);
  ASSERT_EQ(rmdir(mp("gone").c_str()), 0);
  ASSERT_EQ(chmod(mp("papers/sub").c_str(), 0750), 0);
  ASSERT_EQ(unlink(mp("link").c_str()), 0);
  ASSERT_EQ(symlink("papers/a.txt", mp("link").c_str()), 0);
  ASSERT_EQ(mkdir(mp("empty/deeper").c_str(), 0755), 0);
  const int64_t seq2 = CtlFlush();
  ASSERT_GT(seq2, seq1);
  const Snapshot second = SnapshotOf(mp());

  ASSERT_NO_FATAL_FAILURE(ExpectRestores(history::Instant::Latest(), second));
  ASSERT_NO_FATAL_FAILURE(ExpectRestores(history::Instant::AtSeq(uint64_t(seq1)), first));
  ASSERT_NO_FATAL_FAILURE(ExpectRestores(history::Instant::AtSeq(uint64_t(seq2)), second));
  // The journal notes how far the stored history goes (the bounded journal
  // deletes done records up to it).
  auto j = nlohmann::json::parse(Ctl({"--json", "status"}).out, nullptr, false);
  ASSERT_TRUE(j.is_object());
  EXPECT_EQ(j["daemon"]["history"].value("enabled", false), true) << j.dump();
  EXPECT_GE(j["daemon"]["history"].value("stored_through_seq", int64_t(0)), seq2) << j.dump();
  EXPECT_GT(j["daemon"]["history"].value("segments_written", 0), 0) << j.dump();
}

// A 4 KiB change in a 256 MiB file stores one chunk (one part, 8 MiB) and a
// small segment; 100 identical files store their content once.
TEST_F(HistoryFile, StorageGrowsWithChangedBytes) {
  ASSERT_NO_FATAL_FAILURE(MountHistory());
  {
    std::string part = RandomBytes(8 << 20, 3);
    UniqueFd fd(open(mp("big.bin").c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0644));
    ASSERT_TRUE(fd);
    for (int i = 0; i < 32; ++i) {
      part[0] = char(i);  // 32 different parts
      ASSERT_EQ(pwrite(fd.get(), part.data(), part.size(), off_t(i) << 23), ssize_t(part.size()));
    }
  }
  ASSERT_GT(CtlFlush(), 0);
  auto [chunks1, chunk_bytes1] = Usage("chunks");
  auto [segs1, seg_bytes1] = Usage("timeline");
  EXPECT_EQ(chunks1, 32u);
  {
    UniqueFd fd(open(mp("big.bin").c_str(), O_WRONLY | O_CLOEXEC));
    ASSERT_TRUE(fd);
    std::string page(4096, 'z');
    ASSERT_EQ(pwrite(fd.get(), page.data(), page.size(), 100 << 20), 4096);
  }
  ASSERT_GT(CtlFlush(), 0);
  auto [chunks2, chunk_bytes2] = Usage("chunks");
  auto [segs2, seg_bytes2] = Usage("timeline");
  printf("[ storage  ] chunks +%lu (+%lu bytes), segments +%lu (+%lu bytes)\n",
         (unsigned long)(chunks2 - chunks1), (unsigned long)(chunk_bytes2 - chunk_bytes1),
         (unsigned long)(segs2 - segs1), (unsigned long)(seg_bytes2 - seg_bytes1));
  EXPECT_EQ(chunks2 - chunks1, 1u);
  EXPECT_LE(chunk_bytes2 - chunk_bytes1, uint64_t(8) << 20);
  EXPECT_LE(seg_bytes2 - seg_bytes1, uint64_t(4096));

  ASSERT_EQ(mkdir(mp("same").c_str(), 0755), 0);
  const std::string content = RandomBytes(1 << 20, 11);
  for (int i = 0; i < 100; ++i)
    ASSERT_TRUE(it::WriteFile(mp("same/f" + std::to_string(i)), content));
  ASSERT_GT(CtlFlush(), 0);
  auto [chunks3, chunk_bytes3] = Usage("chunks");
  EXPECT_EQ(chunks3 - chunks2, 1u);
  EXPECT_EQ(chunk_bytes3 - chunk_bytes2, uint64_t(1) << 20);
  ASSERT_NO_FATAL_FAILURE(ExpectRestores(history::Instant::Latest(), SnapshotOf(mp())));
}

// kill -9 after the uploads and before their segment: the next daemon
// stores those paths' entries again, contiguous with the stored history.
TEST_F(HistoryFile, KillBeforeSegmentLeavesNoHole) {
  ASSERT_NO_FATAL_FAILURE(MountHistory());
  ASSERT_TRUE(it::WriteFile(mp("one"), "1"));
  ASSERT_GT(CtlFlush(), 0);
  auto [segs1, bytes1] = Usage("timeline");
  ASSERT_EQ(mkdir(mp("d").c_str(), 0755), 0);
  for (int i = 0; i < 20; ++i)
    ASSERT_TRUE(it::WriteFile(mp("d/f" + std::to_string(i)), "content " + std::to_string(i)));
  ASSERT_EQ(rename(mp("one").c_str(), mp("d/one").c_str()), 0);
  // Uploaded (the records are done), with no segment yet (interval 1h).
  ASSERT_TRUE(Flush(60));
  EXPECT_EQ(Usage("timeline").first, segs1) << "a segment was written before the kill";
  ASSERT_NO_FATAL_FAILURE(KillDaemon());
  // (flush waits for the check after an unclean stop: at once here)
  ASSERT_NO_FATAL_FAILURE(MountHistory({"--crash-check-delay", "0"}));
  ASSERT_TRUE(it::WriteFile(mp("after"), "after the kill"));
  ASSERT_GT(CtlFlush(), 0);
  ASSERT_NO_FATAL_FAILURE(ExpectRestores(history::Instant::Latest(), SnapshotOf(mp())));
}

// A clean stop writes the last segment: after the unmount the target's
// history restores the tree as it was, with no daemon left to write it (the
// stop used to cancel the bandwidth limiter before that segment's PUT, which
// then failed: the next start wrote it).
TEST_F(HistoryFile, ACleanStopStoresTheLastSegment) {
  ASSERT_NO_FATAL_FAILURE(MountHistory());
  ASSERT_EQ(mkdir(mp("d").c_str(), 0755), 0);
  for (int i = 0; i < 10; ++i)
    ASSERT_TRUE(it::WriteFile(mp("d/f" + std::to_string(i)), "content " + std::to_string(i)));
  // Uploaded (the records are done), with no segment yet (interval 1h).
  ASSERT_TRUE(Flush(60));
  auto [segs, bytes] = Usage("timeline");
  Snapshot want = SnapshotOf(mp());
  ASSERT_EQ(Unmount(), 0);
  EXPECT_GT(Usage("timeline").first, segs) << "no segment written at the stop";
  ASSERT_NO_FATAL_FAILURE(ExpectRestores(history::Instant::Latest(), want));
  auto log = it::ReadFile(state("scribefs.log"));
  ASSERT_TRUE(log.has_value());
  EXPECT_EQ(log->find("last segment not stored"), std::string::npos) << *log;
}

// A chunk a prune deleted while the daemon runs is stored again when
// identical content comes back: the daemon's set of known chunks expires (a
// quarter of its --prune-grace), so it does not trust that the chunk is still
// there (docs/history.md, "Chunks and prune"). Without that, the new entry
// names a missing chunk: verify --history fails and the file cannot be
// restored.
TEST_F(HistoryFile, ContentPrunedWhileMountedIsStoredAgain) {
  ASSERT_NO_FATAL_FAILURE(MountHistory({"--prune-grace", "2s", "--prune-interval", "off"}));
  const std::string content = RandomBytes(100000, 21);
  const std::string chunk_file = target() + "/" + history::ChunkKey(Sha256Hex(content));
  ASSERT_TRUE(it::WriteFile(mp("x.bin"), content));
  ASSERT_GT(CtlFlush(), 0);
  ASSERT_TRUE(fs::exists(chunk_file)) << chunk_file;
  ASSERT_EQ(unlink(mp("x.bin").c_str()), 0);
  ASSERT_GT(CtlFlush(), 0);
  // Older than the grace (Last-Modified has a resolution of one second).
  std::this_thread::sleep_for(std::chrono::milliseconds(3200));
  it::RunResult p = Ctl({"--json", "prune", "--retention", "0", "--prune-grace", "2s"});
  ASSERT_EQ(p.exit_code, 0) << p.Describe();
  auto pj = nlohmann::json::parse(p.out, nullptr, false);
  ASSERT_TRUE(pj.is_object()) << p.Describe();
  EXPECT_GE(pj.value("chunks_deleted", 0), 1) << p.out;
  ASSERT_FALSE(fs::exists(chunk_file)) << "the prune left x.bin's chunk: " << p.out;

  ASSERT_TRUE(it::WriteFile(mp("x.bin"), content));  // the same bytes again
  ASSERT_GT(CtlFlush(), 0);
  EXPECT_TRUE(fs::exists(chunk_file)) << "the chunk was not stored again";
  it::RunResult v = Ctl({"verify", "--history", "--deep"});
  EXPECT_EQ(v.exit_code, 0) << v.Describe();
  const std::string to = root() + "/restored-x";
  it::RunResult r = Ctl({"restore", "--at", "now", "--to", to});
  ASSERT_EQ(r.exit_code, 0) << r.Describe();
  EXPECT_EQ(Sha256OfFile(to + "/x.bin"), Sha256Hex(content));
}

// --history off leaves the target exactly as before: no .scribefs keys.
TEST_F(HistoryFile, OffStoresNoHistory) {
  ASSERT_NO_FATAL_FAILURE(MountWithTarget("file://" + target(), {"--history", "off"}));
  ASSERT_TRUE(it::WriteFile(mp("a"), "a"));
  ASSERT_EQ(mkdir(mp("d").c_str(), 0755), 0);
  ASSERT_GT(CtlFlush(), 0);
  EXPECT_TRUE(fs::exists(target() + "/a"));
  EXPECT_FALSE(fs::exists(target() + "/.scribefs/chunks"));
  EXPECT_FALSE(fs::exists(target() + "/.scribefs/timeline"));
  auto j = nlohmann::json::parse(Ctl({"--json", "status"}).out, nullptr, false);
  ASSERT_TRUE(j.is_object());
  EXPECT_EQ(j["daemon"]["history"].value("enabled", true), false) << j.dump();
}

// `status` says how far history goes; /metrics (here its textfile, written
// at the stop) has the same figures.
TEST_F(HistoryFile, StatusAndMetricsShowHistory) {
  const std::string prom = root() + "/scribefs.prom";
  ASSERT_NO_FATAL_FAILURE(MountHistory({"--metrics-file", prom}));
  ASSERT_TRUE(it::WriteFile(mp("a"), RandomBytes(100000, 3)));
  ASSERT_GT(CtlFlush(), 0);
  // The same content (after a's upload: two at once may both upload it).
  ASSERT_TRUE(it::WriteFile(mp("b"), RandomBytes(100000, 3)));
  const int64_t seq = CtlFlush();
  ASSERT_GT(seq, 0);
  it::RunResult st = Ctl({"status"});
  EXPECT_NE(st.out.find("history:"), std::string::npos) << st.out;
  EXPECT_NE(st.out.find("stored through record " + std::to_string(seq)), std::string::npos)
      << st.out;
  // b's content was stored with a: one chunk uploaded. "Already stored" is
  // at least b's; a path looked at twice (its records committed in two
  // groups, under load) counts again without uploading anything (CI).
  EXPECT_NE(st.out.find("1 chunks (97.7 KiB) uploaded, "), std::string::npos) << st.out;
  EXPECT_EQ(st.out.find("uploaded, 0 already stored"), std::string::npos) << st.out;
  ASSERT_EQ(Unmount(), 0);
  auto text = it::ReadFile(prom);
  ASSERT_TRUE(text.has_value());
  auto sample = [&](const std::string& name) -> int64_t {
    size_t at = text->find("\n" + name + " ");
    return at == std::string::npos ? -1 : atoll(text->c_str() + at + name.size() + 2);
  };
  EXPECT_GE(sample("scribefs_history_stored_through_seq"), seq) << *text;
  EXPECT_GE(sample("scribefs_history_segments_written_total"), 1) << *text;
  EXPECT_EQ(sample("scribefs_history_chunks_uploaded_total"), 1) << *text;
  EXPECT_EQ(sample("scribefs_history_chunk_bytes_uploaded_total"), 100000) << *text;
  EXPECT_GE(sample("scribefs_history_chunks_already_stored_total"), 1) << *text;
  EXPECT_EQ(sample("scribefs_history_loaded"), 1) << *text;
}

// Without a target the options are refused.
TEST_F(HistoryFile, OptionsNeedATarget) {
  Options o;
  o.args = {"--history", "on"};
  it::RunResult r = StartDaemon(o);
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.err.find("--history"), std::string::npos) << r.Describe();
}

}  // namespace
}  // namespace scribefs::rep
