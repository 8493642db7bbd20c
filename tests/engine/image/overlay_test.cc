// RenderAmorphousOverlay: colours and outlines where they were asked for,
// checked on the pixels.
#include "engine/image/overlay.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <opencv2/core.hpp>

namespace logstar {
namespace {

cv::Vec3b At(const cv::Mat& bgr, int x, int y) { return bgr.at<cv::Vec3b>(y, x); }

TEST(OverlayTest, AmorphousBlobsAreMagentaAndOutlinesYellow) {
  const cv::Mat frame(512, 512, CV_32F, cv::Scalar(0.0f));  // black: zoom 1
  const std::vector<Blob> blobs = {{.x = 100, .y = 100, .sigma = 7.07},
                                   {.x = 300, .y = 100, .sigma = 7.07}};
  AmorphousMarks marks;
  marks.amorphous = {false, true};
  marks.outlines = {{{50, 300}, {150, 300}, {150, 400}, {50, 400}}};
  absl::StatusOr<cv::Mat> picture =
      RenderAmorphousOverlay(frame, blobs, marks, {.draw_centers = false});
  ASSERT_TRUE(picture.ok()) << picture.status();
  ASSERT_EQ(picture->type(), CV_8UC3);
  // Circle radius sigma sqrt 2 = 10 px: the topmost point of each circle.
  const cv::Vec3b crystal = At(*picture, 100, 90), amorphous = At(*picture, 300, 90);
  EXPECT_GT(crystal[1], 100);  // green
  EXPECT_LT(crystal[0], 60);
  EXPECT_GT(amorphous[0], 100);  // magenta: blue and red, no green
  EXPECT_GT(amorphous[2], 100);
  EXPECT_LT(amorphous[1], 60);
  const cv::Vec3b edge = At(*picture, 100, 300);  // on the outline's top side
  EXPECT_GT(edge[1], 100);                        // yellow: green and red
  EXPECT_GT(edge[2], 100);
  EXPECT_LT(edge[0], 60);
  EXPECT_EQ(At(*picture, 100, 350), cv::Vec3b(0, 0, 0));  // inside: not filled
}

// Pixels of `bgr` in `r` of the hue of `colour` (a red-green mix without
// blue, as yellow and orange are: the ratio green / red within 0.15 of
// `colour`'s), at any brightness from anti-aliasing.
int CountNear(const cv::Mat& bgr, const cv::Rect& r, const cv::Vec3b& colour) {
  const double want = static_cast<double>(colour[1]) / colour[2];
  int n = 0;
  for (int y = r.y; y < r.y + r.height; ++y) {
    for (int x = r.x; x < r.x + r.width; ++x) {
      const cv::Vec3b p = At(bgr, x, y);
      n += p[2] > 40 && p[0] < 0.2 * p[2] &&
           std::abs(static_cast<double>(p[1]) / p[2] - want) < 0.15;
    }
  }
  return n;
}

// An uncertain verdict: the outline is dashed and orange, the banner says
// so even without any outline, and region ids are written by the outlines.
TEST(OverlayTest, UncertainRegionsAreDashedOrangeUnderABanner) {
  const cv::Mat frame(512, 512, CV_32F, cv::Scalar(0.0f));  // black: zoom 1
  const cv::Vec3b orange(0, 140, 255), yellow(0, 230, 255);
  AmorphousMarks marks;
  marks.outlines = {{{50, 300}, {250, 300}, {250, 400}, {50, 400}}};
  marks.ids = {4};
  const cv::Rect top_edge(60, 299, 181, 3), banner(0, 0, 512, 22), label(45, 280, 40, 18);
  const cv::Mat sure = RenderAmorphousOverlay(frame, {}, marks, {}).value();
  EXPECT_GT(CountNear(sure, top_edge, yellow), 150);
  EXPECT_EQ(cv::countNonZero(sure(banner).reshape(1)), 0);
  EXPECT_GT(CountNear(sure, label, yellow), 10);  // "#4" above the outline

  marks.uncertain = true;
  marks.uncertain_label = "below_resolution";
  const cv::Mat unsure = RenderAmorphousOverlay(frame, {}, marks, {}).value();
  EXPECT_EQ(CountNear(unsure, top_edge, yellow), 0);
  // Dashes as long as gaps: about half of the edge's 181 columns are drawn.
  std::vector<bool> drawn(181);
  for (int x = 0; x < 181; ++x) drawn[x] = CountNear(unsure, {60 + x, 299, 1, 3}, orange) > 0;
  const int on = static_cast<int>(std::count(drawn.begin(), drawn.end(), true));
  EXPECT_GT(on, 60);
  EXPECT_LT(on, 125);
  EXPECT_GT(CountNear(unsure, banner, orange), 50);
  EXPECT_GT(CountNear(unsure, label, orange), 10);

  // No region, uncertain: still the banner.
  const cv::Mat empty = RenderAmorphousOverlay(frame, {},
                                               AmorphousMarks{.amorphous = {},
                                                              .outlines = {},
                                                              .ids = {},
                                                              .uncertain = true,
                                                              .uncertain_label = "not_run"},
                                               {})
                            .value();
  EXPECT_GT(CountNear(empty, banner, orange), 50);
  // One id per outline or none.
  marks.ids = {1, 2};
  EXPECT_FALSE(RenderAmorphousOverlay(frame, {}, marks, {}).ok());
}

TEST(OverlayTest, FlagCountMustMatchTheBlobs) {
  const cv::Mat frame(64, 64, CV_32F, cv::Scalar(0.5f));
  const std::vector<Blob> blobs = {{.x = 10, .y = 10, .sigma = 2}};
  AmorphousMarks marks;
  marks.amorphous = {true, false};
  absl::StatusOr<cv::Mat> picture = RenderAmorphousOverlay(frame, blobs, marks, {});
  EXPECT_THAT(std::string(picture.status().message()), testing::HasSubstr("2 amorphous flags"));
  EXPECT_TRUE(RenderAmorphousOverlay(frame, blobs, AmorphousMarks{}, {}).ok());
}

// With Gaussian fits: a fitted column is drawn as its fit's ellipse
// (semi-axes sigma·√2 along its rotation), a failed fit as an orange cross
// over the blob's circle, and the legend lists the failure.
TEST(OverlayTest, GaussianFitsDrawTheirEllipseOrAFailure) {
  const cv::Mat frame(512, 512, CV_32F, cv::Scalar(0.0f));  // black: zoom 1
  const std::vector<Blob> blobs = {{.x = 100, .y = 100, .sigma = 5},
                                   {.x = 300, .y = 100, .sigma = 5}};
  // Semi-axes 20 px along x and 5 px along y (sigma·√2).
  ColumnFit elongated;
  elongated.sigma_x = 20.0 / std::sqrt(2.0);
  elongated.sigma_y = 5.0 / std::sqrt(2.0);
  ColumnFit wandered;
  wandered.status = ColumnFitStatus::kWandered;
  OverlayOptions options{.draw_centers = false};
  options.fits = {elongated, wandered};
  absl::StatusOr<cv::Mat> picture = RenderBlobOverlay(frame, blobs, options);
  ASSERT_TRUE(picture.ok()) << picture.status();
  auto green = [](const cv::Vec3b& v) { return v[1] > 100 && v[0] < 60 && v[2] < 100; };
  EXPECT_TRUE(green(At(*picture, 120, 100)));  // the major axis' ends
  EXPECT_TRUE(green(At(*picture, 80, 100)));
  EXPECT_TRUE(green(At(*picture, 100, 95)));  // the minor axis' end
  // Where the blob's circle (radius 7.07) would be, along y: nothing.
  EXPECT_EQ(At(*picture, 100, 93), cv::Vec3b(0, 0, 0));
  // The failed fit: its circle, and the cross's arms out to sigma = 5 px.
  EXPECT_TRUE(green(At(*picture, 300, 93)));
  // Orange (red, some green, no blue) pixels within 5 px of each centre:
  // the cross's two diagonals on the failed fit, none on the good one.
  auto orange_near = [&](int x, int y) {
    int n = 0;
    for (int dy = -5; dy <= 5; ++dy) {
      for (int dx = -5; dx <= 5; ++dx) {
        const cv::Vec3b v = At(*picture, x + dx, y + dy);
        n += v[2] > 100 && v[1] > 50 && v[0] < 40;
      }
    }
    return n;
  };
  EXPECT_GE(orange_near(300, 100), 12);
  EXPECT_EQ(orange_near(100, 100), 0);
  // The legend (footer) shows the failure's swatch; without a failure, not.
  options.footer = true;
  picture = RenderBlobOverlay(frame, blobs, options);
  ASSERT_TRUE(picture.ok()) << picture.status();
  auto orange_in_footer = [](const cv::Mat& bgr) {
    cv::Mat footer = bgr(cv::Rect(0, 512, bgr.cols, bgr.rows - 512));
    cv::Mat mask;
    cv::inRange(footer, cv::Scalar(0, 160, 250), cv::Scalar(5, 170, 255), mask);
    return cv::countNonZero(mask);
  };
  EXPECT_GE(orange_in_footer(*picture), 100);  // a 12 x 10 swatch
  options.fits = {elongated, elongated};
  picture = RenderBlobOverlay(frame, blobs, options);
  ASSERT_TRUE(picture.ok()) << picture.status();
  EXPECT_EQ(orange_in_footer(*picture), 0);
  // One fit per blob, or none.
  options.fits = {elongated};
  picture = RenderBlobOverlay(frame, blobs, options);
  EXPECT_THAT(std::string(picture.status().message()), testing::HasSubstr("1 fits for 2 blobs"));
}

// Each sublattice in its own colour, unassigned atoms in the ordinary green,
// an amorphous atom magenta whatever its label; the legend only with names.
TEST(OverlayTest, SublatticesInTheirOwnColours) {
  const cv::Mat frame(512, 512, CV_32F, cv::Scalar(0.0f));  // black: zoom 1
  const std::vector<Blob> blobs = {{.x = 100, .y = 100, .sigma = 7.07},
                                   {.x = 200, .y = 100, .sigma = 7.07},
                                   {.x = 300, .y = 100, .sigma = 7.07},
                                   {.x = 400, .y = 100, .sigma = 7.07}};
  AmorphousMarks amorphous;
  amorphous.amorphous = {false, false, false, true};
  const SublatticeMarks marks{.labels = {0, 1, -1, 0}, .names = {"Sr", "Ti-O"}};
  const cv::Mat picture =
      RenderOverlay(frame, blobs, amorphous, marks, {.draw_centers = false}).value();
  // The topmost point of each circle (radius sigma sqrt 2 = 10 px).
  const cv::Vec3b sr = At(picture, 100, 90), ti = At(picture, 200, 90), none = At(picture, 300, 90),
                  glass = At(picture, 400, 90);
  EXPECT_GT(sr[0], 150);  // cyan: blue and green, no red
  EXPECT_GT(sr[1], 150);
  EXPECT_LT(sr[2], 60);
  EXPECT_GT(ti[0], 150);  // blue: much less green than cyan, no red
  EXPECT_LT(ti[1], 0.6 * ti[0]);
  EXPECT_LT(ti[2], 60);
  EXPECT_GT(none[1], 100);  // the ordinary green
  EXPECT_LT(none[0], 100);
  EXPECT_GT(glass[0], 100);  // magenta
  EXPECT_GT(glass[2], 100);
  EXPECT_LT(glass[1], 60);
  // The palette is the documented one and repeats after four.
  EXPECT_EQ(SublatticeColour(0), cv::Scalar(255, 255, 0));
  EXPECT_EQ(SublatticeColour(1), cv::Scalar(255, 100, 0));
  EXPECT_EQ(SublatticeColour(4), SublatticeColour(0));

  // The legend: both colours in the bottom-left corner, and nothing there
  // without names.
  const cv::Rect corner(0, 512 - 60, 120, 60);
  auto count = [&](const cv::Mat& bgr, const cv::Vec3b& colour) {
    int n = 0;
    for (int y = corner.y; y < corner.y + corner.height; ++y)
      for (int x = corner.x; x < corner.x + corner.width; ++x)
        n += cv::norm(At(bgr, x, y), colour, cv::NORM_L1) < 40;
    return n;
  };
  EXPECT_GT(count(picture, cv::Vec3b(255, 255, 0)), 20);
  EXPECT_GT(count(picture, cv::Vec3b(255, 100, 0)), 20);
  const cv::Mat unnamed =
      RenderOverlay(frame, blobs, amorphous, {.labels = {0, 1, -1, 0}, .names = {}}, {}).value();
  EXPECT_EQ(cv::countNonZero(unnamed(corner).reshape(1)), 0);
}

TEST(OverlayTest, SublatticeLabelsMustFitTheBlobsAndNames) {
  const cv::Mat frame(64, 64, CV_32F, cv::Scalar(0.5f));
  const std::vector<Blob> blobs = {{.x = 10, .y = 10, .sigma = 2}, {.x = 30, .y = 30, .sigma = 2}};
  absl::StatusOr<cv::Mat> picture =
      RenderOverlay(frame, blobs, {}, {.labels = {0}, .names = {}}, {});
  EXPECT_THAT(std::string(picture.status().message()),
              testing::HasSubstr("1 sublattice labels for 2 blobs"));
  picture = RenderOverlay(frame, blobs, {}, {.labels = {0, 2}, .names = {"A", "B"}}, {});
  EXPECT_THAT(std::string(picture.status().message()), testing::HasSubstr("sublattice label 2"));
  picture = RenderOverlay(frame, blobs, {}, {.labels = {0, -2}, .names = {}}, {});
  EXPECT_FALSE(picture.ok());
  EXPECT_TRUE(RenderOverlay(frame, blobs, {}, {.labels = {0, -1}, .names = {"A", "B"}}, {}).ok());
  // Without marks it is the plain overlay, pixel for pixel.
  const cv::Mat plain = RenderBlobOverlay(frame, blobs, {}).value();
  const cv::Mat none = RenderOverlay(frame, blobs, {}, {}, {}).value();
  EXPECT_EQ(cv::norm(plain, none, cv::NORM_INF), 0.0);
}

}  // namespace
}  // namespace logstar
