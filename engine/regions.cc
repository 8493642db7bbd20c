#include "engine/regions.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <numbers>

#include <opencv2/imgproc.hpp>

#include "absl/strings/str_cat.h"

namespace logstar {

absl::Status RegionOptions::Validate() const {
  if (!(std::isfinite(radius_px) && radius_px > 0.0)) {
    return absl::InvalidArgumentError(absl::StrCat("radius_px must be > 0, got ", radius_px));
  }
  if (!(std::isfinite(closing_radius_px) && closing_radius_px >= 0.0)) {
    return absl::InvalidArgumentError(
        absl::StrCat("closing_radius_px must be >= 0, got ", closing_radius_px));
  }
  return absl::OkStatus();
}

absl::StatusOr<RegionSet> PaintRegions(int width, int height, absl::Span<const PointXY> atoms,
                                       const RegionOptions& options) {
  if (absl::Status s = options.Validate(); !s.ok()) return s;
  if (width <= 0 || height <= 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("frame size must be positive, got ", width, " x ", height));
  }
  for (const PointXY& a : atoms) {
    if (!std::isfinite(a.x) || !std::isfinite(a.y)) {
      return absl::InvalidArgumentError("regions: atom positions must be finite");
    }
  }
  cv::Mat mask = cv::Mat::zeros(height, width, CV_8U);
  if (atoms.empty()) return DescribeRegions(mask);

  // Closing by distance transforms, linear in pixels whatever the radii
  // (OpenCV's morphology with a 40 px disk was most of an evaluation).
  const double r = options.radius_px, c = options.closing_radius_px;
  // Whether a frame pixel is in the result depends only on centres within
  // r + 2c of it, so the canvas is the centres' bounding box grown by that
  // (and never more than that beyond the frame); centres outside it cannot
  // matter. The canvas margin also keeps the frame's edge out of the
  // erosion: regions are not glued to the edge.
  const int margin = static_cast<int>(std::ceil(r + 2.0 * c)) + 2;
  int x0 = std::numeric_limits<int>::max(), y0 = x0, x1 = std::numeric_limits<int>::min(), y1 = x1;
  std::vector<cv::Point> centres;
  centres.reserve(atoms.size());
  for (const PointXY& a : atoms) {
    // Clamped before the cast; anything this far out is dropped below.
    const double bound = 4.0 * (width + height + margin);
    const cv::Point p(static_cast<int>(std::lround(std::clamp(a.x, -bound, bound))),
                      static_cast<int>(std::lround(std::clamp(a.y, -bound, bound))));
    if (p.x < -margin || p.y < -margin || p.x >= width + margin || p.y >= height + margin) continue;
    centres.push_back(p);
    x0 = std::min(x0, p.x), x1 = std::max(x1, p.x), y0 = std::min(y0, p.y), y1 = std::max(y1, p.y);
  }
  if (centres.empty()) return DescribeRegions(mask);
  x0 = std::max(x0 - margin, -margin), y0 = std::max(y0 - margin, -margin);
  x1 = std::min(x1 + margin, width - 1 + margin), y1 = std::min(y1 + margin, height - 1 + margin);
  const int cols = x1 - x0 + 1, rows = y1 - y0 + 1;
  // The painted set P: the digital disk {|v| <= r} about each centre, as
  // row spans (half-width per row offset, exact in integers).
  const int ri = static_cast<int>(std::floor(r));
  std::vector<int> half(2 * ri + 1);
  for (int dy = -ri; dy <= ri; ++dy) {
    int w = static_cast<int>(std::floor(std::sqrt(std::max(0.0, r * r - dy * dy))));
    while (w > 0 && w * w + dy * dy > r * r) --w;
    while ((w + 1) * (w + 1) + dy * dy <= r * r) ++w;
    half[dy + ri] = w;
  }
  cv::Mat canvas = cv::Mat::zeros(rows, cols, CV_8U);
  for (const cv::Point& p : centres) {
    for (int dy = -ri; dy <= ri; ++dy) {
      const int y = p.y - y0 + dy;
      if (y < 0 || y >= rows) continue;
      const int a = std::max(0, p.x - x0 - half[dy + ri]);
      const int b = std::min(cols - 1, p.x - x0 + half[dy + ri]);
      if (a <= b) std::memset(canvas.ptr<uint8_t>(y) + a, 255, b - a + 1);
    }
  }
  if (c > 0.0) {
    // Dilation by the digital disk {|v| <= c}: {distance to P <= c}; then
    // erosion: {distance to the dilation's complement > c}. Exact Euclidean
    // transforms, so this is the morphological closing by that disk. The
    // tolerance keeps offsets of exactly c (such as (c, 0)) within the disk
    // despite float rounding.
    constexpr double kTolerance = 1e-4;
    cv::Mat distance;
    cv::distanceTransform(~canvas, distance, cv::DIST_L2, cv::DIST_MASK_PRECISE, CV_32F);
    canvas = distance <= c + kTolerance;
    cv::distanceTransform(canvas, distance, cv::DIST_L2, cv::DIST_MASK_PRECISE, CV_32F);
    canvas = distance > c + kTolerance;
  }
  // The frame's part of the canvas.
  const cv::Rect frame_in_canvas =
      cv::Rect(-x0, -y0, width, height) & cv::Rect(cv::Point(0, 0), canvas.size());
  canvas(frame_in_canvas).copyTo(mask(frame_in_canvas + cv::Point(x0, y0)));
  return DescribeRegions(mask);
}

absl::StatusOr<RegionSet> DescribeRegions(const cv::Mat& mask) {
  if (mask.empty() || mask.type() != CV_8UC1) {
    return absl::InvalidArgumentError("regions: the mask must be a non-empty CV_8U image");
  }
  const int width = mask.cols, height = mask.rows;
  RegionSet set;
  set.mask = mask != 0;  // 255 inside, whatever the caller's non-zero value

  cv::Mat labels, stats, centroids;
  const int n = cv::connectedComponentsWithStats(set.mask, labels, stats, centroids, 8, CV_32S);
  std::vector<std::vector<cv::Point>> contours;
  cv::findContours(set.mask.clone(), contours, cv::RETR_EXTERNAL, cv::CHAIN_APPROX_NONE);
  set.regions.resize(n > 0 ? n - 1 : 0);
  for (int i = 1; i < n; ++i) {
    Region& g = set.regions[i - 1];
    g.area_px2 = stats.at<int>(i, cv::CC_STAT_AREA);
    g.centroid = {centroids.at<double>(i, 0), centroids.at<double>(i, 1)};
    g.bbox = {stats.at<int>(i, cv::CC_STAT_LEFT), stats.at<int>(i, cv::CC_STAT_TOP),
              stats.at<int>(i, cv::CC_STAT_WIDTH), stats.at<int>(i, cv::CC_STAT_HEIGHT)};
  }
  for (const std::vector<cv::Point>& c : contours) {
    const int label = labels.at<int>(c[0].y, c[0].x);
    if (label < 1 || label >= n) continue;
    Region& g = set.regions[label - 1];
    // A one-pixel region has a zero-length contour; count its four sides.
    g.perimeter_px = c.size() > 1 ? cv::arcLength(c, /*closed=*/true) : 4.0;
    g.contour.clear();
    for (const cv::Point& p : c)
      g.contour.push_back({static_cast<double>(p.x), static_cast<double>(p.y)});
  }
  double area = 0.0, perimeter = 0.0;
  for (const Region& g : set.regions) area += g.area_px2, perimeter += g.perimeter_px;
  const double frame = static_cast<double>(width) * height;
  set.area_fraction = area / frame;
  set.perimeter_norm = perimeter / std::sqrt(frame);
  set.isoperimetric =
      perimeter > 0.0 ? 4.0 * std::numbers::pi * area / (perimeter * perimeter) : 0.0;
  return set;
}

}  // namespace logstar
