// Intensity normalisation of a frame, the explicit first step of analysis.
//
// The LoG threshold is an absolute response level, so it only means the same
// thing across frames when every frame is mapped to a common range first. The
// published workflow maps each frame min–max to [0, 1]; a single hot pixel or
// dead column then compresses everything else, so a robust variant maps the
// given low/high percentiles to 0 and 1 and clips outside.
//
// Normalisation is per frame: windows of a frame are analysed on the same
// normalised frame, so a threshold means the same in every window.
#ifndef LOGSTAR_ENGINE_IMAGE_NORMALIZE_H_
#define LOGSTAR_ENGINE_IMAGE_NORMALIZE_H_

#include <opencv2/core.hpp>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "engine/base/context.h"

namespace logstar {

struct NormalizeOptions {
  enum class Method {
    kMinMax,      // (v - min) / (max - min), as the published workflow
    kPercentile,  // (v - p_low) / (p_high - p_low), clipped to [0, 1]
  };
  Method method = Method::kMinMax;
  // Used by kPercentile only; 0 <= low < high <= 100.
  double low_percentile = 0.1;
  double high_percentile = 99.9;

  absl::Status Validate() const;
};

// Returns a CV_32F frame in [0, 1]. A constant frame maps to all zeros.
// Rejects empty frames, more than one channel, unsupported element types and
// non-finite pixels (the error gives the first such pixel's x and y, in
// row-major order).
//
// With a context, min-max normalisation runs in its arena by row blocks;
// the result (and any error) is the same as without one.
absl::StatusOr<cv::Mat> NormalizeFrame(const cv::Mat& frame, const NormalizeOptions& options,
                                       ExecutionContext* context = nullptr);

// What a caller that has already read a frame knows of its pixels: all
// are finite, and their minimum and maximum (both attained). The daemon
// learns it in its own check of the pixels it received (server/
// pixel_check.h), so that normalisation need not read them again.
struct PixelRange {
  double min = 0.0;
  double max = 0.0;
};

// As NormalizeFrame, for a frame whose pixels `range` describes: min-max
// normalisation reads the frame once (the mapping), where NormalizeFrame
// reads it first for its minimum and maximum and its finite check; the
// result is the same, bit for bit, when `range` is the frame's. kPercentile
// ignores `range` and reads the frame as NormalizeFrame does. The caller
// vouches for `range`: pixels outside it map outside [0, 1], and non-finite
// ones are not refused.
absl::StatusOr<cv::Mat> NormalizeFrame(const cv::Mat& frame, const NormalizeOptions& options,
                                       const PixelRange& range, ExecutionContext* context);

}  // namespace logstar

#endif  // LOGSTAR_ENGINE_IMAGE_NORMALIZE_H_
