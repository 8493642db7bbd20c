#include "engine/analysis/steering.h"

#include <algorithm>
#include <cmath>
#include <string>
#include <tuple>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace logstar {
namespace {

// Thresholds of the reasons (see the header): above them a region counts.
constexpr double kErShare = 0.05;
constexpr double kCountDeviation = 0.2;

double Drift(const Rewards& now, const Rewards& tuned) {
  return std::max(std::abs(now.qc - tuned.qc), std::abs(now.er - tuned.er));
}

// The window's ER-flagged atoms as one region: their centroid, the box of
// their centres with one DS around it (clipped to the frame).
SteeringRegion ErRegion(const WindowResult& w, int width, int height) {
  const std::vector<PointXY>& atoms = w.er_flagged;
  double sx = 0.0, sy = 0.0, x0 = atoms[0].x, y0 = atoms[0].y, x1 = x0, y1 = y0;
  for (const PointXY& a : atoms) {
    sx += a.x, sy += a.y;
    x0 = std::min(x0, a.x), y0 = std::min(y0, a.y);
    x1 = std::max(x1, a.x), y1 = std::max(y1, a.y);
  }
  SteeringRegion r;
  r.reason = SteeringRegion::Reason::kErFlaggedAtoms;
  r.window = w.window.index;
  r.x = sx / atoms.size();
  r.y = sy / atoms.size();
  const double pad = w.rewards.ds_px;
  const int c0 = std::max(0, static_cast<int>(std::floor(x0 - pad + 0.5)));
  const int r0 = std::max(0, static_cast<int>(std::floor(y0 - pad + 0.5)));
  const int c1 = std::min(width, static_cast<int>(std::floor(x1 + pad + 0.5)) + 1);
  const int r1 = std::min(height, static_cast<int>(std::floor(y1 + pad + 0.5)) + 1);
  r.box = {c0, r0, c1 - c0, r1 - r0};
  r.score = atoms.size() / std::max(w.rewards.num_expected, 1.0) / kErShare;
  r.detail = absl::StrFormat("%d atoms closer than the prior allows", atoms.size());
  return r;
}

// The window's drift and count regions, when past their thresholds.
void WindowRegions(const WindowResult& w, const SteeringOptions& options,
                   std::vector<SteeringRegion>& out) {
  const PixelRegion& t = w.window.tile;
  const double cx = t.col0 + (t.cols - 1) / 2.0, cy = t.row0 + (t.rows - 1) / 2.0;
  const double drift = Drift(w.rewards, w.tuned_rewards);
  if (w.state == CacheState::kRetuned ||
      (w.state == CacheState::kHit && drift > 0.5 * options.drift_tolerance)) {
    SteeringRegion r;
    r.reason = SteeringRegion::Reason::kRewardDrift;
    r.window = w.window.index;
    r.x = cx, r.y = cy, r.box = t;
    r.score = w.state == CacheState::kRetuned ? 1.0 + drift : drift / options.drift_tolerance;
    r.detail = w.state == CacheState::kRetuned
                   ? std::string("rewards drifted past the tolerance: re-tuned")
                   : absl::StrFormat("rewards drifted by %.3f since tuning", drift);
    out.push_back(r);
  }
  if (w.rewards.qc > kCountDeviation) {
    SteeringRegion r;
    r.reason = SteeringRegion::Reason::kCountDeviation;
    r.window = w.window.index;
    r.x = cx, r.y = cy, r.box = t;
    r.score = w.rewards.qc / kCountDeviation;
    r.detail = absl::StrFormat("%d atoms where the prior expects %.1f", w.rewards.num_found,
                               w.rewards.num_expected);
    out.push_back(r);
  }
}

void AmorphousRegions(const FrameAnalysis& analysis, const SteeringOptions& options,
                      std::vector<SteeringRegion>& out) {
  const double frame_px2 = static_cast<double>(analysis.width) * analysis.height;
  for (const Region& g : analysis.amorphous->regions.regions) {
    SteeringRegion r;
    r.reason = SteeringRegion::Reason::kAmorphousRegion;
    r.x = g.centroid.x, r.y = g.centroid.y, r.box = g.bbox;
    const double share = frame_px2 > 0.0 ? g.area_px2 / frame_px2 : 0.0;
    r.score = share / options.amorphous_min_share;
    r.detail = absl::StrFormat("amorphous region covering %.1f %% of the frame", 100.0 * share);
    out.push_back(r);
  }
}

}  // namespace

absl::Status SteeringOptions::Validate() const {
  if (max_regions < 0) {
    return absl::InvalidArgumentError(absl::StrCat("max_regions must be >= 0, got ", max_regions));
  }
  if (!(std::isfinite(drift_tolerance) && drift_tolerance > 0.0)) {
    return absl::InvalidArgumentError(
        absl::StrCat("drift_tolerance must be positive, got ", drift_tolerance));
  }
  if (!(std::isfinite(amorphous_min_share) && amorphous_min_share > 0.0)) {
    return absl::InvalidArgumentError(
        absl::StrCat("amorphous_min_share must be positive, got ", amorphous_min_share));
  }
  return absl::OkStatus();
}

SteeringOptions SteeringOptionsFor(const AnalyzerOptions& analyzer, int max_regions) {
  SteeringOptions o;
  o.max_regions = max_regions;
  o.drift_tolerance = analyzer.drift_tolerance;
  o.amorphous_min_share = analyzer.amorphous.options.min_share;
  return o;
}

std::vector<SteeringRegion> FindRegionsOfInterest(const FrameAnalysis& analysis,
                                                  const SteeringOptions& options) {
  std::vector<SteeringRegion> out;
  if (options.max_regions <= 0) return out;
  for (const WindowResult& w : analysis.windows) {
    if (!w.er_flagged.empty()) out.push_back(ErRegion(w, analysis.width, analysis.height));
  }
  for (const WindowResult& w : analysis.windows) WindowRegions(w, options, out);
  if (analysis.amorphous.has_value()) AmorphousRegions(analysis, options, out);
  std::stable_sort(out.begin(), out.end(), [](const SteeringRegion& a, const SteeringRegion& b) {
    return std::tuple(-a.score, static_cast<int>(a.reason), a.window) <
           std::tuple(-b.score, static_cast<int>(b.reason), b.window);
  });
  if (static_cast<int>(out.size()) > options.max_regions) out.resize(options.max_regions);
  return out;
}

}  // namespace logstar
