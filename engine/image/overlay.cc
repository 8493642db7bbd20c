#include "engine/image/overlay.h"

#include <algorithm>
#include <cmath>
#include <iterator>
#include <numbers>
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

// The scale bar's length: the longest 1, 2 or 5 x 10^k angstrom that fits
// in `max_angstrom`.
double NiceLength(double max_angstrom) {
  const double decade = std::pow(10.0, std::floor(std::log10(max_angstrom)));
  for (const double m : {5.0, 2.0, 1.0}) {
    if (m * decade <= max_angstrom) return m * decade;
  }
  return decade;
}

// "5 A" below 1 nm (the ring of the Å drawn by hand: the Hershey fonts have
// no Å), else "2 nm".
void DrawLengthLabel(cv::Mat& bgr, double angstrom, cv::Point at, const cv::Scalar& colour) {
  constexpr double kFont = 0.45;
  const bool nm = angstrom >= 10.0;
  const std::string number = absl::StrCat(nm ? angstrom / 10.0 : angstrom, " ");
  const std::string unit = nm ? "nm" : "A";
  cv::putText(bgr, number + unit, at, cv::FONT_HERSHEY_SIMPLEX, kFont, colour, 1, cv::LINE_AA);
  if (!nm) {
    int baseline = 0;
    const int x0 =
        at.x + cv::getTextSize(number, cv::FONT_HERSHEY_SIMPLEX, kFont, 1, &baseline).width;
    const cv::Size a = cv::getTextSize("A", cv::FONT_HERSHEY_SIMPLEX, kFont, 1, &baseline);
    cv::circle(bgr, cv::Point(x0 + a.width / 2, at.y - a.height - 3), 2, colour, 1, cv::LINE_AA);
  }
}

struct LegendItem {
  std::string name;
  cv::Scalar colour;
};

// The legend's items: the marks this picture draws.
std::vector<LegendItem> LegendItems(absl::Span<const Blob> blobs, const AmorphousMarks* marks,
                                    const SublatticeMarks* sublattices,
                                    const OverlayOptions& options, const cv::Scalar& atom,
                                    const cv::Scalar& amorphous) {
  std::vector<LegendItem> items;
  const bool named = sublattices != nullptr && !sublattices->names.empty();
  bool plain = !named;
  if (named) {
    for (const int label : sublattices->labels) plain |= label < 0;
  }
  if (plain || blobs.empty()) items.push_back({"atom", atom});
  if (named) {
    for (size_t i = 0; i < sublattices->names.size(); ++i) {
      items.push_back({sublattices->names[i], SublatticeColour(static_cast<int>(i))});
    }
  }
  if (marks != nullptr &&
      std::find(marks->amorphous.begin(), marks->amorphous.end(), true) != marks->amorphous.end()) {
    items.push_back({"amorphous", amorphous});
  }
  if (std::any_of(options.fits.begin(), options.fits.end(),
                  [](const ColumnFit& f) { return f.status != ColumnFitStatus::kOk; })) {
    items.push_back({"fit failed", kFitFailedColour});
  }
  for (const auto& [state, name] : {std::pair{WindowMark::kHit, "window: cache hit"},
                                    std::pair{WindowMark::kTuned, "window: tuned"},
                                    std::pair{WindowMark::kRetuned, "window: re-tuned"}}) {
    for (const OverlayWindow& w : options.windows) {
      if (w.state == state) {
        items.push_back({name, WindowColour(state)});
        break;
      }
    }
  }
  return items;
}

// The footer (OverlayOptions::footer) below `frame_part` (the drawn frame):
// returns the taller picture.
cv::Mat AddFooter(const cv::Mat& frame_part, int zoom, const std::vector<LegendItem>& items,
                  const OverlayOptions& options) {
  constexpr double kFont = 0.45;
  constexpr int kPad = 6, kSwatchW = 12, kSwatchH = 10, kGap = 14;
  const cv::Scalar kText(255, 255, 255);
  const int width = frame_part.cols;
  // Lay the legend out first, to know how many lines it takes.
  std::vector<cv::Point> at;  // each item's swatch, relative to the legend's top-left
  int x = kPad, line = 0;
  for (const LegendItem& item : items) {
    int baseline = 0;
    const int w = kSwatchW + 4 +
                  cv::getTextSize(item.name, cv::FONT_HERSHEY_SIMPLEX, kFont, 1, &baseline).width;
    if (x > kPad && x + w > width - kPad) {
      x = kPad;
      ++line;
    }
    at.emplace_back(x, line * kFooterLine);
    x += w + kGap;
  }
  const int legend_lines = items.empty() ? 0 : line + 1;
  cv::Mat out(frame_part.rows + kFooterLine * (1 + legend_lines), width, CV_8UC3,
              cv::Scalar(0, 0, 0));
  frame_part.copyTo(out(cv::Rect(0, 0, width, frame_part.rows)));
  const int top = frame_part.rows;
  const int text_y = top + kFooterLine - 6;
  std::string label;
  if (options.frame_number >= 0) label = absl::StrCat("frame ", options.frame_number);
  if (zoom > 1) absl::StrAppend(&label, label.empty() ? "" : "   ", "x", zoom, " (enlarged)");
  if (!label.empty()) {
    cv::putText(out, label, cv::Point(kPad, text_y), cv::FONT_HERSHEY_SIMPLEX, kFont, kText, 1,
                cv::LINE_AA);
  }
  if (options.pixel_size_angstrom > 0.0) {
    // Output pixels per angstrom: zoom per frame pixel.
    const double px_per_angstrom = zoom / options.pixel_size_angstrom;
    const double length = NiceLength(width / 5.0 / px_per_angstrom);
    const int bar = std::max(1, static_cast<int>(std::lround(length * px_per_angstrom)));
    const int x1 = width - kPad, x0 = x1 - bar;
    cv::rectangle(out, cv::Rect(x0, top + kFooterLine / 2 - 2, bar, 4), kText, cv::FILLED);
    int baseline = 0;
    const int label_w =
        cv::getTextSize("00 nm", cv::FONT_HERSHEY_SIMPLEX, kFont, 1, &baseline).width;
    DrawLengthLabel(out, length, cv::Point(std::max(kPad, x0 - label_w - 8), text_y), kText);
  }
  for (size_t i = 0; i < items.size(); ++i) {
    const cv::Point p(at[i].x, top + kFooterLine * (1 + at[i].y / kFooterLine) + 5);
    cv::rectangle(out, cv::Rect(p.x, p.y, kSwatchW, kSwatchH), items[i].colour, cv::FILLED);
    cv::putText(out, items[i].name, cv::Point(p.x + kSwatchW + 4, p.y + kSwatchH),
                cv::FONT_HERSHEY_SIMPLEX, kFont, kText, 1, cv::LINE_AA);
  }
  return out;
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
  if (!options.fits.empty() && options.fits.size() != blobs.size()) {
    return absl::InvalidArgumentError(absl::StrCat("overlay: fits holds ", options.fits.size(),
                                                   " fits for ", blobs.size(),
                                                   " blobs (one per blob, or none)"));
  }
  if (!std::isfinite(options.pixel_size_angstrom) || options.pixel_size_angstrom < 0.0) {
    return absl::InvalidArgumentError(
        absl::StrCat("overlay: pixel_size_angstrom must be >= 0 (0 = no scale bar), got ",
                     options.pixel_size_angstrom));
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
    // Window outlines first of all, then region outlines, so that the atoms
    // stay visible on top of them. A tile's outline runs along its border
    // pixels' outer edges.
    const int window_thickness = std::max(1, zoom / 4);
    for (const OverlayWindow& w : options.windows) {
      cv::rectangle(
          bgr,
          cv::Rect(w.tile.col0 * zoom, w.tile.row0 * zoom, w.tile.cols * zoom, w.tile.rows * zoom),
          WindowColour(w.state), window_thickness);
    }
    if (marks != nullptr) {
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
      const ColumnFit* fit = options.fits.empty() ? nullptr : &options.fits[i];
      if (fit != nullptr && fit->status == ColumnFitStatus::kOk) {
        const cv::Size axes(
            static_cast<int>(std::lround(fit->sigma_x * std::sqrt(2.0) * zoom * kScale)),
            static_cast<int>(std::lround(fit->sigma_y * std::sqrt(2.0) * zoom * kScale)));
        cv::ellipse(bgr, c, axes, fit->rotation * 180.0 / std::numbers::pi, 0.0, 360.0, colour, 1,
                    cv::LINE_AA, kShift);
      } else {
        cv::circle(bgr, c, r, colour, 1, cv::LINE_AA, kShift);
      }
      if (fit != nullptr && fit->status != ColumnFitStatus::kOk) {
        const int d = static_cast<int>(std::lround(b.sigma * zoom * kScale));
        cv::line(bgr, c + cv::Point(-d, -d), c + cv::Point(d, d), kFitFailedColour, 1, cv::LINE_AA,
                 kShift);
        cv::line(bgr, c + cv::Point(-d, d), c + cv::Point(d, -d), kFitFailedColour, 1, cv::LINE_AA,
                 kShift);
      }
      if (options.draw_centers)
        cv::circle(bgr, c, static_cast<int>(kScale), kCenter, -1, cv::LINE_AA, kShift);
    }
    if (sublattices != nullptr && !sublattices->names.empty() && !options.footer) {
      DrawLegend(bgr, sublattices->names);
    }
    // Last, so that nothing covers it.
    if (marks != nullptr && marks->uncertain) {
      const std::string banner =
          absl::StrCat("amorphous: UNCERTAIN", marks->uncertain_label.empty() ? "" : " (",
                       marks->uncertain_label, marks->uncertain_label.empty() ? "" : ")");
      cv::rectangle(bgr, cv::Rect(0, 0, bgr.cols, 22), cv::Scalar(0, 0, 0), cv::FILLED);
      cv::putText(bgr, banner, cv::Point(6, 16), cv::FONT_HERSHEY_SIMPLEX, 0.5, kUncertain, 1,
                  cv::LINE_AA);
    }
    if (!options.footer) return bgr;
    return AddFooter(bgr, zoom,
                     LegendItems(blobs, marks, sublattices, options, kCircle, kAmorphous), options);
  } catch (const cv::Exception& e) {
    return absl::InternalError(absl::StrCat("overlay rendering failed: ", e.what()));
  }
}

}  // namespace

cv::Scalar WindowColour(WindowMark state) {
  switch (state) {
    case WindowMark::kHit:
      return cv::Scalar(200, 170, 120);
    case WindowMark::kTuned:
      return cv::Scalar(40, 40, 230);
    case WindowMark::kRetuned:
      return cv::Scalar(0, 200, 255);
  }
  return cv::Scalar(255, 255, 255);
}

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
