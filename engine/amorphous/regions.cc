#include "engine/amorphous/regions.h"

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

namespace {

// w[g] = the largest integer w with w² + g² <= r², for g = 0..floor(r): the
// half-width of the digital disk {|v| <= r} at row offset g. Exact in
// integers (r² compared with integer sums).
std::vector<int> DiskHalfWidths(double r) {
  const int n = static_cast<int>(std::floor(r));
  std::vector<int> w(n + 1);
  for (int g = 0; g <= n; ++g) {
    int h = static_cast<int>(std::floor(std::sqrt(std::max(0.0, r * r - double(g) * g))));
    while (h > 0 && double(h) * h + double(g) * g > r * r) --h;
    while (double(h + 1) * (h + 1) + double(g) * g <= r * r) ++h;
    w[g] = h;
  }
  return w;
}

// Dilation of `set` (CV_8U, 0 or 255) by the digital disk {|v| <= r}, in
// place, in time linear in pixels whatever r: a pixel is covered iff some
// set pixel x' lies within the disk, i.e. |x - x'| <= w[g(x')] with g the
// vertical distance from x' to the nearest set pixel of its column. Column
// pass: g by a forward and a backward sweep over rows (saturated past r).
// Row pass: the furthest reach of the intervals to the left and to the right.
// Pixels outside the image count as not in the set; with `invert` the
// complement is dilated instead and the result complemented back (an
// erosion, for which outside pixels count as in the set).
void DilateByDisk(cv::Mat& set, double r, bool invert, ExecutionContext* context) {
  const std::vector<int> w = DiskHalfWidths(r);
  const int far = static_cast<int>(w.size());  // g >= far: too far to matter
  const int rows = set.rows, cols = set.cols;
  const uint8_t on = invert ? 0 : 255;
  // reach[g]: how far right (and left) a pixel at vertical distance g
  // covers; "too far" reaches nowhere (a large negative number), so the row
  // sweeps below need no branch.
  std::vector<int> reach_of(far + 1, -(1 << 29));
  for (int g = 0; g < far; ++g) reach_of[g] = w[g];
  cv::Mat g(rows, cols, CV_16U);
  // Each column's pass is independent of the others, each row's pass too:
  // blocks of them run in the context's arena when there is one.
  auto column_block = [&](int x0, int x1) {
    for (int y = 0; y < rows; ++y) {
      const uint8_t* in = set.ptr<uint8_t>(y);
      uint16_t* gy = g.ptr<uint16_t>(y);
      const uint16_t* above = y > 0 ? g.ptr<uint16_t>(y - 1) : nullptr;
      for (int x = x0; x < x1; ++x) {
        const int up = above != nullptr ? std::min(above[x] + 1, far) : far;
        gy[x] = static_cast<uint16_t>(in[x] == on ? 0 : up);
      }
    }
    for (int y = rows - 2; y >= 0; --y) {
      uint16_t* gy = g.ptr<uint16_t>(y);
      const uint16_t* below = g.ptr<uint16_t>(y + 1);
      for (int x = x0; x < x1; ++x)
        gy[x] = static_cast<uint16_t>(std::min<int>(gy[x], below[x] + 1));
    }
  };
  auto blocks = [&](int n, int block, auto&& body) {
    const int count = (n + block - 1) / block;
    auto run = [&](int b) { body(b * block, std::min(n, (b + 1) * block)); };
    if (context != nullptr && count > 1) {
      context->ParallelFor(count, run);
    } else {
      for (int b = 0; b < count; ++b) run(b);
    }
  };
  blocks(cols, 256, column_block);
  const int* reach_table = reach_of.data();
  const uint8_t off = static_cast<uint8_t>(255 - on);
  blocks(rows, 64, [&](int y0, int y1) {
    for (int y = y0; y < y1; ++y) {
      const uint16_t* gy = g.ptr<uint16_t>(y);
      uint8_t* out = set.ptr<uint8_t>(y);
      int reach = -1;  // rightmost pixel covered by an interval starting at or before x
      for (int x = 0; x < cols; ++x) {
        reach = std::max(reach, x + reach_table[gy[x]]);
        out[x] = reach >= x ? on : off;
      }
      reach = cols;  // leftmost pixel covered by an interval starting at or after x
      for (int x = cols - 1; x >= 0; --x) {
        reach = std::min(reach, x - reach_table[gy[x]]);
        out[x] = reach <= x ? on : out[x];
      }
    }
  });
}

}  // namespace

absl::StatusOr<RegionSet> PaintRegions(int width, int height, absl::Span<const PointXY> atoms,
                                       const RegionOptions& options, ExecutionContext* context) {
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

  // Closing by separable exact disk dilations, linear in pixels whatever the
  // radii (OpenCV's morphology with a 40 px disk was most of an evaluation).
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
  // row spans.
  const std::vector<int> half = DiskHalfWidths(r);
  const int ri = static_cast<int>(half.size()) - 1;
  cv::Mat canvas = cv::Mat::zeros(rows, cols, CV_8U);
  for (const cv::Point& p : centres) {
    for (int dy = -ri; dy <= ri; ++dy) {
      const int y = p.y - y0 + dy;
      if (y < 0 || y >= rows) continue;
      const int a = std::max(0, p.x - x0 - half[std::abs(dy)]);
      const int b = std::min(cols - 1, p.x - x0 + half[std::abs(dy)]);
      if (a <= b) std::memset(canvas.ptr<uint8_t>(y) + a, 255, b - a + 1);
    }
  }
  if (c > 0.0) {
    // Closing by the digital disk {|v| <= c}: dilation, then erosion.
    DilateByDisk(canvas, c, /*invert=*/false, context);
    DilateByDisk(canvas, c, /*invert=*/true, context);
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

absl::StatusOr<RegionSet> DropRegions(const RegionSet& set, const std::vector<bool>& keep) {
  if (keep.size() != set.regions.size()) {
    return absl::InvalidArgumentError(
        absl::StrCat("regions: ", keep.size(), " keep flags for ", set.regions.size(), " regions"));
  }
  if (std::all_of(keep.begin(), keep.end(), [](bool k) { return k; })) return set;
  // Each dropped region is the connected component holding a point of its
  // outer contour (a pixel of the region itself).
  cv::Mat labels;
  cv::connectedComponents(set.mask, labels, 8, CV_32S);
  cv::Mat mask = set.mask.clone();
  for (size_t k = 0; k < keep.size(); ++k) {
    if (keep[k] || set.regions[k].contour.empty()) continue;
    const PointXY& p = set.regions[k].contour[0];
    const int x = static_cast<int>(std::lround(p.x)), y = static_cast<int>(std::lround(p.y));
    if (x < 0 || y < 0 || x >= mask.cols || y >= mask.rows) continue;
    const int label = labels.at<int>(y, x);
    if (label > 0) mask.setTo(0, labels == label);
  }
  return DescribeRegions(mask);
}

}  // namespace logstar
