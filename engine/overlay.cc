#include "engine/overlay.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>

#include "absl/strings/str_cat.h"

namespace logstar {

absl::StatusOr<cv::Mat> RenderBlobOverlay(const cv::Mat& frame, absl::Span<const Blob> blobs,
                                          const OverlayOptions& options) {
  if (frame.empty() || frame.type() != CV_32FC1) {
    return absl::InvalidArgumentError("overlay needs a non-empty single-channel float32 frame");
  }
  if (options.zoom < 0 || options.zoom > 16) {
    return absl::InvalidArgumentError(absl::StrCat("zoom must be in [0, 16], got ", options.zoom));
  }
  int zoom = options.zoom;
  if (zoom == 0) {
    const int side = std::max(frame.rows, frame.cols);
    zoom = std::clamp(512 / std::max(side, 1), 1, 8);
  }
  try {
    cv::Mat gray8;
    frame.convertTo(gray8, CV_8U, 255.0);
    cv::Mat big;
    cv::resize(gray8, big, cv::Size(frame.cols * zoom, frame.rows * zoom), 0, 0, cv::INTER_NEAREST);
    cv::Mat bgr;
    cv::cvtColor(big, bgr, cv::COLOR_GRAY2BGR);
    // Pixel centres sit at (x + 0.5)·zoom in the enlarged image; draw with
    // 4 fractional bits so sub-pixel positions stay where they are.
    constexpr int kShift = 4;
    constexpr double kScale = 1 << kShift;
    const cv::Scalar kCircle(60, 220, 60);  // green
    const cv::Scalar kCenter(40, 40, 255);  // red
    for (const Blob& b : blobs) {
      const cv::Point c(static_cast<int>(std::lround((b.x + 0.5) * zoom * kScale)),
                        static_cast<int>(std::lround((b.y + 0.5) * zoom * kScale)));
      const int r = static_cast<int>(std::lround(b.sigma * std::sqrt(2.0) * zoom * kScale));
      cv::circle(bgr, c, r, kCircle, 1, cv::LINE_AA, kShift);
      if (options.draw_centers)
        cv::circle(bgr, c, static_cast<int>(kScale), kCenter, -1, cv::LINE_AA, kShift);
    }
    return bgr;
  } catch (const cv::Exception& e) {
    return absl::InternalError(absl::StrCat("overlay rendering failed: ", e.what()));
  }
}

absl::Status WritePng(const std::string& path, const cv::Mat& image) {
  if (image.empty() || image.depth() != CV_8U) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": PNG needs a non-empty 8-bit image"));
  }
  try {
    if (!cv::imwrite(path, image)) {
      return absl::PermissionDeniedError(absl::StrCat(path, ": cannot write PNG"));
    }
  } catch (const cv::Exception& e) {
    return absl::InternalError(absl::StrCat(path, ": cannot write PNG: ", e.what()));
  }
  return absl::OkStatus();
}

}  // namespace logstar
