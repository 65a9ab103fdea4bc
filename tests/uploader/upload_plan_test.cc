// PlanUpload (uploader/upload_plan.h): every decision the replicator takes
// for one path, as values: no mount, no store, no journal.
#include "uploader/upload_plan.h"

#include <gtest/gtest.h>

#include "uploader/object_layout.h"

namespace scribefs {
namespace {

constexpr uint64_t kMiB = 1 << 20;

struct stat Stat(mode_t mode, uint64_t size = 0, int64_t mtime_ns = 1700000000000000000,
                 ino_t ino = 7) {
  struct stat st {};
  st.st_mode = mode;
  st.st_size = static_cast<off_t>(size);
  st.st_mtim = {time_t(mtime_ns / 1000000000), long(mtime_ns % 1000000000)};
  st.st_ino = ino;
  st.st_uid = 1000;
  st.st_gid = 1000;
  return st;
}

LocalState File(uint64_t size, int64_t mtime_ns = 1700000000000000000, ino_t ino = 7,
                mode_t perm = 0644) {
  LocalState l;
  l.exists = true;
  l.st = l.file_st = Stat(S_IFREG | perm, size, mtime_ns, ino);
  return l;
}

// The index row for what `local` describes, as the replicator records it.
RemoteObject Row(const std::string& path, const LocalState& local, std::string etag = "e1") {
  RemoteObject o;
  o.path = path;
  o.type = ObjectTypeOf(local.st.st_mode);
  o.size = S_ISREG(local.st.st_mode) ? uint64_t(local.file_st.st_size) : local.link_target.size();
  o.mtime_ns = MtimeNs(local.st);
  o.mode = local.st.st_mode;
  o.uid = local.st.st_uid;
  o.gid = local.st.st_gid;
  o.ino = local.st.st_ino;
  o.etag = std::move(etag);
  return o;
}

template <typename T>
const T* StepAt(const UploadPlan& p, size_t i) {
  return i < p.steps.size() ? std::get_if<T>(&p.steps[i]) : nullptr;
}

TEST(UploadPlan, NewSmallFileIsOnePutWithItsMetadata) {
  LocalState l = File(10);
  PathChange c;
  c.content_changed = c.whole = true;
  c.max_seq = 9;
  UploadPlan p = PlanUpload("a/f", l, {}, c, {});
  ASSERT_EQ(p.steps.size(), 1u);
  EXPECT_TRUE(StepAt<plan::PutFile>(p, 0));
  EXPECT_EQ(p.object.path, "a/f");
  EXPECT_EQ(p.object.type, "file");
  EXPECT_EQ(p.object.size, 10u);
  EXPECT_EQ(p.object.seq, 9);
  EXPECT_EQ(p.metadata, EncodeMetadata(l.file_st));
}

TEST(UploadPlan, UnchangedFileIsSkippedAndCounted) {
  LocalState l = File(10);
  RemoteState r;
  r.current = Row("f", l);
  UploadPlan p = PlanUpload("f", l, r, {}, {});
  EXPECT_TRUE(p.steps.empty());
  EXPECT_TRUE(p.skipped_unchanged);
  // A write since the last upload, even one that kept size and mtime: upload.
  PathChange c;
  c.content_changed = true;
  p = PlanUpload("f", l, r, c, {});
  EXPECT_TRUE(StepAt<plan::PutFile>(p, 0));
  // Another inode renamed over the name with the same size and mtime.
  LocalState other = File(10, 1700000000000000000, 8);
  EXPECT_TRUE(StepAt<plan::PutFile>(PlanUpload("f", other, r, {}, {}), 0));
}

TEST(UploadPlan, ModeChangeRewritesMetadataThenFallsBackToUpload) {
  LocalState before = File(10), after = File(10, 1700000000000000000, 7, 0600);
  RemoteState r;
  r.current = Row("f", before, "etag-old");
  UploadPlan p = PlanUpload("f", after, r, {}, {});
  ASSERT_EQ(p.steps.size(), 2u);
  auto* rw = StepAt<plan::RewriteMetadata>(p, 0);
  ASSERT_TRUE(rw);
  EXPECT_EQ(rw->stored.etag, "etag-old");
  EXPECT_TRUE(StepAt<plan::PutFile>(p, 1));
  EXPECT_EQ(p.metadata.at("mode"), std::to_string(S_IFREG | 0600));
}

TEST(UploadPlan, RenameOfUnchangedContentIsAServerSideCopyNewestSourceFirst) {
  LocalState l = File(10);
  RemoteState r;
  r.sources = {Row("old1", l, "e-old1"), std::nullopt, Row("old2", l, "e-old2")};
  PathChange c;
  c.renamed_from = {"old1", "gone", "old2"};
  UploadPlan p = PlanUpload("new", l, r, c, {});
  ASSERT_EQ(p.steps.size(), 3u);
  ASSERT_TRUE(StepAt<plan::CopyFrom>(p, 0));
  EXPECT_EQ(StepAt<plan::CopyFrom>(p, 0)->source.path, "old2");
  EXPECT_EQ(StepAt<plan::CopyFrom>(p, 1)->source.path, "old1");
  EXPECT_TRUE(StepAt<plan::PutFile>(p, 2));
  // Written after the rename, or another inode: no copy.
  c.content_changed = true;
  EXPECT_EQ(PlanUpload("new", l, r, c, {}).steps.size(), 1u);
  c.content_changed = false;
  LocalState other = File(10, 1700000000000000000, 99);
  EXPECT_EQ(PlanUpload("new", other, r, c, {}).steps.size(), 1u);
}

TEST(UploadPlan, LargeFileIsMultipartAndResendsOnlyDirtyParts) {
  PlanOptions o;
  o.part_size = 8 * kMiB;
  LocalState l = File(30 * kMiB);  // 4 parts: 8, 8, 8, 6 MiB
  RemoteState r;
  r.current = Row("big", File(30 * kMiB, 1600000000000000000), "etag-mp");
  r.current->part_size = 8 * kMiB;
  PathChange c;
  c.content_changed = true;
  c.dirty = {{9 * kMiB, 10}};  // inside part 2
  UploadPlan p = PlanUpload("big", l, r, c, o);
  auto* mp = StepAt<plan::Multipart>(p, 0);
  ASSERT_TRUE(mp);
  EXPECT_EQ(mp->part_size, 8 * kMiB);
  EXPECT_EQ(mp->parts, 4u);
  EXPECT_EQ(mp->stored_etag, "etag-mp");
  EXPECT_EQ(mp->copy, (std::vector<bool>{true, false, true, true}));

  // Grown beyond what was stored: the new tail is sent.
  r.current->size = 20 * kMiB;
  p = PlanUpload("big", l, r, c, o);
  EXPECT_EQ(StepAt<plan::Multipart>(p, 0)->copy, (std::vector<bool>{true, false, false, false}));

  // Ranges unknown (whole), or cut differently: everything is sent.
  c.whole = true;
  EXPECT_TRUE(StepAt<plan::Multipart>(PlanUpload("big", l, r, c, o), 0)->stored_etag.empty());
  c.whole = false;
  r.current->part_size = 16 * kMiB;
  EXPECT_TRUE(StepAt<plan::Multipart>(PlanUpload("big", l, r, c, o), 0)->stored_etag.empty());
}

TEST(UploadPlan, PartSizeGrowsToStayWithinTenThousandParts) {
  EXPECT_EQ(PartSizeFor(80000 * kMiB, 8 * kMiB), 8 * kMiB);
  EXPECT_EQ(PartSizeFor(80001 * kMiB, 8 * kMiB), 9 * kMiB);
  EXPECT_LE((100000 * kMiB + PartSizeFor(100000 * kMiB, 8 * kMiB) - 1) /
                PartSizeFor(100000 * kMiB, 8 * kMiB),
            uint64_t(kMaxParts));
}

TEST(UploadPlan, GonePathDeletesWhatWasStoredOrKeepsIt) {
  LocalState gone;
  RemoteState r;
  RemoteObject dir;
  dir.path = "d";
  dir.type = "dir";
  RemoteObject f;
  f.path = "d/f";
  f.type = "file";
  r.subtree = {dir, f};
  UploadPlan p = PlanUpload("d", gone, r, {}, {});
  auto* del = StepAt<plan::Delete>(p, 0);
  ASSERT_TRUE(del);
  EXPECT_TRUE(del->gone);
  EXPECT_EQ(del->keys, (std::vector<std::string>{"d/", "d/f"}));
  EXPECT_EQ(del->erase, (std::vector<std::string>{"d", "d/f"}));
  EXPECT_EQ(del->list_prefix, "d/");  // unrecorded objects below it go too

  PlanOptions keep;
  keep.delete_remote = false;
  p = PlanUpload("d", gone, r, {}, keep);
  EXPECT_TRUE(p.steps.empty());
  EXPECT_FALSE(p.skip_reason.empty());
}

TEST(UploadPlan, GoneUnrecordedPathIsDeletedOnlyWhenSomethingMayBeStored) {
  LocalState gone;
  EXPECT_TRUE(PlanUpload("x", gone, {}, {}, {}).steps.empty());
  PathChange c;
  c.maybe_stored = true;  // e.g. an earlier attempt whose answer was lost
  UploadPlan p = PlanUpload("x", gone, {}, c, {});
  auto* del = StepAt<plan::Delete>(p, 0);
  ASSERT_TRUE(del);
  EXPECT_EQ(del->keys, (std::vector<std::string>{"x", "x/"}));
  EXPECT_TRUE(del->erase.empty());
  EXPECT_TRUE(del->list_prefix.empty());
}

TEST(UploadPlan, TypeChangeDeletesTheOldObjectFirst) {
  LocalState d;
  d.exists = true;
  d.st = Stat(S_IFDIR | 0755);
  RemoteState r;
  r.current = Row("p", File(3));
  r.subtree = {*r.current};
  UploadPlan p = PlanUpload("p", d, r, {}, {});
  ASSERT_EQ(p.steps.size(), 2u);
  auto* del = StepAt<plan::Delete>(p, 0);
  ASSERT_TRUE(del);
  EXPECT_FALSE(del->gone);
  EXPECT_EQ(del->keys, (std::vector<std::string>{"p"}));
  EXPECT_TRUE(StepAt<plan::PutMarker>(p, 1));
  PlanOptions keep;
  keep.delete_remote = false;
  EXPECT_TRUE(StepAt<plan::PutMarker>(PlanUpload("p", d, r, {}, keep), 0));
}

TEST(UploadPlan, DirectoryMarkerOnlyWhenModeOrOwnerChangedAndRenamedChildrenCopied) {
  LocalState d;
  d.exists = true;
  d.st = Stat(S_IFDIR | 0755);
  RemoteState r;
  r.current = Row("d", d);
  // mtime of a directory changes with every entry: not a reason.
  d.st.st_mtim.tv_sec += 100;
  EXPECT_TRUE(PlanUpload("d", d, r, {}, {}).steps.empty());
  PathChange c;
  c.renamed_from = {"first", "older"};
  UploadPlan p = PlanUpload("d", d, r, c, {});
  ASSERT_EQ(p.steps.size(), 1u);
  EXPECT_EQ(StepAt<plan::CopyRenamedChildren>(p, 0)->from, "older");
  d.st.st_mode = S_IFDIR | 0700;
  p = PlanUpload("d", d, r, c, {});
  EXPECT_TRUE(StepAt<plan::PutMarker>(p, 0));
  EXPECT_TRUE(StepAt<plan::CopyRenamedChildren>(p, 1));
}

TEST(UploadPlan, SymlinksAndSpecialFiles) {
  LocalState l;
  l.exists = true;
  l.st = Stat(S_IFLNK | 0777, 6);
  l.link_target = "target";
  UploadPlan p = PlanUpload("l", l, {}, {}, {});
  EXPECT_TRUE(StepAt<plan::PutSymlink>(p, 0));
  EXPECT_EQ(p.object.size, 6u);
  RemoteState r;
  r.current = Row("l", l);
  EXPECT_TRUE(PlanUpload("l", l, r, {}, {}).steps.empty());
  l.link_target = "elsewhere";  // retargeted: size differs
  EXPECT_TRUE(StepAt<plan::PutSymlink>(PlanUpload("l", l, r, {}, {}), 0));

  LocalState fifo;
  fifo.exists = true;
  fifo.st = Stat(S_IFIFO | 0600);
  EXPECT_TRUE(StepAt<plan::PutEmpty>(PlanUpload("p", fifo, {}, {}, {}), 0));
  r.current = Row("p", fifo);
  EXPECT_TRUE(PlanUpload("p", fifo, r, {}, {}).steps.empty());
}

TEST(UploadPlan, ReservedPathsAreNeverTouched) {
  LocalState gone;
  PathChange c;
  c.maybe_stored = true;
  EXPECT_TRUE(PlanUpload(".scribefs/checkpoints/x.json", gone, {}, c, {}).steps.empty());
  EXPECT_TRUE(PlanUpload(".scribefs", File(1), {}, c, {}).steps.empty());
}

}  // namespace
}  // namespace scribefs
