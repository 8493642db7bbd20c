// The daemon's own pass over a frame's pixels before the engine sees them:
// the check for NaN and infinity (wire::CheckFinite), by row blocks on the
// analysis context's threads. With frames read in place (a sealed memory
// file, server/memfd.h) it is the daemon's only pass over the pixels, and
// on two cores it takes half the time of the one-thread pass.
//
// Why not fused with the engine's normalisation (issue 21, item 2, asks for
// each pixel read once): NormalizeFrame (engine/image/normalize.h) reads
// the frame twice itself (its minimum and maximum with its own finite
// check, then the mapping), and LogStarAnalyzer::Analyze normalises every
// frame it is given; the daemon cannot hand it a normalised frame without
// a new engine entry point. This pass is what the daemon adds.
//
// Thread-safety: pure function; `context` as ExecutionContext allows.
#ifndef LOGSTAR_SERVER_PIXEL_CHECK_H_
#define LOGSTAR_SERVER_PIXEL_CHECK_H_

#include <opencv2/core.hpp>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "engine/base/context.h"

namespace logstar::server {

// wire::CheckFinite(image, field)'s answer (the first bad pixel in
// row-major order is named), with the context's threads when one is given.
// `image`: continuous, single-channel.
absl::Status CheckFinitePixels(const cv::Mat& image, absl::string_view field,
                               ExecutionContext* context);

}  // namespace logstar::server

#endif  // LOGSTAR_SERVER_PIXEL_CHECK_H_
