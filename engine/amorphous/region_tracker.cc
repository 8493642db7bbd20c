#include "engine/amorphous/region_tracker.h"

#include <algorithm>
#include <cmath>
#include <set>
#include <tuple>
#include <utility>

#include <opencv2/core.hpp>
#include <opencv2/imgproc.hpp>

#include "absl/strings/str_cat.h"

namespace logstar {
namespace {

std::vector<cv::Point> ToPoints(const std::vector<PointXY>& contour) {
  std::vector<cv::Point> out;
  out.reserve(contour.size());
  for (const PointXY& p : contour) {
    out.emplace_back(static_cast<int>(std::lround(p.x)), static_cast<int>(std::lround(p.y)));
  }
  return out;
}

// A filled outline: its points and their bounding box (pixels).
struct Shape {
  std::vector<cv::Point> points;
  cv::Rect box;
  double area = 0.0;
};

Shape MakeShape(const std::vector<PointXY>& contour, double area) {
  Shape s{ToPoints(contour), {}, area};
  if (!s.points.empty()) s.box = cv::boundingRect(s.points);
  return s;
}

// Pixels inside both filled outlines.
double Overlap(const Shape& a, const Shape& b) {
  const cv::Rect both = a.box & b.box;
  if (both.empty()) return 0.0;
  cv::Mat ma = cv::Mat::zeros(both.size(), CV_8U), mb = ma.clone();
  const std::vector<std::vector<cv::Point>> pa = {a.points}, pb = {b.points};
  cv::fillPoly(ma, pa, cv::Scalar(255), cv::LINE_8, 0, -both.tl());
  cv::fillPoly(mb, pb, cv::Scalar(255), cv::LINE_8, 0, -both.tl());
  return cv::countNonZero(ma & mb);
}

}  // namespace

absl::Status RegionTrackerOptions::Validate() const {
  if (!(min_overlap > 0.0 && min_overlap <= 1.0)) {
    return absl::InvalidArgumentError(
        absl::StrCat("region tracking min_overlap must be in (0, 1], got ", min_overlap));
  }
  if (!(keep_ratio > 0.0 && keep_ratio <= 1.0)) {
    return absl::InvalidArgumentError(
        absl::StrCat("region tracking keep_ratio must be in (0, 1], got ", keep_ratio));
  }
  if (memory_frames < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("region tracking memory_frames must be >= 0, got ", memory_frames));
  }
  return absl::OkStatus();
}

RegionTracker::RegionTracker(const RegionTrackerOptions& options, RegionTrackerState state)
    : options_(options), state_(std::move(state)) {}

absl::Status RegionTracker::Check(const RegionTrackerState& state) {
  std::set<int> seen;
  for (const RegionTrack& t : state.tracks) {
    std::string bad;
    if (t.id < 1 || t.id >= state.next_id) {
      bad = absl::StrCat("id ", t.id, " is not in [1, next_id = ", state.next_id, ")");
    } else if (!seen.insert(t.id).second) {
      bad = absl::StrCat("id ", t.id, " is repeated");
    } else if (t.contour.empty()) {
      bad = absl::StrCat("track ", t.id, " has no outline");
    } else if (!(t.area_px2 > 0.0 && std::isfinite(t.area_px2)) || t.missed < 0) {
      bad = absl::StrCat("track ", t.id, " has area ", t.area_px2, " px² and missed ", t.missed);
    }
    for (const PointXY& p : t.contour) {
      if (bad.empty() && !(std::isfinite(p.x) && std::isfinite(p.y) && std::abs(p.x) < 1e7 &&
                           std::abs(p.y) < 1e7)) {
        bad = absl::StrCat("track ", t.id, " has an outline point that is not finite");
      }
    }
    if (!bad.empty()) return absl::InvalidArgumentError(absl::StrCat("region tracks: ", bad));
  }
  return absl::OkStatus();
}

std::vector<std::tuple<double, int, int>> RegionTracker::Pairs(
    const std::vector<Region>& regions) const {
  std::vector<Shape> now;
  now.reserve(regions.size());
  for (const Region& r : regions) now.push_back(MakeShape(r.contour, r.area_px2));
  std::vector<Shape> before;
  before.reserve(state_.tracks.size());
  for (const RegionTrack& t : state_.tracks) before.push_back(MakeShape(t.contour, t.area_px2));
  std::vector<std::tuple<double, int, int>> pairs;
  for (size_t j = 0; j < before.size(); ++j) {
    for (size_t i = 0; i < now.size(); ++i) {
      if (now[i].points.empty()) continue;
      const double overlap = Overlap(now[i], before[j]);
      const double smaller = std::min(now[i].area, before[j].area);
      if (overlap > 0.0 && smaller > 0.0 && overlap / smaller >= options_.min_overlap) {
        pairs.emplace_back(overlap, static_cast<int>(j), static_cast<int>(i));
      }
    }
  }
  std::sort(pairs.begin(), pairs.end(), [&](const auto& a, const auto& b) {
    if (std::get<0>(a) != std::get<0>(b)) return std::get<0>(a) > std::get<0>(b);
    const int ida = state_.tracks[std::get<1>(a)].id, idb = state_.tracks[std::get<1>(b)].id;
    if (ida != idb) return ida < idb;
    return std::get<2>(a) < std::get<2>(b);
  });
  return pairs;
}

std::vector<bool> RegionTracker::Reportable(const std::vector<Region>& regions,
                                            double appear_area_px2) const {
  std::vector<bool> out(regions.size());
  for (size_t i = 0; i < regions.size(); ++i) out[i] = regions[i].area_px2 >= appear_area_px2;
  for (const auto& [overlap, j, i] : Pairs(regions)) {
    if (regions[i].area_px2 >= options_.keep_ratio * appear_area_px2) out[i] = true;
  }
  return out;
}

void RegionTracker::Update(std::vector<Region>& regions) {
  const std::vector<std::tuple<double, int, int>> pairs = Pairs(regions);
  std::vector<int> track_of(regions.size(), -1);
  std::vector<char> used(state_.tracks.size(), 0);
  for (const auto& [overlap, j, i] : pairs) {
    if (track_of[i] >= 0 || used[j]) continue;
    track_of[i] = j;
    used[j] = 1;
  }

  std::vector<RegionTrack> next;
  for (size_t i = 0; i < regions.size(); ++i) {
    const int j = track_of[i];
    regions[i].id = j >= 0 ? state_.tracks[j].id : state_.next_id++;
    if (regions[i].contour.empty() || !(regions[i].area_px2 > 0.0)) continue;  // nothing to track
    next.push_back({regions[i].id, 0, regions[i].area_px2, regions[i].contour});
  }
  for (size_t j = 0; j < state_.tracks.size(); ++j) {
    if (used[j] || state_.tracks[j].missed >= options_.memory_frames) continue;
    RegionTrack kept = std::move(state_.tracks[j]);
    ++kept.missed;
    next.push_back(std::move(kept));
  }
  std::sort(next.begin(), next.end(),
            [](const RegionTrack& a, const RegionTrack& b) { return a.id < b.id; });
  state_.tracks = std::move(next);
}

}  // namespace logstar
