#include "server/steering.h"

#include <algorithm>
#include <cmath>
#include <map>
#include <tuple>

#include "absl/strings/str_format.h"

namespace logstar::server {
namespace {

// Thresholds of the reasons (see the header): above them a region counts.
constexpr double kErShare = 0.05;
constexpr double kCountDeviation = 0.2;

double Drift(const Rewards& now, const Rewards& tuned) {
  return std::max(std::abs(now.qc - tuned.qc), std::abs(now.er - tuned.er));
}

}  // namespace

std::vector<int> ErFlaggedAtoms(const FrameAnalysis& analysis, double ds_px, int num_neighbors) {
  const std::vector<Atom>& atoms = analysis.atoms;
  std::vector<int> flagged;
  if (!(ds_px > 0.0) || num_neighbors < 1 || static_cast<int>(atoms.size()) <= num_neighbors) {
    return flagged;
  }
  // A flagged atom has all k neighbours within DS (their distances sum to
  // less than DS), so only cells of size DS around it need a look.
  double min_x = atoms[0].x, min_y = atoms[0].y, max_x = min_x, max_y = min_y;
  for (const Atom& a : atoms) {
    min_x = std::min(min_x, a.x), max_x = std::max(max_x, a.x);
    min_y = std::min(min_y, a.y), max_y = std::max(max_y, a.y);
  }
  const int gw = static_cast<int>((max_x - min_x) / ds_px) + 1;
  const int gh = static_cast<int>((max_y - min_y) / ds_px) + 1;
  std::vector<std::vector<int>> cells(static_cast<size_t>(gw) * gh);
  auto cx = [&](const Atom& a) {
    return std::min(static_cast<int>((a.x - min_x) / ds_px), gw - 1);
  };
  auto cy = [&](const Atom& a) {
    return std::min(static_cast<int>((a.y - min_y) / ds_px), gh - 1);
  };
  for (size_t i = 0; i < atoms.size(); ++i) cells[cy(atoms[i]) * gw + cx(atoms[i])].push_back(i);
  std::vector<double> near;
  for (size_t i = 0; i < atoms.size(); ++i) {
    const Atom& a = atoms[i];
    near.clear();
    for (int gy = std::max(cy(a) - 1, 0); gy <= std::min(cy(a) + 1, gh - 1); ++gy) {
      for (int gx = std::max(cx(a) - 1, 0); gx <= std::min(cx(a) + 1, gw - 1); ++gx) {
        for (int j : cells[gy * gw + gx]) {
          if (j == static_cast<int>(i)) continue;
          const double d = std::hypot(atoms[j].x - a.x, atoms[j].y - a.y);
          if (d < ds_px) near.push_back(d);
        }
      }
    }
    if (static_cast<int>(near.size()) < num_neighbors) continue;
    std::partial_sort(near.begin(), near.begin() + num_neighbors, near.end());
    double sum = 0.0;
    for (int k = 0; k < num_neighbors; ++k) sum += near[k];
    if (sum < ds_px) flagged.push_back(static_cast<int>(i));
  }
  return flagged;
}

std::vector<SteeringRegion> FindRegionsOfInterest(const FrameAnalysis& analysis,
                                                  const SteeringOptions& options) {
  std::vector<SteeringRegion> out;
  if (options.max_regions <= 0) return out;

  // ER-flagged atoms, grouped by owning window.
  std::map<int, std::vector<int>> by_window;
  for (int i : ErFlaggedAtoms(analysis, analysis.rewards.ds_px, options.num_neighbors)) {
    by_window[analysis.atoms[i].window].push_back(i);
  }
  for (const auto& [w, members] : by_window) {
    double sx = 0.0, sy = 0.0, x0 = 1e300, y0 = 1e300, x1 = -1e300, y1 = -1e300;
    for (int i : members) {
      const Atom& a = analysis.atoms[i];
      sx += a.x, sy += a.y;
      x0 = std::min(x0, a.x), y0 = std::min(y0, a.y), x1 = std::max(x1, a.x),
      y1 = std::max(y1, a.y);
    }
    SteeringRegion r;
    r.reason = SteeringRegion::Reason::kErFlaggedAtoms;
    r.window = w;
    r.x = sx / members.size();
    r.y = sy / members.size();
    // The box of the atoms' centres, with one DS around them, clipped to the frame.
    const double pad = analysis.rewards.ds_px;
    const int c0 = std::max(0, static_cast<int>(std::floor(x0 - pad + 0.5)));
    const int r0 = std::max(0, static_cast<int>(std::floor(y0 - pad + 0.5)));
    const int c1 = std::min(analysis.width, static_cast<int>(std::floor(x1 + pad + 0.5)) + 1);
    const int r1 = std::min(analysis.height, static_cast<int>(std::floor(y1 + pad + 0.5)) + 1);
    r.box = {c0, r0, c1 - c0, r1 - r0};
    double expected = 0.0;
    if (w >= 0 && w < static_cast<int>(analysis.windows.size())) {
      expected = analysis.windows[w].rewards.num_expected;
    }
    r.score = members.size() / std::max(expected, 1.0) / kErShare;
    r.detail = absl::StrFormat("%d atoms closer than the prior allows", members.size());
    out.push_back(r);
  }

  for (const WindowResult& w : analysis.windows) {
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
  if (analysis.amorphous.has_value()) {
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
  std::stable_sort(out.begin(), out.end(), [](const SteeringRegion& a, const SteeringRegion& b) {
    return std::tuple(-a.score, static_cast<int>(a.reason), a.window) <
           std::tuple(-b.score, static_cast<int>(b.reason), b.window);
  });
  if (static_cast<int>(out.size()) > options.max_regions) out.resize(options.max_regions);
  return out;
}

}  // namespace logstar::server
