#include "engine/image/overlay.h"

#include <algorithm>
#include <cmath>
#include <iterator>
#include <string>
#include <vector>

#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>

#include "absl/strings/str_cat.h"

namespace logstar {

namespace {

// A closed polygon (points in the caller's fixed-point units, `shift`
// fractional bits) drawn as dashes of `dash` output pixels with gaps as
// long, the pattern running on along the whole outline.
void DrawDashedPolygon(cv::Mat& bgr, const std::vector<cv::Point>& polygon,
                       const cv::Scalar& colour, int thickness, double dash, int shift) {
  const double scale = 1 << shift;
  double phase = 0.0;  // distance along the outline, output pixels
  for (size_t i = 0; i < polygon.size(); ++i) {
    const cv::Point2d a = cv::Point2d(polygon[i]) / scale;
    const cv::Point2d b = cv::Point2d(polygon[(i + 1) % polygon.size()]) / scale;
    const double length = cv::norm(b - a);
    double t = 0.0;
    while (t < length) {
      const double in_period = std::fmod(phase + t, 2.0 * dash);
      const double step =
          std::min(length - t, in_period < dash ? dash - in_period : 2.0 * dash - in_period);
      if (in_period < dash && length > 0.0) {
        const cv::Point2d p = a + (b - a) * (t / length), q = a + (b - a) * ((t + step) / length);
        cv::line(bgr, cv::Point(cvRound(p.x * scale), cvRound(p.y * scale)),
                 cv::Point(cvRound(q.x * scale), cvRound(q.y * scale)), colour, thickness,
                 cv::LINE_AA, shift);
      }
      t += std::max(step, 1e-9);
    }
    phase += length;
  }
}

// The legend: one row per sublattice, a filled disk in its colour and the
// name, on black in the bottom-left corner.
void DrawLegend(cv::Mat& bgr, const std::vector<std::string>& names) {
  constexpr int kRow = 18, kPad = 6;
  constexpr double kFont = 0.45;
  int width = 0;
  for (const std::string& name : names) {
    int baseline = 0;
    width =
        std::max(width, cv::getTextSize(name, cv::FONT_HERSHEY_SIMPLEX, kFont, 1, &baseline).width);
  }
  const int box_w = std::min(bgr.cols, 3 * kPad + 10 + width);
  const int box_h = std::min(bgr.rows, kPad + kRow * static_cast<int>(names.size()));
  cv::rectangle(bgr, cv::Rect(0, bgr.rows - box_h, box_w, box_h), cv::Scalar(0, 0, 0), cv::FILLED);
  for (size_t i = 0; i < names.size(); ++i) {
    const int y = bgr.rows - box_h + kPad / 2 + kRow * static_cast<int>(i) + kRow / 2;
    const cv::Scalar colour = SublatticeColour(static_cast<int>(i));
    cv::circle(bgr, cv::Point(kPad + 5, y), 5, colour, cv::FILLED, cv::LINE_AA);
    cv::putText(bgr, names[i], cv::Point(2 * kPad + 10, y + 5), cv::FONT_HERSHEY_SIMPLEX, kFont,
                colour, 1, cv::LINE_AA);
  }
}

absl::Status CheckMarks(absl::Span<const Blob> blobs, const AmorphousMarks& marks,
                        const SublatticeMarks& sublattices) {
  if (!marks.ids.empty() && marks.ids.size() != marks.outlines.size()) {
    return absl::InvalidArgumentError(absl::StrCat("overlay: ", marks.ids.size(),
                                                   " region ids for ", marks.outlines.size(),
                                                   " outlines (one per outline or none)"));
  }
  if (!marks.amorphous.empty() && marks.amorphous.size() != blobs.size()) {
    return absl::InvalidArgumentError(absl::StrCat("overlay: ", marks.amorphous.size(),
                                                   " amorphous flags for ", blobs.size(),
                                                   " blobs (one per blob or none)"));
  }
  if (!sublattices.labels.empty() && sublattices.labels.size() != blobs.size()) {
    return absl::InvalidArgumentError(absl::StrCat("overlay: ", sublattices.labels.size(),
                                                   " sublattice labels for ", blobs.size(),
                                                   " blobs (one per blob or none)"));
  }
  for (const int label : sublattices.labels) {
    if (label < -1 ||
        (!sublattices.names.empty() && label >= static_cast<int>(sublattices.names.size()))) {
      return absl::InvalidArgumentError(
          absl::StrCat("overlay: sublattice label ", label, " is neither -1 nor an index into the ",
                       sublattices.names.size(), " sublattice names"));
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<cv::Mat> Render(const cv::Mat& frame, absl::Span<const Blob> blobs,
                               const AmorphousMarks* marks, const SublatticeMarks* sublattices,
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
    const cv::Scalar kCircle(60, 220, 60);      // green
    const cv::Scalar kCenter(40, 40, 255);      // red
    const cv::Scalar kAmorphous(255, 60, 255);  // magenta
    const cv::Scalar kOutline(0, 230, 255);     // yellow
    const cv::Scalar kUncertain(0, 140, 255);   // orange
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
      const int thickness = std::max(1, zoom / 2);
      const cv::Scalar colour = marks->uncertain ? kUncertain : kOutline;
      if (marks->uncertain) {
        for (const std::vector<cv::Point>& polygon : polygons) {
          DrawDashedPolygon(bgr, polygon, colour, thickness, 6.0 * thickness, kShift);
        }
      } else {
        cv::polylines(bgr, polygons, /*isClosed=*/true, colour, thickness, cv::LINE_AA, kShift);
      }
      for (size_t k = 0; k < marks->ids.size() && k < polygons.size(); ++k) {
        if (marks->ids[k] < 1 || polygons[k].empty()) continue;
        const cv::Point top =
            *std::min_element(polygons[k].begin(), polygons[k].end(),
                              [](const cv::Point& a, const cv::Point& b) { return a.y < b.y; });
        const cv::Point text(top.x >> kShift, std::max(12, (top.y >> kShift) - 4));
        cv::putText(bgr, absl::StrCat("#", marks->ids[k]), text, cv::FONT_HERSHEY_SIMPLEX, 0.45,
                    colour, 1, cv::LINE_AA);
      }
    }
    for (size_t i = 0; i < blobs.size(); ++i) {
      const Blob& b = blobs[i];
      const cv::Point c = at(b.x, b.y);
      const int r = static_cast<int>(std::lround(b.sigma * std::sqrt(2.0) * zoom * kScale));
      const bool amorphous = marks != nullptr && !marks->amorphous.empty() && marks->amorphous[i];
      const int label =
          sublattices != nullptr && !sublattices->labels.empty() ? sublattices->labels[i] : -1;
      const cv::Scalar colour =
          amorphous ? kAmorphous : (label >= 0 ? SublatticeColour(label) : kCircle);
      cv::circle(bgr, c, r, colour, 1, cv::LINE_AA, kShift);
      if (options.draw_centers)
        cv::circle(bgr, c, static_cast<int>(kScale), kCenter, -1, cv::LINE_AA, kShift);
    }
    if (sublattices != nullptr && !sublattices->names.empty()) DrawLegend(bgr, sublattices->names);
    // Last, so that nothing covers it.
    if (marks != nullptr && marks->uncertain) {
      const std::string banner =
          absl::StrCat("amorphous: UNCERTAIN", marks->uncertain_label.empty() ? "" : " (",
                       marks->uncertain_label, marks->uncertain_label.empty() ? "" : ")");
      cv::rectangle(bgr, cv::Rect(0, 0, bgr.cols, 22), cv::Scalar(0, 0, 0), cv::FILLED);
      cv::putText(bgr, banner, cv::Point(6, 16), cv::FONT_HERSHEY_SIMPLEX, 0.5, kUncertain, 1,
                  cv::LINE_AA);
    }
    return bgr;
  } catch (const cv::Exception& e) {
    return absl::InternalError(absl::StrCat("overlay rendering failed: ", e.what()));
  }
}

}  // namespace

cv::Scalar SublatticeColour(int index) {
  static const cv::Scalar kPalette[] = {
      cv::Scalar(255, 255, 0),    // cyan
      cv::Scalar(255, 100, 0),    // blue
      cv::Scalar(255, 255, 255),  // white
      cv::Scalar(211, 0, 148),    // violet
  };
  constexpr int kSize = static_cast<int>(std::size(kPalette));
  return kPalette[((index % kSize) + kSize) % kSize];
}

absl::StatusOr<cv::Mat> RenderBlobOverlay(const cv::Mat& frame, absl::Span<const Blob> blobs,
                                          const OverlayOptions& options) {
  return Render(frame, blobs, nullptr, nullptr, options);
}

absl::StatusOr<cv::Mat> RenderAmorphousOverlay(const cv::Mat& frame, absl::Span<const Blob> blobs,
                                               const AmorphousMarks& marks,
                                               const OverlayOptions& options) {
  return RenderOverlay(frame, blobs, marks, SublatticeMarks{}, options);
}

absl::StatusOr<cv::Mat> RenderOverlay(const cv::Mat& frame, absl::Span<const Blob> blobs,
                                      const AmorphousMarks& amorphous,
                                      const SublatticeMarks& sublattices,
                                      const OverlayOptions& options) {
  if (absl::Status s = CheckMarks(blobs, amorphous, sublattices); !s.ok()) return s;
  return Render(frame, blobs, &amorphous, &sublattices, options);
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
