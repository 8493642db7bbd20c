#include "engine/log/refine.h"

#include <cmath>
#include <random>
#include <vector>

#include <opencv2/core.hpp>

#include "absl/status/status.h"
#include "engine/log/log_detector.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace logstar {
namespace {

using ::testing::HasSubstr;

// Gaussian columns of width `s` at the given sub-pixel centres on a sloped
// background, plus Gaussian noise of std `noise`.
cv::Mat Columns(const std::vector<std::pair<double, double>>& centres, double s, double noise,
                uint32_t seed) {
  cv::Mat m(96, 96, CV_32F);
  std::mt19937 rng(seed);
  std::normal_distribution<double> n(0.0, noise);
  for (int y = 0; y < m.rows; ++y) {
    for (int x = 0; x < m.cols; ++x) {
      double v = 0.1 + 0.002 * x;
      for (auto [cx, cy] : centres) {
        v += std::exp(-((x - cx) * (x - cx) + (y - cy) * (y - cy)) / (2 * s * s));
      }
      m.at<float>(y, x) = static_cast<float>(v + (noise > 0 ? n(rng) : 0.0));
    }
  }
  return m;
}

TEST(RefineTest, RecoversSubPixelCentresWithoutNoise) {
  const std::vector<std::pair<double, double>> truth = {{20.3, 30.7}, {60.5, 25.25}, {45.9, 70.1}};
  const cv::Mat image = Columns(truth, 3.0, 0.0, 1);
  std::vector<Blob> blobs;
  for (auto [x, y] : truth) blobs.push_back(Blob{std::round(x), std::round(y), 3.0, 1.0f, 0});
  ASSERT_TRUE(RefinePositions(image, absl::MakeSpan(blobs), RefineOptions{}).ok());
  for (size_t i = 0; i < truth.size(); ++i) {
    EXPECT_NEAR(blobs[i].x, truth[i].first, 0.05);
    EXPECT_NEAR(blobs[i].y, truth[i].second, 0.05);
  }
}

// With noise, the refined positions are closer to the truth than the
// integer peaks on average (the point of refining).
TEST(RefineTest, ReducesPositionErrorUnderNoise) {
  std::vector<std::pair<double, double>> truth;
  std::mt19937 rng(5);
  std::uniform_real_distribution<double> u(-0.5, 0.5);
  for (int j = 0; j < 4; ++j) {
    for (int i = 0; i < 4; ++i) truth.push_back({15.0 + 20 * i + u(rng), 15.0 + 20 * j + u(rng)});
  }
  const cv::Mat image = Columns(truth, 3.5, 0.15, 9);
  std::vector<Blob> blobs;
  double before = 0.0, after = 0.0;
  for (auto [x, y] : truth) blobs.push_back(Blob{std::round(x), std::round(y), 3.5, 1.0f, 0});
  for (size_t i = 0; i < truth.size(); ++i) {
    before += std::hypot(blobs[i].x - truth[i].first, blobs[i].y - truth[i].second);
  }
  ASSERT_TRUE(RefinePositions(image, absl::MakeSpan(blobs), RefineOptions{}).ok());
  for (size_t i = 0; i < truth.size(); ++i) {
    after += std::hypot(blobs[i].x - truth[i].first, blobs[i].y - truth[i].second);
  }
  EXPECT_LT(after, 0.6 * before) << "mean error before " << before / truth.size() << " after "
                                 << after / truth.size();
}

TEST(RefineTest, KeepsABlobWhoseCentroidRunsAway) {
  // A blob placed on empty background next to a column: the centroid would
  // slide onto the column, further than max_shift_sigmas allows.
  const cv::Mat image = Columns({{50.0, 50.0}}, 2.0, 0.0, 1);
  std::vector<Blob> blobs = {Blob{45.0, 50.0, 2.0, 1.0f, 0}};
  ASSERT_TRUE(RefinePositions(image, absl::MakeSpan(blobs), RefineOptions{}).ok());
  EXPECT_EQ(blobs[0].x, 45.0);
  EXPECT_EQ(blobs[0].y, 50.0);
}

TEST(RefineTest, RejectsBadInput) {
  std::vector<Blob> blobs;
  EXPECT_THAT(RefinePositions(cv::Mat(), absl::MakeSpan(blobs), RefineOptions{}).message(),
              HasSubstr("float32"));
  RefineOptions o;
  o.iterations = 0;
  EXPECT_THAT(RefinePositions(cv::Mat(4, 4, CV_32F), absl::MakeSpan(blobs), o).message(),
              HasSubstr("iterations"));
}

}  // namespace
}  // namespace logstar
