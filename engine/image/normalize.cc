#include "engine/image/normalize.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "engine/image/pixel_scan.h"
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

// Rows [y0, y1): their non-finite check (floating types) and their
// minimum and maximum in one read (ScanPixels, engine/image/pixel_scan.h);
// the extrema go to *lo and *hi unless lo is null. The first failing row
// block's error is the frame's first non-finite pixel, as blocks are read
// in row order.
absl::Status CheckAndMinMax(const cv::Mat& frame, int y0, int y1, double* lo, double* hi) {
  const PixelScan scan = ScanPixels(frame.rowRange(y0, y1));
  if (scan.first_non_finite >= 0) {
    // The message's form: the slow test on the bad pixel's row.
    const int y = y0 + static_cast<int>(scan.first_non_finite / frame.cols);
    return frame.depth() == CV_32F
               ? CheckFinite<float, uint32_t>(frame, 0x7f800000u, y, y + 1)
               : CheckFinite<double, uint64_t>(frame, 0x7ff0000000000000ull, y, y + 1);
  }
  if (lo != nullptr) {
    *lo = scan.min;
    *hi = scan.max;
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

namespace {

// Row blocks of a frame, run on the context's threads when there is one and
// more than one block. Each block writes only its own slots and rows, so
// results do not depend on the number of threads.
struct RowBlocks {
  RowBlocks(const cv::Mat& frame, ExecutionContext* context)
      : rows(frame.rows), per_block(RowsPerBlock(frame)), context(context) {}
  int count() const { return (rows + per_block - 1) / per_block; }
  std::pair<int, int> RowsOf(int b) const {
    return {b * per_block, std::min(rows, (b + 1) * per_block)};
  }
  template <typename Body>
  void ForEach(Body&& body) const {
    if (context != nullptr && count() > 1) {
      context->ParallelFor(count(), body);
    } else {
      for (int b = 0; b < count(); ++b) body(b);
    }
  }
  int rows;
  int per_block;
  ExecutionContext* context;
};

// The frame's minimum and maximum (kMinMax) or its percentiles
// (kPercentile), after refusing non-finite pixels.
absl::StatusOr<PixelRange> MeasureRange(const cv::Mat& frame, const NormalizeOptions& options,
                                        const RowBlocks& blocks) {
  if (options.method == NormalizeOptions::Method::kMinMax) {
    const int n = blocks.count();
    std::vector<absl::Status> status(n, absl::InternalError("normalisation did not run"));
    std::vector<double> block_lo(n), block_hi(n);
    blocks.ForEach([&](int b) {
      const auto [y0, y1] = blocks.RowsOf(b);
      status[b] = CheckAndMinMax(frame, y0, y1, &block_lo[b], &block_hi[b]);
    });
    for (const absl::Status& s : status) {
      if (!s.ok()) return s;
    }
    return PixelRange{.min = *std::min_element(block_lo.begin(), block_lo.end()),
                      .max = *std::max_element(block_hi.begin(), block_hi.end())};
  }
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
  return PixelRange{.min = Percentile(values, options.low_percentile),
                    .max = Percentile(values, options.high_percentile)};
}

// The mapping of [range.min, range.max] to [0, 1] (clipped for
// kPercentile) into a new padded CV_32F frame.
absl::StatusOr<cv::Mat> MapFrame(const cv::Mat& frame, const NormalizeOptions& options,
                                 const PixelRange& range, const RowBlocks& blocks) {
  const double lo = range.min, hi = range.max;
  // Finite pixels whose range does not fit a double (about ±1e308 in one
  // frame) would map to NaN: name that, not a non-finite pixel, later.
  if (!std::isfinite(hi - lo)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "frame's pixel values span [", lo, ", ", hi,
        "], a range larger than float64 holds, so they cannot be normalised; scale them down"));
  }
  const double width = std::max(hi - lo, 1e-12);
  cv::Mat out = internal::NewPaddedFrame(frame.rows, frame.cols);
  const bool clip = options.method == NormalizeOptions::Method::kPercentile;
  blocks.ForEach([&](int b) {
    const auto [y0, y1] = blocks.RowsOf(b);
    MapRowsOfDepth(frame, lo, width, clip, out, y0, y1);
  });
  return out;
}

}  // namespace

absl::StatusOr<cv::Mat> NormalizeFrame(const cv::Mat& frame, const NormalizeOptions& options,
                                       ExecutionContext* context) {
  if (absl::Status s = options.Validate(); !s.ok()) return s;
  if (absl::Status s = CheckFrame(frame); !s.ok()) return s;
  const RowBlocks blocks(frame, context);
  absl::StatusOr<PixelRange> range = MeasureRange(frame, options, blocks);
  if (!range.ok()) return range.status();
  return MapFrame(frame, options, *range, blocks);
}

absl::StatusOr<cv::Mat> NormalizeFrame(const cv::Mat& frame, const NormalizeOptions& options,
                                       const PixelRange& range, ExecutionContext* context) {
  if (options.method != NormalizeOptions::Method::kMinMax) {
    return NormalizeFrame(frame, options, context);
  }
  if (absl::Status s = options.Validate(); !s.ok()) return s;
  if (absl::Status s = CheckFrame(frame); !s.ok()) return s;
  return MapFrame(frame, options, range, RowBlocks(frame, context));
}

}  // namespace logstar
