// PaintRegions against closed forms: disks of known radius.
#include "engine/regions.h"

#include <cmath>
#include <numbers>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace logstar {
namespace {

TEST(RegionsTest, OneDiskHasTheDiskAreaAndPerimeter) {
  const double r = 20.0;
  absl::StatusOr<RegionSet> s = PaintRegions(200, 150, std::vector<PointXY>{{100, 70}},
                                             {.radius_px = r, .closing_radius_px = 0});
  ASSERT_TRUE(s.ok()) << s.status();
  ASSERT_EQ(s->regions.size(), 1u);
  const Region& g = s->regions[0];
  EXPECT_NEAR(g.area_px2, std::numbers::pi * r * r, 0.03 * std::numbers::pi * r * r);
  // The contour runs through boundary pixel centres: about 2 π (r - 0.5), a
  // little more for the staircase.
  EXPECT_NEAR(g.perimeter_px, 2 * std::numbers::pi * r, 0.08 * 2 * std::numbers::pi * r);
  EXPECT_NEAR(g.centroid.x, 100, 0.5);
  EXPECT_NEAR(g.centroid.y, 70, 0.5);
  EXPECT_EQ(g.bbox.col0, 80);
  EXPECT_EQ(g.bbox.cols, 41);
  EXPECT_NEAR(s->isoperimetric, 1.0, 0.15);
  EXPECT_NEAR(s->area_fraction, g.area_px2 / (200.0 * 150.0), 1e-12);
  EXPECT_EQ(cv::countNonZero(s->mask), static_cast<int>(g.area_px2));
}

TEST(RegionsTest, ClosingJoinsNeighboursAndSeparateDisksStaySeparate) {
  const std::vector<PointXY> pair = {{50, 50}, {75, 50}};  // 25 px apart, radius 10: a gap of 5
  const std::vector<PointXY> far = {{50, 50}, {150, 50}};
  EXPECT_EQ(PaintRegions(200, 100, pair, {.radius_px = 10, .closing_radius_px = 0})->regions.size(),
            2u);
  EXPECT_EQ(
      PaintRegions(200, 100, pair, {.radius_px = 10, .closing_radius_px = 10})->regions.size(), 1u);
  absl::StatusOr<RegionSet> two =
      PaintRegions(200, 100, far, {.radius_px = 10, .closing_radius_px = 10});
  ASSERT_EQ(two->regions.size(), 2u);
  // Two equal disks: half the quotient of one.
  EXPECT_NEAR(two->isoperimetric, 0.5, 0.1);
  EXPECT_TRUE(PaintRegions(200, 100, {}, {})->regions.empty());
  EXPECT_EQ(PaintRegions(200, 100, {}, {})->isoperimetric, 0.0);
}

TEST(RegionsTest, BadInputNamesTheProblem) {
  EXPECT_THAT(std::string(PaintRegions(10, 10, {}, {.radius_px = 0}).status().message()),
              testing::HasSubstr("radius_px"));
  EXPECT_FALSE(PaintRegions(0, 10, {}, {}).ok());
}

}  // namespace
}  // namespace logstar
