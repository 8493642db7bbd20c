#include "engine/physics/accuracy.h"

#include <algorithm>
#include <cmath>
#include <tuple>
#include <unordered_map>
#include <vector>

#include "absl/strings/str_cat.h"

namespace logstar {
namespace {

absl::Status CheckFinite(absl::Span<const PointXY> points, const char* what) {
  for (size_t i = 0; i < points.size(); ++i) {
    if (!std::isfinite(points[i].x) || !std::isfinite(points[i].y)) {
      return absl::InvalidArgumentError(
          absl::StrCat(what, " point ", i, " has a non-finite coordinate"));
    }
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<Accuracy> MatchToTruth(absl::Span<const PointXY> detected,
                                      absl::Span<const PointXY> truth, double radius_px) {
  if (!std::isfinite(radius_px) || radius_px <= 0.0) {
    return absl::InvalidArgumentError(
        absl::StrCat("radius_px must be positive and finite, got ", radius_px));
  }
  if (absl::Status s = CheckFinite(detected, "detected"); !s.ok()) return s;
  if (absl::Status s = CheckFinite(truth, "truth"); !s.ok()) return s;

  // Truth points bucketed in cells of the radius: candidates lie in the 3×3
  // cells around a detection, so pairing is linear in the number of points.
  auto key = [radius_px](double x, double y) {
    const int64_t cx = static_cast<int64_t>(std::floor(x / radius_px));
    const int64_t cy = static_cast<int64_t>(std::floor(y / radius_px));
    return std::pair<int64_t, int64_t>(cx, cy);
  };
  struct PairHash {
    size_t operator()(const std::pair<int64_t, int64_t>& p) const {
      return std::hash<int64_t>()(p.first * 73856093) ^ std::hash<int64_t>()(p.second * 19349663);
    }
  };
  std::unordered_map<std::pair<int64_t, int64_t>, std::vector<int>, PairHash> cells;
  for (size_t j = 0; j < truth.size(); ++j) {
    cells[key(truth[j].x, truth[j].y)].push_back(static_cast<int>(j));
  }
  std::vector<std::tuple<double, int, int>> pairs;  // (distance, detection, truth)
  for (size_t i = 0; i < detected.size(); ++i) {
    const auto [cx, cy] = key(detected[i].x, detected[i].y);
    for (int64_t dy = -1; dy <= 1; ++dy) {
      for (int64_t dx = -1; dx <= 1; ++dx) {
        auto it = cells.find({cx + dx, cy + dy});
        if (it == cells.end()) continue;
        for (int j : it->second) {
          const double d = std::hypot(detected[i].x - truth[j].x, detected[i].y - truth[j].y);
          if (d <= radius_px) pairs.emplace_back(d, static_cast<int>(i), j);
        }
      }
    }
  }
  std::sort(pairs.begin(), pairs.end());
  std::vector<char> used_detected(detected.size(), 0), used_truth(truth.size(), 0);
  Accuracy a;
  a.num_detected = static_cast<int>(detected.size());
  a.num_true = static_cast<int>(truth.size());
  double sum_sq = 0.0;
  for (const auto& [d, i, j] : pairs) {
    if (used_detected[i] || used_truth[j]) continue;
    used_detected[i] = used_truth[j] = 1;
    ++a.true_positives;
    sum_sq += d * d;
  }
  if (a.num_detected > 0) a.precision = static_cast<double>(a.true_positives) / a.num_detected;
  if (a.num_true > 0) a.recall = static_cast<double>(a.true_positives) / a.num_true;
  if (a.precision + a.recall > 0.0) {
    a.f1 = 2.0 * a.precision * a.recall / (a.precision + a.recall);
  }
  if (a.true_positives > 0) a.rms_px = std::sqrt(sum_sq / a.true_positives);
  return a;
}

}  // namespace logstar
