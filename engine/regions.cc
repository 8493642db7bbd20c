#include "engine/regions.h"

#include <cmath>
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
  RegionSet set;
  // Padded by the closing radius so that closing does not glue regions to
  // the frame's edge (OpenCV's default border would).
  const int pad = static_cast<int>(std::ceil(options.closing_radius_px)) + 1;
  cv::Mat big = cv::Mat::zeros(height + 2 * pad, width + 2 * pad, CV_8U);
  const int r = std::max(1, static_cast<int>(std::lround(options.radius_px)));
  for (const PointXY& a : atoms) {
    if (!std::isfinite(a.x) || !std::isfinite(a.y)) {
      return absl::InvalidArgumentError("regions: atom positions must be finite");
    }
    cv::circle(big,
               cv::Point(static_cast<int>(std::lround(a.x)) + pad,
                         static_cast<int>(std::lround(a.y)) + pad),
               r, cv::Scalar(255), cv::FILLED, cv::LINE_8);
  }
  const int cr = static_cast<int>(std::lround(options.closing_radius_px));
  if (cr > 0 && !atoms.empty()) {
    const cv::Mat disk =
        cv::getStructuringElement(cv::MORPH_ELLIPSE, cv::Size(2 * cr + 1, 2 * cr + 1));
    cv::morphologyEx(big, big, cv::MORPH_CLOSE, disk, cv::Point(-1, -1), 1, cv::BORDER_CONSTANT,
                     cv::Scalar(0));
  }
  return DescribeRegions(big(cv::Rect(pad, pad, width, height)).clone());
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
