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

// Atoms bucketed into square cells of a given size (compressed rows:
// one index array, one offset per cell).
class AtomGrid {
 public:
  AtomGrid(const std::vector<Atom>& atoms, double cell) : cell_(cell) {
    min_x_ = max_x_ = atoms[0].x;
    min_y_ = max_y_ = atoms[0].y;
    for (const Atom& a : atoms) {
      min_x_ = std::min(min_x_, a.x), max_x_ = std::max(max_x_, a.x);
      min_y_ = std::min(min_y_, a.y), max_y_ = std::max(max_y_, a.y);
    }
    // At most ~2 sqrt(n) cells a side: a DS far below the atoms' spacing
    // must not allocate a grid far larger than the atoms. Larger cells
    // only add candidates, never lose one.
    const double side = std::max(max_x_ - min_x_, max_y_ - min_y_);
    cell_ = std::max(cell_, side / (2.0 * std::ceil(std::sqrt(atoms.size()))));
    gw_ = static_cast<int>((max_x_ - min_x_) / cell_) + 1;
    gh_ = static_cast<int>((max_y_ - min_y_) / cell_) + 1;
    start_.assign(static_cast<size_t>(gw_) * gh_ + 1, 0);
    for (const Atom& a : atoms) ++start_[Cell(a) + 1];
    for (size_t c = 1; c < start_.size(); ++c) start_[c] += start_[c - 1];
    members_.resize(atoms.size());
    std::vector<int> fill(start_.begin(), start_.end() - 1);
    for (size_t i = 0; i < atoms.size(); ++i) members_[fill[Cell(atoms[i])]++] = i;
  }

  // Calls f(j, squared distance) for every other atom j in the 3 x 3 cells
  // around atom i: every atom closer than one cell, and some farther.
  template <typename F>
  void ForNeighbours(const std::vector<Atom>& atoms, int i, F&& f) const {
    const Atom& a = atoms[i];
    const int x = Col(a), y = Row(a);
    for (int gy = std::max(y - 1, 0); gy <= std::min(y + 1, gh_ - 1); ++gy) {
      const int row = gy * gw_;
      const int from = start_[row + std::max(x - 1, 0)];
      const int to = start_[row + std::min(x + 1, gw_ - 1) + 1];
      for (int m = from; m < to; ++m) {
        const int j = members_[m];
        if (j == i) continue;
        const double dx = atoms[j].x - a.x, dy = atoms[j].y - a.y;
        f(j, dx * dx + dy * dy);
      }
    }
  }

 private:
  int Col(const Atom& a) const {
    return std::min(static_cast<int>((a.x - min_x_) / cell_), gw_ - 1);
  }
  int Row(const Atom& a) const {
    return std::min(static_cast<int>((a.y - min_y_) / cell_), gh_ - 1);
  }
  size_t Cell(const Atom& a) const { return static_cast<size_t>(Row(a)) * gw_ + Col(a); }

  double cell_;
  double min_x_, min_y_, max_x_, max_y_;
  int gw_ = 0, gh_ = 0;
  std::vector<int> start_;    // cell c holds members_[start_[c], start_[c + 1])
  std::vector<int> members_;  // atom indices, cell by cell
};

}  // namespace

std::vector<int> ErFlaggedAtoms(const FrameAnalysis& analysis, double ds_px, int num_neighbors) {
  const std::vector<Atom>& atoms = analysis.atoms;
  std::vector<int> flagged;
  if (!(ds_px > 0.0) || num_neighbors < 1 || static_cast<int>(atoms.size()) <= num_neighbors) {
    return flagged;
  }
  // A flagged atom's k nearest distances sum to less than DS, so all k lie
  // within DS and the nearest within DS / k. The fine grid (cells of DS / k)
  // rules out most atoms of a crystal with ~9 comparisons each; only the
  // rest search the coarse grid (cells of DS). Squared distances throughout:
  // a square root per pair dominated the daemon's per-frame cost at 2048².
  const AtomGrid fine(atoms, ds_px / num_neighbors);
  const AtomGrid coarse(atoms, ds_px);
  const double ds2 = ds_px * ds_px;
  const double near2 = ds2 / (num_neighbors * num_neighbors);
  std::vector<double> near;
  for (size_t i = 0; i < atoms.size(); ++i) {
    bool any = false;
    fine.ForNeighbours(atoms, static_cast<int>(i),
                       [&](int, double d2) { any = any || d2 < near2; });
    if (!any) continue;
    near.clear();
    coarse.ForNeighbours(atoms, static_cast<int>(i), [&](int, double d2) {
      if (d2 < ds2) near.push_back(d2);
    });
    if (static_cast<int>(near.size()) < num_neighbors) continue;
    std::partial_sort(near.begin(), near.begin() + num_neighbors, near.end());
    double sum = 0.0;
    for (int k = 0; k < num_neighbors; ++k) sum += std::sqrt(near[k]);
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
