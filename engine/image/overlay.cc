#include "engine/image/overlay.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>

#include "absl/strings/str_cat.h"

namespace logstar {

namespace {

absl::StatusOr<cv::Mat> Render(const cv::Mat& frame, absl::Span<const Blob> blobs,
                               const AmorphousMarks* marks, const OverlayOptions& options) {
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
    const cv::Scalar kCircle(60, 220, 60);      // green
    const cv::Scalar kCenter(40, 40, 255);      // red
    const cv::Scalar kAmorphous(255, 60, 255);  // magenta
    const cv::Scalar kOutline(0, 230, 255);     // yellow
    auto at = [&](double x, double y) {
      return cv::Point(static_cast<int>(std::lround((x + 0.5) * zoom * kScale)),
                       static_cast<int>(std::lround((y + 0.5) * zoom * kScale)));
    };
    if (marks != nullptr) {
      // Outlines first, so that the atoms stay visible on top of them.
      std::vector<std::vector<cv::Point>> polygons;
      for (const std::vector<PointXY>& outline : marks->outlines) {
        std::vector<cv::Point>& polygon = polygons.emplace_back();
        for (const PointXY& p : outline) polygon.push_back(at(p.x, p.y));
      }
      cv::polylines(bgr, polygons, /*isClosed=*/true, kOutline, std::max(1, zoom / 2), cv::LINE_AA,
                    kShift);
    }
    for (size_t i = 0; i < blobs.size(); ++i) {
      const Blob& b = blobs[i];
      const cv::Point c = at(b.x, b.y);
      const int r = static_cast<int>(std::lround(b.sigma * std::sqrt(2.0) * zoom * kScale));
      const bool amorphous = marks != nullptr && !marks->amorphous.empty() && marks->amorphous[i];
      cv::circle(bgr, c, r, amorphous ? kAmorphous : kCircle, 1, cv::LINE_AA, kShift);
      if (options.draw_centers)
        cv::circle(bgr, c, static_cast<int>(kScale), kCenter, -1, cv::LINE_AA, kShift);
    }
    return bgr;
  } catch (const cv::Exception& e) {
    return absl::InternalError(absl::StrCat("overlay rendering failed: ", e.what()));
  }
}

}  // namespace

absl::StatusOr<cv::Mat> RenderBlobOverlay(const cv::Mat& frame, absl::Span<const Blob> blobs,
                                          const OverlayOptions& options) {
  return Render(frame, blobs, nullptr, options);
}

absl::StatusOr<cv::Mat> RenderAmorphousOverlay(const cv::Mat& frame, absl::Span<const Blob> blobs,
                                               const AmorphousMarks& marks,
                                               const OverlayOptions& options) {
  if (!marks.amorphous.empty() && marks.amorphous.size() != blobs.size()) {
    return absl::InvalidArgumentError(absl::StrCat("overlay: ", marks.amorphous.size(),
                                                   " amorphous flags for ", blobs.size(),
                                                   " blobs (one per blob or none)"));
  }
  return Render(frame, blobs, &marks, options);
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
