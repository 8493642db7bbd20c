#include "engine/image/pixel_scan.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "engine/base/kernel_isa.h"

#define LOGSTAR_SCAN_NAMESPACE generic
#include "engine/image/pixel_scan_impl.inc"

namespace logstar {
namespace internal {

#if defined(LOGSTAR_HAVE_X86_KERNELS)
ScanFloatFn ScanFloatAvx2();  // pixel_scan_avx2.cc
#endif

bool ScanFloatGeneric(const float* p, int64_t n, float* lo, float* hi) {
  return generic::ScanFloat(p, n, lo, hi);
}

ScanFloatFn ScanFloatAvx2OrNull() {
#if defined(LOGSTAR_HAVE_X86_KERNELS)
  if (CpuHasAvx2Fma()) return ScanFloatAvx2();
#endif
  return nullptr;
}

ScanFloatFn ChosenScanFloat() {
  static const ScanFloatFn chosen = [] {
    if (ChosenKernelIsa() != KernelIsa::kGeneric) {
      if (ScanFloatFn f = ScanFloatAvx2OrNull()) return f;
    }
    return &ScanFloatGeneric;
  }();
  return chosen;
}

}  // namespace internal

namespace {

// The row-major index of the first NaN or infinite pixel of rows [y0, y1),
// or -1.
template <typename T>
int64_t FirstNonFinite(const cv::Mat& image, int y0, int y1) {
  for (int y = y0; y < y1; ++y) {
    const T* row = image.ptr<T>(y);
    for (int x = 0; x < image.cols; ++x) {
      if (!std::isfinite(row[x])) return static_cast<int64_t>(y) * image.cols + x;
    }
  }
  return -1;
}

// Float32: the vectorised kernel over runs of contiguous rows; on a bad run
// the slow test finds its first bad pixel.
PixelScan ScanFloat32(const cv::Mat& image) {
  const internal::ScanFloatFn scan = internal::ChosenScanFloat();
  float lo = std::numeric_limits<float>::infinity();
  float hi = -std::numeric_limits<float>::infinity();
  const int rows_per_run = image.isContinuous() ? image.rows : 1;
  for (int y0 = 0; y0 < image.rows; y0 += rows_per_run) {
    const int y1 = std::min(image.rows, y0 + rows_per_run);
    const float* p = image.ptr<float>(y0);
    if (scan(p, static_cast<int64_t>(y1 - y0) * image.cols, &lo, &hi)) {
      return {.first_non_finite = FirstNonFinite<float>(image, y0, y1)};
    }
  }
  return {.first_non_finite = -1, .min = lo, .max = hi};
}

// Float64 (rare on the wire): the finite test per row, then OpenCV's extrema.
PixelScan ScanFloat64(const cv::Mat& image) {
  if (const int64_t bad = FirstNonFinite<double>(image, 0, image.rows); bad >= 0) {
    return {.first_non_finite = bad};
  }
  PixelScan out;
  cv::minMaxIdx(image, &out.min, &out.max);
  return out;
}

}  // namespace

PixelScan ScanPixels(const cv::Mat& image) {
  if (image.empty() || image.channels() != 1) return {};
  switch (image.depth()) {
    case CV_32F:
      return ScanFloat32(image);
    case CV_64F:
      return ScanFloat64(image);
    case CV_8U:
    case CV_16U:
    case CV_16S: {
      PixelScan out;
      cv::minMaxIdx(image, &out.min, &out.max);
      return out;
    }
    default:
      return {};
  }
}

}  // namespace logstar
