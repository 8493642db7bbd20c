// Internal to the engine: the memory layout the LoG kernels want.
//
// The first LoG pass reads whole vectors of 16 floats along rows and walks
// down narrow column strips. It needs rows readable (and finite) up to a
// multiple of 16 floats, and a row stride that is not a multiple of 256
// bytes: otherwise the rows of a strip fall into the same few L1 sets and
// evict each other (1024-float rows tripled the time).
#ifndef LOGSTAR_ENGINE_LOG_PADDED_FRAME_H_
#define LOGSTAR_ENGINE_LOG_PADDED_FRAME_H_

#include <opencv2/core.hpp>

namespace logstar::internal {

// A zero-filled rows × cols CV_32F frame in that layout (a view into a
// wider buffer).
cv::Mat NewPaddedFrame(int rows, int cols);

// Whether `m` (CV_32FC1) already has that layout.
bool HasPaddedLayout(const cv::Mat& m);

}  // namespace logstar::internal

#endif  // LOGSTAR_ENGINE_LOG_PADDED_FRAME_H_
