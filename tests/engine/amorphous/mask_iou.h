// Intersection over union of two masks (non-zero = inside), for tests that
// compare a painted amorphous mask with synth's truth.
#ifndef LOGSTAR_TESTS_ENGINE_MASK_IOU_H_
#define LOGSTAR_TESTS_ENGINE_MASK_IOU_H_

#include <opencv2/core.hpp>

namespace logstar::testing {

// 1 when both masks are empty.
inline double MaskIou(const cv::Mat& a, const cv::Mat& b) {
  const double inter = cv::countNonZero((a != 0) & (b != 0));
  const double uni = cv::countNonZero((a != 0) | (b != 0));
  return uni == 0 ? 1.0 : inter / uni;
}

}  // namespace logstar::testing

#endif  // LOGSTAR_TESTS_ENGINE_MASK_IOU_H_
