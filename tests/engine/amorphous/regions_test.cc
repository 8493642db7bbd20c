// PaintRegions against closed forms: disks of known radius.
#include "engine/amorphous/regions.h"

#include <cmath>
#include <numbers>

#include <random>

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <opencv2/imgproc.hpp>

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

// The definition, independently of the distance transforms: paint digital
// disks, dilate then erode with a digital Euclidean disk on a canvas padded
// far beyond both radii (so that the frame's edge plays no part).
cv::Mat ClosingByDefinition(int width, int height, const std::vector<PointXY>& atoms, double r,
                            double c) {
  const int pad = static_cast<int>(std::ceil(r + 2 * c)) + 4;
  cv::Mat big = cv::Mat::zeros(height + 2 * pad, width + 2 * pad, CV_8U);
  const int ri = static_cast<int>(std::ceil(r));
  for (const PointXY& a : atoms) {
    const int cx = static_cast<int>(std::lround(a.x)) + pad;
    const int cy = static_cast<int>(std::lround(a.y)) + pad;
    for (int dy = -ri; dy <= ri; ++dy)
      for (int dx = -ri; dx <= ri; ++dx)
        if (dx * dx + dy * dy <= r * r) big.at<uint8_t>(cy + dy, cx + dx) = 255;
  }
  const int ci = static_cast<int>(std::ceil(c));
  cv::Mat disk = cv::Mat::zeros(2 * ci + 1, 2 * ci + 1, CV_8U);
  for (int dy = -ci; dy <= ci; ++dy)
    for (int dx = -ci; dx <= ci; ++dx)
      if (dx * dx + dy * dy <= c * c) disk.at<uint8_t>(dy + ci, dx + ci) = 1;
  cv::morphologyEx(big, big, cv::MORPH_CLOSE, disk, cv::Point(-1, -1), 1, cv::BORDER_CONSTANT,
                   cv::Scalar(0));
  return big(cv::Rect(pad, pad, width, height)).clone();
}

TEST(RegionsTest, ClosingMatchesTheMorphologicalDefinition) {
  // Distance transforms and morphology compute the same closing: pixel for
  // pixel, also for atoms just outside the frame.
  std::mt19937 rng(7);
  std::uniform_real_distribution<double> x(-5.0, 245.0), y(-5.0, 165.0);
  for (const auto& [r, c] : {std::pair{4.0, 4.0}, std::pair{7.5, 12.0}, std::pair{10.0, 20.0}}) {
    std::vector<PointXY> atoms;
    for (int i = 0; i < 40; ++i) atoms.push_back({x(rng), y(rng)});
    absl::StatusOr<RegionSet> s =
        PaintRegions(240, 160, atoms, {.radius_px = r, .closing_radius_px = c});
    ASSERT_TRUE(s.ok()) << s.status();
    const cv::Mat truth = ClosingByDefinition(240, 160, atoms, r, c);
    EXPECT_EQ(cv::countNonZero(s->mask != truth), 0) << "r " << r << " c " << c;
  }
}

TEST(RegionsTest, ClosingFillsTheHoleOfARingAndIgnoresTheFrameEdge) {
  // Twelve atoms on a circle of radius 30, 15.7 px apart, disks of 5: the
  // closing with 12 px bridges the 5.7 px gaps into one ring; its hole, 50 px
  // across, is wider than the closing disk (24 px) and stays open.
  std::vector<PointXY> ring;
  for (int i = 0; i < 12; ++i) {
    const double t = 2 * std::numbers::pi * i / 12;
    ring.push_back({100 + 30 * std::cos(t), 60 + 30 * std::sin(t)});
  }
  absl::StatusOr<RegionSet> s =
      PaintRegions(200, 120, ring, {.radius_px = 5, .closing_radius_px = 12});
  ASSERT_TRUE(s.ok()) << s.status();
  ASSERT_EQ(s->regions.size(), 1u);
  EXPECT_EQ(s->mask.at<uint8_t>(60, 100), 0);    // the hole is wider than the disk: kept
  EXPECT_EQ(s->mask.at<uint8_t>(60, 130), 255);  // on the ring
  // An atom 3 px from the left edge: a disk cut by the edge, not a band
  // glued to it.
  absl::StatusOr<RegionSet> edge = PaintRegions(200, 120, std::vector<PointXY>{{3, 60}},
                                                {.radius_px = 10, .closing_radius_px = 20});
  ASSERT_TRUE(edge.ok()) << edge.status();
  EXPECT_EQ(edge->mask.at<uint8_t>(60, 0), 255);
  EXPECT_EQ(edge->mask.at<uint8_t>(40, 0), 0);
  EXPECT_EQ(edge->mask.at<uint8_t>(80, 0), 0);
}

TEST(RegionsTest, BadInputNamesTheProblem) {
  EXPECT_THAT(std::string(PaintRegions(10, 10, {}, {.radius_px = 0}).status().message()),
              testing::HasSubstr("radius_px"));
  EXPECT_FALSE(PaintRegions(0, 10, {}, {}).ok());
}

}  // namespace
}  // namespace logstar

namespace logstar {
namespace {

// DropRegions removes exactly the flagged components, holes and all.
TEST(RegionsTest, DropRegionsRemovesTheFlaggedOnes) {
  cv::Mat mask = cv::Mat::zeros(100, 100, CV_8U);
  cv::rectangle(mask, cv::Rect(5, 5, 20, 10), cv::Scalar(255), cv::FILLED);    // 200 px
  cv::rectangle(mask, cv::Rect(50, 50, 30, 30), cv::Scalar(255), cv::FILLED);  // 900 px
  const RegionSet set = DescribeRegions(mask).value();
  ASSERT_EQ(set.regions.size(), 2u);
  std::vector<bool> keep(2);
  for (size_t k = 0; k < 2; ++k) keep[k] = set.regions[k].area_px2 > 500;
  const RegionSet kept = DropRegions(set, keep).value();
  ASSERT_EQ(kept.regions.size(), 1u);
  EXPECT_EQ(kept.regions[0].area_px2, 900);
  EXPECT_EQ(cv::countNonZero(kept.mask), 900);
  EXPECT_DOUBLE_EQ(kept.area_fraction, 0.09);
  EXPECT_FALSE(DropRegions(set, {true}).ok());
}

}  // namespace
}  // namespace logstar
