// ParseScaled: the number-with-unit shape every duration and size option shares.
#include "common/units.h"

#include <gtest/gtest.h>

namespace scribefs {
namespace {

constexpr UnitScale kUnits[] = {{"", 1}, {"s", 1}, {"ms", 1e-3}, {"MiB", 1048576}};

TEST(ParseScaled, NumberTimesTheScaleOfItsUnit) {
  EXPECT_EQ(ParseScaled("3", kUnits), 3.0);
  EXPECT_EQ(ParseScaled("2.5s", kUnits), 2.5);
  EXPECT_EQ(ParseScaled(".5s", kUnits), 0.5);
  EXPECT_EQ(ParseScaled("250ms", kUnits), 0.25);
  EXPECT_EQ(ParseScaled("2MiB", kUnits), 2097152.0);
  EXPECT_EQ(ParseScaled("2mib", kUnits, /*ignore_case=*/true), 2097152.0);
}

TEST(ParseScaled, OtherShapesAreRefused) {
  for (const char* bad : {"", "s", "2mib", "2 s", " 2s", "+2s", "-2s", "inf", "nan", "2x", "2ss"})
    EXPECT_EQ(ParseScaled(bad, kUnits), std::nullopt) << bad;
}

}  // namespace
}  // namespace scribefs
