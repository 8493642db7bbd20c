// The daemon's own pass over a frame's pixels before the engine sees them:
// the check for NaN and infinity (wire::CheckFinite) and, in the same pass,
// the pixels' minimum and maximum, by row blocks on the analysis context's
// threads. With frames read in place (a sealed memory file, server/memfd.h)
// it is the daemon's only pass over the pixels.
//
// The range is what makes it the only one (issue 21, item 2: each pixel
// read once): the engine's min-max normalisation, given it
// (LogStarAnalyzer::Analyze with a PixelRange), maps the frame without
// reading it first for its range and its own finite check
// (engine/image/normalize.h), so the daemon reads each pixel as often as
// the engine in process does. Both are one read of each block
// (ScanPixels, engine/image/pixel_scan.h, the scan NormalizeFrame makes).
//
// Thread-safety: pure functions; `context` as ExecutionContext allows.
#ifndef LOGSTAR_SERVER_PIXEL_CHECK_H_
#define LOGSTAR_SERVER_PIXEL_CHECK_H_

#include <opencv2/core.hpp>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "engine/base/context.h"
#include "engine/image/normalize.h"

namespace logstar::server {

// wire::CheckFinite(image, field)'s answer (the first bad pixel in
// row-major order is named) or, when every pixel is finite, the image's
// minimum and maximum; with the context's threads when one is given.
// `image`: continuous, single-channel, not empty.
absl::StatusOr<PixelRange> CheckAndMeasurePixels(const cv::Mat& image, absl::string_view field,
                                                 ExecutionContext* context);

// The check alone: CheckAndMeasurePixels' status.
absl::Status CheckFinitePixels(const cv::Mat& image, absl::string_view field,
                               ExecutionContext* context);

}  // namespace logstar::server

#endif  // LOGSTAR_SERVER_PIXEL_CHECK_H_
