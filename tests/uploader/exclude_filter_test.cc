#include "uploader/exclude_filter.h"

#include <gtest/gtest.h>

namespace scribefs {
namespace {

TEST(ExcludeFilterTest, DefaultsMatchEditorFilesAnywhere) {
  ExcludeFilter f(DefaultExcludes());
  EXPECT_TRUE(f.Excluded("a.swp"));
  EXPECT_TRUE(f.Excluded("dir/sub/.a.txt.swp"));
  EXPECT_TRUE(f.Excluded("notes~"));
  EXPECT_TRUE(f.Excluded("d/.#lock"));
  EXPECT_FALSE(f.Excluded("a.txt"));
  EXPECT_FALSE(f.Excluded("swp/a.txt"));
}

TEST(ExcludeFilterTest, ReservedDirectoryAlwaysExcluded) {
  ExcludeFilter none;
  EXPECT_TRUE(none.Excluded(".scribefs"));
  EXPECT_TRUE(none.Excluded(".scribefs/checkpoints/x.json"));
  EXPECT_FALSE(none.Excluded(".scribefsx"));
  EXPECT_FALSE(none.Excluded("a/.scribefs"));
}

TEST(ExcludeFilterTest, WholePathPatternsStayWithinComponents) {
  ExcludeFilter f({"logs/*.tmp"});
  EXPECT_TRUE(f.Excluded("logs/a.tmp"));
  EXPECT_FALSE(f.Excluded("logs/sub/a.tmp"));
  EXPECT_FALSE(f.Excluded("a.tmp"));
}

TEST(ExcludeFilterTest, EverythingBelowAnExcludedDirectory) {
  ExcludeFilter f({"cache", "build/out"});
  EXPECT_TRUE(f.Excluded("cache"));
  EXPECT_TRUE(f.Excluded("cache/x"));
  EXPECT_TRUE(f.Excluded("a/cache/y/z"));
  EXPECT_TRUE(f.Excluded("build/out/bin"));
  EXPECT_FALSE(f.Excluded("build/output"));
  EXPECT_FALSE(f.Excluded("cached/x"));
}

}  // namespace
}  // namespace scribefs
