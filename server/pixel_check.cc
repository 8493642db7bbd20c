#include "server/pixel_check.h"

#include <algorithm>
#include <atomic>
#include <vector>

#include "proto/wire/pixels.h"

namespace logstar::server {

absl::StatusOr<PixelRange> CheckAndMeasurePixels(const cv::Mat& image, absl::string_view field,
                                                 ExecutionContext* context) {
  const bool floating = image.depth() == CV_32F || image.depth() == CV_64F;
  // Blocks of about 256 KiB: the range is read while the finite check left
  // the block in cache (L2), and there are a few dozen per thread at 2048².
  const int rows_per_block = static_cast<int>(
      std::max<size_t>(1, (size_t{1} << 18) / std::max<size_t>(1, image.cols * image.elemSize())));
  const int blocks = (image.rows + rows_per_block - 1) / rows_per_block;
  std::atomic<bool> bad{false};
  std::vector<PixelRange> ranges(blocks);
  auto check = [&](int b) {
    const int y0 = b * rows_per_block;
    const cv::Mat rows = image.rowRange(y0, std::min(image.rows, y0 + rows_per_block));
    if (floating && wire::FirstNonFinite(rows) >= 0) {
      bad = true;
      return;
    }
    cv::minMaxIdx(rows, &ranges[b].min, &ranges[b].max);
  };
  if (context != nullptr && blocks > 1) {
    context->ParallelFor(blocks, check);
  } else {
    for (int b = 0; b < blocks; ++b) check(b);
  }
  // A bad frame is rare: the serial pass names its first pixel.
  if (bad) return wire::CheckFinite(image, field);
  if (ranges.empty()) return PixelRange{};
  PixelRange out = ranges.front();
  for (const PixelRange& r : ranges) {
    out.min = std::min(out.min, r.min);
    out.max = std::max(out.max, r.max);
  }
  return out;
}

absl::Status CheckFinitePixels(const cv::Mat& image, absl::string_view field,
                               ExecutionContext* context) {
  return CheckAndMeasurePixels(image, field, context).status();
}

}  // namespace logstar::server
