// One read of a frame's pixels for what normalisation must know before it
// maps them: whether every pixel is finite, and their minimum and maximum.
//
// NormalizeFrame's first pass (engine/image/normalize.h) and the daemon's
// check of the pixels it receives (server/pixel_check.h) are this scan: the
// daemon's replaces the engine's (LogStarAnalyzer::Analyze with a
// PixelRange), so either way a frame is scanned once. The finite test and
// both extrema are one loop over the float lanes (vectorised, with an AVX2
// variant chosen at run time like the LoG kernels, engine/base/
// kernel_isa.h), where a finite check followed by cv::minMaxLoc read each
// block twice and tracked the extrema's positions, which nobody needs.
//
// Thread-safety: pure functions.
#ifndef LOGSTAR_ENGINE_IMAGE_PIXEL_SCAN_H_
#define LOGSTAR_ENGINE_IMAGE_PIXEL_SCAN_H_

#include <cstdint>

#include <opencv2/core.hpp>

namespace logstar {

struct PixelScan {
  // Row-major index in the scanned image of its first NaN or infinite
  // pixel, or -1 when all are finite (always for integer types).
  int64_t first_non_finite = -1;
  // The pixels' minimum and maximum; only meaningful when
  // first_non_finite is -1.
  double min = 0.0;
  double max = 0.0;
};

// Scans `image`: single-channel uint8, uint16, int16, float32 or float64,
// not empty, rows continuous or not. Other types: first_non_finite -1 and a
// range of 0 (callers check the type first).
PixelScan ScanPixels(const cv::Mat& image);

namespace internal {

// The float kernel behind ScanPixels, over `n` contiguous pixels: true when
// one is NaN or infinite; else folds their extrema into *lo and *hi (which
// start at +inf and -inf). Exposed for the variants' tests.
using ScanFloatFn = bool (*)(const float* p, int64_t n, float* lo, float* hi);
ScanFloatFn ChosenScanFloat();
bool ScanFloatGeneric(const float* p, int64_t n, float* lo, float* hi);
// Null when this build or CPU has no AVX2 variant.
ScanFloatFn ScanFloatAvx2OrNull();

}  // namespace internal
}  // namespace logstar

#endif  // LOGSTAR_ENGINE_IMAGE_PIXEL_SCAN_H_
