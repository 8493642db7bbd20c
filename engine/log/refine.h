// Sub-pixel refinement of detected atom positions.
//
// blob_log reports peaks on the pixel grid, so its positions are off by up
// to half a pixel even on a noise-free frame. An atomic column images as a
// compact bright peak whose top is close to a paraboloid: a Gaussian-weighted
// least-squares paraboloid over the column's core, re-centred on its apex a
// few times, gives the centre with sub-pixel precision and averages the
// noise over tens of pixels instead of trusting one. A linear background
// tilt only moves the apex by slope / curvature (hundredths of a pixel for
// real columns).
//
// Coordinates: x = column, y = row, pixels, origin at the centre of the
// top-left pixel.
#ifndef LOGSTAR_ENGINE_LOG_REFINE_H_
#define LOGSTAR_ENGINE_LOG_REFINE_H_

#include <opencv2/core.hpp>

#include "absl/status/status.h"
#include "absl/types/span.h"
#include "engine/log/log_detector.h"

namespace logstar {

struct RefineOptions {
  // Fits; each re-centres the fit window on the previous apex.
  int iterations = 3;  // >= 1
  // Width of the Gaussian weight (the fit reaches twice as far), as a
  // multiple of the blob's sigma. 0.7 keeps the fit on the column's top,
  // where a paraboloid is close to a Gaussian (at 1.0 the flanks bias it by
  // 0.06 px); much smaller averages too few pixels against noise.
  double weight_sigmas = 0.7;  // > 0
  // A refinement that moves a blob further than this multiple of its sigma
  // is discarded (the fit slid to a neighbour or into noise).
  double max_shift_sigmas = 1.0;  // > 0

  absl::Status Validate() const;
};

// Refines blobs[i].x / .y in place on `image` (single-channel CV_32F, the
// frame the blobs were detected on, finite values). A blob whose
// neighbourhood has no single maximum keeps its position.
absl::Status RefinePositions(const cv::Mat& image, absl::Span<Blob> blobs,
                             const RefineOptions& options);

}  // namespace logstar

#endif  // LOGSTAR_ENGINE_LOG_REFINE_H_
