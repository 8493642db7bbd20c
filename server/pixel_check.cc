#include "server/pixel_check.h"

#include <algorithm>
#include <atomic>
#include <vector>

#include "engine/image/pixel_scan.h"
#include "proto/wire/pixels.h"

namespace logstar::server {

absl::StatusOr<PixelRange> CheckAndMeasurePixels(const cv::Mat& image, absl::string_view field,
                                                 ExecutionContext* context) {
  // Blocks of about 256 KiB: a few dozen per thread at 2048², so the
  // threads stay balanced while each block is one run of the scan.
  const int rows_per_block = static_cast<int>(
      std::max<size_t>(1, (size_t{1} << 18) / std::max<size_t>(1, image.cols * image.elemSize())));
  const int blocks = (image.rows + rows_per_block - 1) / rows_per_block;
  std::atomic<bool> bad{false};
  std::vector<PixelScan> scans(blocks);
  auto scan = [&](int b) {
    const int y0 = b * rows_per_block;
    scans[b] = ScanPixels(image.rowRange(y0, std::min(image.rows, y0 + rows_per_block)));
    if (scans[b].first_non_finite >= 0) bad = true;
  };
  if (context != nullptr && blocks > 1) {
    context->ParallelFor(blocks, scan);
  } else {
    for (int b = 0; b < blocks; ++b) scan(b);
  }
  // A bad frame is rare: the serial pass names its first pixel.
  if (bad) return wire::CheckFinite(image, field);
  if (scans.empty()) return PixelRange{};
  PixelRange out{.min = scans.front().min, .max = scans.front().max};
  for (const PixelScan& s : scans) {
    out.min = std::min(out.min, s.min);
    out.max = std::max(out.max, s.max);
  }
  return out;
}

absl::Status CheckFinitePixels(const cv::Mat& image, absl::string_view field,
                               ExecutionContext* context) {
  return CheckAndMeasurePixels(image, field, context).status();
}

}  // namespace logstar::server
