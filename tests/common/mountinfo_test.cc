// The mountinfo reader: field positions with and without optional fields,
// the \ooo escapes, malformed lines, and the topmost of stacked mounts.
#include "common/mountinfo.h"

#include <gtest/gtest.h>

namespace scribefs {
namespace {

TEST(MountInfoTest, ParsesFieldsAfterOptionalFields) {
  auto m = ParseMountInfo(
      "22 1 8:1 / / rw,relatime shared:1 master:2 - ext4 /dev/sda1 rw\n"
      "40 22 0:52 / /srv/data rw,nosuid,nodev - fuse.scribefs /srv/data rw,user_id=0\n");
  ASSERT_EQ(m.size(), 2u);
  EXPECT_EQ(m[0].majmin, "8:1");
  EXPECT_EQ(m[0].mountpoint, "/");
  EXPECT_EQ(m[0].fstype, "ext4");
  EXPECT_EQ(m[0].source, "/dev/sda1");
  EXPECT_EQ(m[1].majmin, "0:52");
  EXPECT_EQ(m[1].root, "/");
  EXPECT_EQ(m[1].mountpoint, "/srv/data");
  EXPECT_EQ(m[1].fstype, "fuse.scribefs");
  EXPECT_EQ(m[1].source, "/srv/data");
}

// A mount point with a space, a tab, a newline and a backslash: the kernel
// writes them as \040 \011 \012 \134; a reader that splits on spaces without
// unescaping never finds such a mount.
TEST(MountInfoTest, UnescapesOctalEscapes) {
  auto m = ParseMountInfo(
      "41 22 0:53 / /srv/my\\040data\\011x\\012y\\134z rw - fuse.scribefs /srv/my_data rw\n");
  ASSERT_EQ(m.size(), 1u);
  EXPECT_EQ(m[0].mountpoint, "/srv/my data\tx\ny\\z");
  EXPECT_NE(ScribefsMountAt(m, "/srv/my data\tx\ny\\z"), nullptr);
  EXPECT_EQ(ScribefsMountAt(m, "/srv/my\\040data\\011x\\012y\\134z"), nullptr);
}

TEST(MountInfoTest, BackslashNotFollowedByOctalIsKept) {
  auto m = ParseMountInfo("41 22 0:53 / /a\\9b\\ rw - tmpfs x\\ rw\n");
  ASSERT_EQ(m.size(), 1u);
  EXPECT_EQ(m[0].mountpoint, "/a\\9b\\");
  EXPECT_EQ(m[0].source, "x\\");
}

TEST(MountInfoTest, SkipsMalformedLinesAndAnEmptyText) {
  EXPECT_TRUE(ParseMountInfo("").empty());
  auto m = ParseMountInfo(
      "garbage\n"
      "1 2 3 - ext4\n"              // too few fields on both sides
      "22 1 8:1 / / rw - ext4 /dev/sda1 rw");  // last line without newline
  ASSERT_EQ(m.size(), 1u);
  EXPECT_EQ(m[0].source, "/dev/sda1");
}

TEST(MountInfoTest, TopmostOfStackedMountsAndOnlyScribefs) {
  auto m = ParseMountInfo(
      "40 22 0:52 / /srv/data rw - fuse.scribefs /srv/data rw\n"
      "50 40 0:60 / /srv/data rw - fuse.scribefs /srv/data rw\n"
      "51 22 0:61 / /srv/other rw - fuse.sshfs host: rw\n");
  const MountEntry* top = ScribefsMountAt(m, "/srv/data");
  ASSERT_NE(top, nullptr);
  EXPECT_EQ(top->majmin, "0:60");
  EXPECT_EQ(ScribefsMountAt(m, "/srv/other"), nullptr);
  EXPECT_EQ(ScribefsMounts(m).size(), 2u);
}

TEST(MountInfoTest, ReadsThisProcessesMounts) {
  auto m = ReadMountInfo();
  bool root = false;
  for (const MountEntry& e : m) root = root || e.mountpoint == "/";
  EXPECT_TRUE(root) << "no entry for / in /proc/self/mountinfo";
}

}  // namespace
}  // namespace scribefs
