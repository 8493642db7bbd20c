#include "engine/normalize.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "absl/strings/str_cat.h"
#include "engine/padded_frame.h"

namespace logstar {
namespace {

// Copies any supported depth to double, failing on the first non-finite pixel.
absl::StatusOr<cv::Mat> ToFiniteDouble(const cv::Mat& frame) {
  if (frame.empty() || frame.rows == 0 || frame.cols == 0) {
    return absl::InvalidArgumentError("frame is empty");
  }
  if (frame.channels() != 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("frame has ", frame.channels(), " channels; expected 1"));
  }
  switch (frame.depth()) {
    case CV_8U:
    case CV_16U:
    case CV_16S:
    case CV_32F:
    case CV_64F:
      break;
    default:
      return absl::InvalidArgumentError(
          "frame has an unsupported pixel type; supported are uint8, uint16, int16, float32, "
          "float64");
  }
  cv::Mat d;
  frame.convertTo(d, CV_64F);
  if (frame.depth() == CV_32F || frame.depth() == CV_64F) {
    for (int y = 0; y < d.rows; ++y) {
      const double* row = d.ptr<double>(y);
      for (int x = 0; x < d.cols; ++x) {
        if (!std::isfinite(row[x])) {
          return absl::InvalidArgumentError(
              absl::StrCat("frame has a non-finite pixel (", row[x], ") at x=", x, ", y=", y));
        }
      }
    }
  }
  return d;
}

double Percentile(std::vector<double>& values, double p) {
  // Linear interpolation between closest ranks, as numpy.percentile's default.
  const double pos = p / 100.0 * static_cast<double>(values.size() - 1);
  const size_t lo = static_cast<size_t>(std::floor(pos));
  const size_t hi = std::min(lo + 1, values.size() - 1);
  std::nth_element(values.begin(), values.begin() + lo, values.end());
  const double vlo = values[lo];
  const double vhi = hi == lo ? vlo : *std::min_element(values.begin() + lo + 1, values.end());
  return vlo + (pos - static_cast<double>(lo)) * (vhi - vlo);
}

}  // namespace

absl::Status NormalizeOptions::Validate() const {
  if (method == Method::kPercentile) {
    if (!(low_percentile >= 0.0 && low_percentile < high_percentile && high_percentile <= 100.0)) {
      return absl::InvalidArgumentError(absl::StrCat(
          "low_percentile and high_percentile must satisfy 0 <= low < high <= 100, got ",
          low_percentile, " and ", high_percentile));
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<cv::Mat> NormalizeFrame(const cv::Mat& frame, const NormalizeOptions& options) {
  if (absl::Status s = options.Validate(); !s.ok()) return s;
  absl::StatusOr<cv::Mat> d = ToFiniteDouble(frame);
  if (!d.ok()) return d.status();

  double lo, hi;
  if (options.method == NormalizeOptions::Method::kMinMax) {
    cv::minMaxLoc(*d, &lo, &hi);
  } else {
    std::vector<double> values;
    values.reserve(d->total());
    for (int y = 0; y < d->rows; ++y) {
      const double* row = d->ptr<double>(y);
      values.insert(values.end(), row, row + d->cols);
    }
    lo = Percentile(values, options.low_percentile);
    hi = Percentile(values, options.high_percentile);
  }
  // (v - lo) / range exactly as the published workflow computes it, so the
  // minimum maps to 0 and the maximum to 1 exactly; a constant frame
  // becomes zeros.
  const double range = std::max(hi - lo, 1e-12);
  // Laid out for the LoG kernels, so detection needs no copy.
  cv::Mat out = internal::NewPaddedFrame(d->rows, d->cols);
  const bool clip = options.method == NormalizeOptions::Method::kPercentile;
  for (int y = 0; y < d->rows; ++y) {
    const double* in = d->ptr<double>(y);
    float* o = out.ptr<float>(y);
    for (int x = 0; x < d->cols; ++x) {
      double v = (in[x] - lo) / range;
      if (clip) v = std::clamp(v, 0.0, 1.0);
      o[x] = static_cast<float>(v);
    }
  }
  return out;
}

}  // namespace logstar
