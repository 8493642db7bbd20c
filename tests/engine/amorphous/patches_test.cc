#include "engine/amorphous/patches.h"

#include <cmath>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace logstar {
namespace {

// Bilinear interpolation reproduces a linear ramp exactly: the closed form
// the samples must match at any sub-pixel centre.
TEST(PatchesTest, BilinearSamplesOfARampAreExact) {
  cv::Mat image(40, 50, CV_32F);
  for (int y = 0; y < 40; ++y) {
    for (int x = 0; x < 50; ++x) image.at<float>(y, x) = 0.5f + 0.25f * x - 0.125f * y;
  }
  const std::vector<PointXY> centers = {{10.3, 12.7}, {25.0, 20.0}, {2.0, 20.0}, {48.5, 3.0}};
  absl::StatusOr<Patches> p = ExtractPatches(image, centers, {.size_px = 5});
  ASSERT_TRUE(p.ok()) << p.status();
  // Atom 2 touches the left edge (x - 2 = 0: inside); atom 3 leaves the right (x + 2 > 49).
  EXPECT_THAT(p->kept, testing::ElementsAre(0, 1, 2));
  for (size_t r = 0; r < p->kept.size(); ++r) {
    const PointXY c = centers[p->kept[r]];
    for (int j = 0; j < 5; ++j) {
      for (int i = 0; i < 5; ++i) {
        EXPECT_NEAR(p->values(r, j * 5 + i), 0.5 + 0.25 * (c.x + i - 2) - 0.125 * (c.y + j - 2),
                    1e-5);
      }
    }
  }
}

TEST(PatchesTest, NormalisedPatchesHaveZeroMeanUnitDeviation) {
  cv::Mat image(30, 30, CV_32F);
  cv::randu(image, 0.0, 1.0);
  absl::StatusOr<Patches> p =
      ExtractPatches(image, std::vector<PointXY>{{15.2, 14.6}}, {.size_px = 7, .normalize = true});
  ASSERT_TRUE(p.ok()) << p.status();
  EXPECT_NEAR(p->values.row(0).mean(), 0.0, 1e-12);
  EXPECT_NEAR(p->values.row(0).squaredNorm() / 49.0, 1.0, 1e-12);
}

TEST(PatchesTest, BadInputNamesTheProblem) {
  cv::Mat image = cv::Mat::zeros(20, 20, CV_32F);
  EXPECT_THAT(std::string(ExtractPatches(image, {}, {.size_px = 4}).status().message()),
              testing::HasSubstr("odd"));
  EXPECT_THAT(
      std::string(
          ExtractPatches(image, std::vector<PointXY>{{std::nan(""), 1.0}}, {}).status().message()),
      testing::HasSubstr("non-finite"));
  EXPECT_FALSE(ExtractPatches(cv::Mat::zeros(20, 20, CV_8U), {}, {}).ok());
}

}  // namespace
}  // namespace logstar
