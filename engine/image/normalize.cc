#include "engine/image/normalize.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

#include "absl/strings/str_cat.h"
#include "engine/log/padded_frame.h"

namespace logstar {
namespace {

// Copies any supported depth to double, failing on the first non-finite pixel.
absl::Status CheckFrame(const cv::Mat& frame) {
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
      return absl::OkStatus();
    default:
      return absl::InvalidArgumentError(
          "frame has an unsupported pixel type; supported are uint8, uint16, int16, float32, "
          "float64");
  }
}

// NaN and infinity are the floats whose exponent bits are all set; testing
// the bits vectorises, std::isfinite per pixel does not. The slow scan for
// the first bad pixel's position runs only when there is one.
template <typename Float, typename Bits>
absl::Status CheckFinite(const cv::Mat& frame, Bits exponent, int y0, int y1) {
  for (int y = y0; y < y1; ++y) {
    const Bits* row = frame.ptr<Bits>(y);
    Bits worst = 0;
    for (int x = 0; x < frame.cols; ++x) worst = std::max<Bits>(worst, row[x] & exponent);
    if (worst != exponent) continue;
    const Float* values = frame.ptr<Float>(y);
    for (int x = 0; x < frame.cols; ++x) {
      if (!std::isfinite(values[x])) {
        return absl::InvalidArgumentError(absl::StrCat("frame has a non-finite pixel (",
                                                       static_cast<double>(values[x]), ") at x=", x,
                                                       ", y=", y));
      }
    }
  }
  return absl::OkStatus();
}

// out = (in - lo) / range in double, rounded to float, as the published
// workflow computes it (float64 min-max) before LoG sees float32.
template <typename T>
void MapRows(const cv::Mat& in, double lo, double range, bool clip, cv::Mat& out, int y0, int y1) {
  for (int y = y0; y < y1; ++y) {
    const T* src = in.ptr<T>(y);
    float* dst = out.ptr<float>(y);
    if (clip) {
      for (int x = 0; x < in.cols; ++x) {
        dst[x] =
            static_cast<float>(std::clamp((static_cast<double>(src[x]) - lo) / range, 0.0, 1.0));
      }
    } else {
      for (int x = 0; x < in.cols; ++x) {
        dst[x] = static_cast<float>((static_cast<double>(src[x]) - lo) / range);
      }
    }
  }
}

// Rows [y0, y1): their non-finite check (floating types), then their
// minimum and maximum unless lo is null. The first failing row block's
// error is the frame's first non-finite pixel, as blocks are read in row
// order.
absl::Status CheckAndMinMax(const cv::Mat& frame, int y0, int y1, double* lo, double* hi) {
  if (frame.depth() == CV_32F) {
    if (absl::Status s = CheckFinite<float, uint32_t>(frame, 0x7f800000u, y0, y1); !s.ok()) {
      return s;
    }
  } else if (frame.depth() == CV_64F) {
    if (absl::Status s = CheckFinite<double, uint64_t>(frame, 0x7ff0000000000000ull, y0, y1);
        !s.ok()) {
      return s;
    }
  }
  if (lo == nullptr) return absl::OkStatus();
  try {
    cv::minMaxLoc(frame.rowRange(y0, y1), lo, hi);
  } catch (const cv::Exception& e) {
    return absl::InternalError(absl::StrCat("minMaxLoc: ", e.what()));
  }
  return absl::OkStatus();
}

void MapRowsOfDepth(const cv::Mat& frame, double lo, double range, bool clip, cv::Mat& out, int y0,
                    int y1) {
  switch (frame.depth()) {
    case CV_8U:
      MapRows<uint8_t>(frame, lo, range, clip, out, y0, y1);
      break;
    case CV_16U:
      MapRows<uint16_t>(frame, lo, range, clip, out, y0, y1);
      break;
    case CV_16S:
      MapRows<int16_t>(frame, lo, range, clip, out, y0, y1);
      break;
    case CV_32F:
      MapRows<float>(frame, lo, range, clip, out, y0, y1);
      break;
    default:
      MapRows<double>(frame, lo, range, clip, out, y0, y1);
      break;
  }
}

// Row blocks of about 64k pixels: small enough to balance two to a few
// dozen threads, large enough that a block's overhead does not show.
int RowsPerBlock(const cv::Mat& frame) { return std::max(1, (1 << 16) / frame.cols); }

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

absl::StatusOr<cv::Mat> NormalizeFrame(const cv::Mat& frame, const NormalizeOptions& options,
                                       ExecutionContext* context) {
  if (absl::Status s = options.Validate(); !s.ok()) return s;
  if (absl::Status s = CheckFrame(frame); !s.ok()) return s;
  const int rows_per_block = RowsPerBlock(frame);
  const int blocks = (frame.rows + rows_per_block - 1) / rows_per_block;
  auto rows_of = [&](int b) {
    return std::pair{b * rows_per_block, std::min(frame.rows, (b + 1) * rows_per_block)};
  };
  // Each block writes only its own slots and rows, so the result does not
  // depend on the number of threads.
  auto for_blocks = [&](auto&& body) {
    if (context != nullptr && blocks > 1) {
      context->ParallelFor(blocks, body);
    } else {
      for (int b = 0; b < blocks; ++b) body(b);
    }
  };

  double lo, hi;
  if (options.method == NormalizeOptions::Method::kMinMax) {
    std::vector<absl::Status> status(blocks, absl::InternalError("normalisation did not run"));
    std::vector<double> block_lo(blocks), block_hi(blocks);
    for_blocks([&](int b) {
      const auto [y0, y1] = rows_of(b);
      status[b] = CheckAndMinMax(frame, y0, y1, &block_lo[b], &block_hi[b]);
    });
    for (const absl::Status& s : status) {
      if (!s.ok()) return s;
    }
    lo = *std::min_element(block_lo.begin(), block_lo.end());
    hi = *std::max_element(block_hi.begin(), block_hi.end());
  } else {
    if (absl::Status s = CheckAndMinMax(frame, 0, frame.rows, nullptr, nullptr); !s.ok()) {
      return s;
    }
    cv::Mat d;
    frame.convertTo(d, CV_64F);
    std::vector<double> values;
    values.reserve(d.total());
    for (int y = 0; y < d.rows; ++y) {
      const double* row = d.ptr<double>(y);
      values.insert(values.end(), row, row + d.cols);
    }
    lo = Percentile(values, options.low_percentile);
    hi = Percentile(values, options.high_percentile);
  }
  // Finite pixels whose range does not fit a double (about ±1e308 in one
  // frame) would map to NaN: name that, not a non-finite pixel, later.
  if (!std::isfinite(hi - lo)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "frame's pixel values span [", lo, ", ", hi,
        "], a range larger than float64 holds, so they cannot be normalised; scale them down"));
  }
  const double range = std::max(hi - lo, 1e-12);
  cv::Mat out = internal::NewPaddedFrame(frame.rows, frame.cols);
  const bool clip = options.method == NormalizeOptions::Method::kPercentile;
  for_blocks([&](int b) {
    const auto [y0, y1] = rows_of(b);
    MapRowsOfDepth(frame, lo, range, clip, out, y0, y1);
  });
  return out;
}

}  // namespace logstar
