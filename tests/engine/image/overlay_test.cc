// RenderAmorphousOverlay: colours and outlines where they were asked for,
// checked on the pixels.
#include "engine/image/overlay.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

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

TEST(OverlayTest, FlagCountMustMatchTheBlobs) {
  const cv::Mat frame(64, 64, CV_32F, cv::Scalar(0.5f));
  const std::vector<Blob> blobs = {{.x = 10, .y = 10, .sigma = 2}};
  AmorphousMarks marks;
  marks.amorphous = {true, false};
  absl::StatusOr<cv::Mat> picture = RenderAmorphousOverlay(frame, blobs, marks, {});
  EXPECT_THAT(std::string(picture.status().message()), testing::HasSubstr("2 amorphous flags"));
  EXPECT_TRUE(RenderAmorphousOverlay(frame, blobs, AmorphousMarks{}, {}).ok());
}

}  // namespace
}  // namespace logstar
