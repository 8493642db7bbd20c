#include "server/pixel_check.h"

#include <algorithm>
#include <atomic>

#include "proto/wire/pixels.h"

namespace logstar::server {

absl::Status CheckFinitePixels(const cv::Mat& image, absl::string_view field,
                               ExecutionContext* context) {
  const int depth = image.depth();
  if (depth != CV_32F && depth != CV_64F) return absl::OkStatus();  // integers are finite
  // Blocks of about 1 MiB: a few per thread at 2048², one for small frames.
  const int rows_per_block = static_cast<int>(
      std::max<size_t>(1, (size_t{1} << 20) / std::max<size_t>(1, image.cols * image.elemSize())));
  const int blocks = (image.rows + rows_per_block - 1) / rows_per_block;
  std::atomic<bool> bad{false};
  auto check = [&](int b) {
    const int y0 = b * rows_per_block;
    const int y1 = std::min(image.rows, y0 + rows_per_block);
    if (wire::FirstNonFinite(image.rowRange(y0, y1)) >= 0) bad = true;
  };
  if (context != nullptr && blocks > 1) {
    context->ParallelFor(blocks, check);
  } else {
    for (int b = 0; b < blocks; ++b) check(b);
  }
  // A bad frame is rare: the serial pass names its first pixel.
  return bad ? wire::CheckFinite(image, field) : absl::OkStatus();
}

}  // namespace logstar::server
