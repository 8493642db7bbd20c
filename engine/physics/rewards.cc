#include "engine/physics/rewards.h"

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <limits>
#include <numbers>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/types/span.h"
#include "engine/base/status_macros.h"
#include "engine/physics/crystallinity.h"
#include "engine/physics/lattice.h"
#include "engine/physics/physics_prior.h"

namespace logstar {
namespace {

absl::Status ValidateRegion(const PixelRegion& region) {
  if (region.cols <= 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("region.cols must be positive, got ", region.cols));
  }
  if (region.rows <= 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("region.rows must be positive, got ", region.rows));
  }
  return absl::OkStatus();
}

// Points bucketed into square cells (compressed rows: one index array, one
// offset per cell).
class PointGrid {
 public:
  // Cells of at least `min_cell` px (> 0), and at most ~2 sqrt(n) a side:
  // a DS far below the points' spacing must not allocate a grid far larger
  // than the points. Larger cells only make the search visit more points.
  PointGrid(absl::Span<const PointXY> points, double min_cell) {
    min_x_ = max_x_ = points[0].x;
    min_y_ = max_y_ = points[0].y;
    for (const PointXY& p : points) {
      min_x_ = std::min(min_x_, p.x), max_x_ = std::max(max_x_, p.x);
      min_y_ = std::min(min_y_, p.y), max_y_ = std::max(max_y_, p.y);
    }
    const double side = std::max(max_x_ - min_x_, max_y_ - min_y_);
    cell_ = std::max(min_cell, side / (2.0 * std::ceil(std::sqrt(points.size()))));
    // How far rounding may move a point across a cell boundary, with a wide
    // margin: a point closer than r cells less this is within r rings.
    const double magnitude =
        std::max({std::abs(min_x_), std::abs(max_x_), std::abs(min_y_), std::abs(max_y_)});
    slack_ = 1e-9 * (cell_ + magnitude);
    cols_ = static_cast<int>((max_x_ - min_x_) / cell_) + 1;
    rows_ = static_cast<int>((max_y_ - min_y_) / cell_) + 1;
    start_.assign(static_cast<size_t>(cols_) * rows_ + 1, 0);
    for (const PointXY& p : points) ++start_[Cell(p) + 1];
    for (size_t c = 1; c < start_.size(); ++c) start_[c] += start_[c - 1];
    members_.resize(points.size());
    std::vector<int> fill(start_.begin(), start_.end() - 1);
    for (size_t i = 0; i < points.size(); ++i) members_[fill[Cell(points[i])]++] = i;
  }

  // Calls f(j) for every point j whose cell meets the square of half-side r
  // around c (c may lie outside the points' extent); f checks the distance.
  template <typename F>
  void ForSquare(const PointXY& c, double r, F&& f) const {
    const double x0 = (c.x - r - min_x_) / cell_, x1 = (c.x + r - min_x_) / cell_;
    const double y0 = (c.y - r - min_y_) / cell_, y1 = (c.y + r - min_y_) / cell_;
    if (x1 < 0 || y1 < 0 || x0 >= cols_ || y0 >= rows_) return;
    const int col0 = static_cast<int>(std::floor(std::max(x0, 0.0)));
    const int col1 = static_cast<int>(std::min(x1, cols_ - 1.0));
    const int row0 = static_cast<int>(std::floor(std::max(y0, 0.0)));
    const int row1 = static_cast<int>(std::min(y1, rows_ - 1.0));
    for (int row = row0; row <= row1; ++row) ForRow(row, col0, col1, f);
  }

  double cell() const { return cell_; }
  double slack() const { return slack_; }
  int Col(const PointXY& p) const {
    return std::min(static_cast<int>((p.x - min_x_) / cell_), cols_ - 1);
  }
  int Row(const PointXY& p) const {
    return std::min(static_cast<int>((p.y - min_y_) / cell_), rows_ - 1);
  }

  // Calls f(j) for every point j in cells col0..col1 of row `row` (clipped
  // to the grid).
  template <typename F>
  void ForRow(int row, int col0, int col1, F&& f) const {
    if (row < 0 || row >= rows_) return;
    col0 = std::max(col0, 0);
    col1 = std::min(col1, cols_ - 1);
    if (col0 > col1) return;
    const size_t base = static_cast<size_t>(row) * cols_;
    for (int m = start_[base + col0]; m < start_[base + col1 + 1]; ++m) f(members_[m]);
  }

 private:
  size_t Cell(const PointXY& p) const { return static_cast<size_t>(Row(p)) * cols_ + Col(p); }

  double cell_ = 0.0, slack_ = 0.0;
  double min_x_, min_y_, max_x_, max_y_;
  int cols_ = 0, rows_ = 0;
  std::vector<int> start_;    // cell c holds members_[start_[c], start_[c + 1])
  std::vector<int> members_;  // point indices, cell by cell
};

// Whether point i's summed distance to its k nearest other points is below
// ds_px. Rings of cells are searched outward from the point's cell; after
// ring r every point closer than R = r cells (less the slack) has been
// seen, so the k nearest are known once the k-th seen is closer than R, and
// no unseen point can bring the sum below ds_px once the seen ones capped
// at R cannot. The two margins keep those early decisions away from any
// rounding: the sum that decides is formed as a k-d tree search forms it.
// `nearest` (size k) is scratch space.
bool Flagged(const PointGrid& grid, absl::Span<const PointXY> points, int i, int k, double ds_px,
             std::vector<double>& nearest) {
  const PointXY& p = points[i];
  int found = 0;  // nearest[0, found): the smallest squared distances seen, ascending
  auto visit = [&](int j) {
    if (j == i) return;
    const double dx = points[j].x - p.x, dy = points[j].y - p.y;
    const double d2 = dx * dx + dy * dy;
    if (found == k && d2 >= nearest[k - 1]) return;
    int at = found < k ? found++ : k - 1;
    for (; at > 0 && nearest[at - 1] > d2; --at) nearest[at] = nearest[at - 1];
    nearest[at] = d2;
  };
  const int col = grid.Col(p), row = grid.Row(p);
  // Cells are at least DS / k wide, so R >= DS after at most k + 1 rings;
  // from there the sum is decided either way (the bound is a safeguard).
  const int max_ring = static_cast<int>(std::ceil(ds_px / grid.cell())) + 2;
  for (int r = 1; r <= max_ring; ++r) {
    if (r == 1) {
      for (int y = row - 1; y <= row + 1; ++y) grid.ForRow(y, col - 1, col + 1, visit);
    } else {
      grid.ForRow(row - r, col - r, col + r, visit);
      grid.ForRow(row + r, col - r, col + r, visit);
      for (int y = row - r + 1; y <= row + r - 1; ++y) {
        grid.ForRow(y, col - r, col - r, visit);
        grid.ForRow(y, col + r, col + r, visit);
      }
    }
    const double reach = r * grid.cell() - grid.slack();
    const double reach2 = reach * reach;
    if (found == k && nearest[k - 1] < reach2) {
      double sum = 0.0;
      for (int n = 0; n < k; ++n) sum += std::sqrt(nearest[n]);
      return sum < ds_px;
    }
    double bound = (k - found) * reach;  // unseen neighbours are at least this far
    for (int n = 0; n < found; ++n) bound += nearest[n] < reach2 ? std::sqrt(nearest[n]) : reach;
    if (bound >= ds_px * (1.0 + 1e-9)) return false;
  }
  return false;
}

}  // namespace

std::vector<int> ErFlaggedPoints(absl::Span<const PointXY> points, double ds_px,
                                 int num_neighbors) {
  std::vector<int> flagged;
  if (!(ds_px > 0.0) || num_neighbors < 1 || points.size() <= static_cast<size_t>(num_neighbors)) {
    return flagged;
  }
  // A flagged point's nearest neighbour is closer than DS / k; cells a
  // little wider than that rule out every other point after one ring.
  const PointGrid grid(points, 1.001 * ds_px / num_neighbors);
  std::vector<double> nearest(num_neighbors);
  for (size_t i = 0; i < points.size(); ++i) {
    if (Flagged(grid, points, static_cast<int>(i), num_neighbors, ds_px, nearest)) {
      flagged.push_back(static_cast<int>(i));
    }
  }
  return flagged;
}

absl::Status RewardOptions::Validate() const {
  if (!std::isfinite(ds_factor) || ds_factor <= 0.0) {
    return absl::InvalidArgumentError(
        absl::StrCat("ds_factor must be positive and finite, got ", ds_factor));
  }
  if (num_neighbors < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("num_neighbors must be at least 1, got ", num_neighbors));
  }
  if (!(site_radius_fraction > 0.0 && site_radius_fraction <= 0.5)) {
    return absl::InvalidArgumentError(
        absl::StrCat("site_radius_fraction must be in (0, 0.5], got ", site_radius_fraction));
  }
  if (!(duplicate_fraction >= 0.0 && duplicate_fraction < 1.0)) {
    return absl::InvalidArgumentError(
        absl::StrCat("duplicate_fraction must be in [0, 1), got ", duplicate_fraction));
  }
  return absl::OkStatus();
}

absl::Status LatticeSites::Validate() const {
  if (translations.empty()) return absl::InvalidArgumentError("lattice sites need translations");
  if (!(std::isfinite(match_radius_px) && match_radius_px > 0.0)) {
    return absl::InvalidArgumentError(
        absl::StrCat("match_radius_px must be positive and finite, got ", match_radius_px));
  }
  if (!(std::isfinite(duplicate_px) && duplicate_px >= 0.0)) {
    return absl::InvalidArgumentError(
        absl::StrCat("duplicate_px must be finite and >= 0, got ", duplicate_px));
  }
  auto check = [&](const PointXY& v) -> absl::Status {
    const double n = std::hypot(v.x, v.y);
    if (!(std::isfinite(n) && n > match_radius_px && n > duplicate_px)) {
      return absl::InvalidArgumentError(absl::StrCat("site vector (", v.x, ", ", v.y,
                                                     ") is not longer than the match radius ",
                                                     match_radius_px, " px and duplicate_px"));
    }
    return absl::OkStatus();
  };
  for (const PointXY& t : translations) LOGSTAR_RETURN_IF_ERROR(check(t));
  for (const auto& offsets : column_offsets) {
    for (const PointXY& v : offsets) LOGSTAR_RETURN_IF_ERROR(check(v));
  }
  return absl::OkStatus();
}

absl::StatusOr<LatticeSites> MakeLatticeSites(const LatticeMeasurement& lattice,
                                              const RewardOptions& options) {
  LOGSTAR_RETURN_IF_ERROR(options.Validate());
  if (!lattice.found) {
    return absl::InvalidArgumentError(absl::StrCat("no lattice: ", lattice.reason));
  }
  const PointXY a = lattice.a, b = lattice.b;
  LatticeSites sites;
  sites.translations = {a, b, {a.x + b.x, a.y + b.y}, {a.x - b.x, a.y - b.y}};
  sites.match_radius_px = options.site_radius_fraction * lattice.nearest_neighbor_px;
  sites.duplicate_px = options.duplicate_fraction * lattice.nearest_neighbor_px;
  const auto& columns = lattice.columns;
  if (columns.size() > 1) {
    for (size_t k = 0; k < columns.size(); ++k) {
      std::vector<PointXY> offsets;
      for (size_t j = 0; j < columns.size(); ++j) {
        if (j == k) continue;
        // The shortest image of the offset (the cell is reduced, so the
        // images one translation away include it).
        PointXY best{};
        double best_d2 = std::numeric_limits<double>::infinity();
        for (int i = -1; i <= 1; ++i) {
          for (int m = -1; m <= 1; ++m) {
            const PointXY v{
                columns[j].position_px.x - columns[k].position_px.x + i * a.x + m * b.x,
                columns[j].position_px.y - columns[k].position_px.y + i * a.y + m * b.y};
            const double d2 = v.x * v.x + v.y * v.y;
            if (d2 < best_d2) best_d2 = d2, best = v;
          }
        }
        offsets.push_back(best);
      }
      sites.column_offsets.push_back(std::move(offsets));
    }
  }
  LOGSTAR_RETURN_IF_ERROR(sites.Validate());
  return sites;
}

// The weight of a site of another column of the cell in misses, against 1
// for a translation site: the number of translation sites (±a, ±b,
// ±(a + b), ±(a - b)).
constexpr double kCellColumnWeight = 8.0;

absl::StatusOr<LatticeRewards> ComputeLatticeRewards(
    absl::Span<const PointXY> points, const PixelRegion& region, const LatticeSites& sites,
    const LatticeMargins* margins, std::vector<int>* spurious, const CrystalMask* crystal) {
  LOGSTAR_RETURN_IF_ERROR(ValidateRegion(region));
  LOGSTAR_RETURN_IF_ERROR(sites.Validate());
  if (margins != nullptr &&
      (margins->detected.size() != points.size() ||
       margins->below.size() != margins->below_ratio.size() ||
       (!margins->noise_ratio.empty() && margins->noise_ratio.size() != points.size()))) {
    return absl::InvalidArgumentError("margins must give one ratio per point and per maximum");
  }
  for (size_t i = 0; i < points.size(); ++i) {
    if (!std::isfinite(points[i].x) || !std::isfinite(points[i].y)) {
      return absl::InvalidArgumentError(absl::StrCat("points[", i, "] has non-finite coordinates"));
    }
  }
  if (spurious != nullptr) spurious->clear();
  const double x_min = region.col0 - 0.5, x_end = region.col0 + region.cols - 0.5;
  const double y_min = region.row0 - 0.5, y_end = region.row0 + region.rows - 0.5;
  auto inside = [&](const PointXY& p) {
    return p.x >= x_min && p.x < x_end && p.y >= y_min && p.y < y_end &&
           (crystal == nullptr || crystal->Contains(p));
  };
  LatticeRewards out;
  if (points.empty()) {
    out.misses = out.spurious = 1.0;
    return out;
  }
  const double r = sites.match_radius_px, r2 = r * r;
  const PointGrid grid(points, r);
  // The nearest detection within r of c, or -1.
  auto nearest = [&](const PointXY& c) {
    int best = -1;
    double best_d2 = r2;
    grid.ForSquare(c, r, [&](int j) {
      const double dx = points[j].x - c.x, dy = points[j].y - c.y;
      const double d2 = dx * dx + dy * dy;
      if (d2 < best_d2 || (d2 == best_d2 && best < 0)) best_d2 = d2, best = j;
    });
    return best;
  };
  auto occupied = [&](const PointXY& c) { return nearest(c) >= 0; };
  // What a site found by detection j adds to misses.
  auto found_cost = [&](int j) {
    if (margins == nullptr) return 0.0;
    const double q = 1.0 / margins->detected[j];
    return q * q;
  };
  double missed = 0.0, spurious_sum = 0.0, weighted_sites = 0.0, noise_sum = 0.0;
  // The chance that a noise peak falls within r of a column: the share of
  // the plane those discs cover, π r² × the columns per cell / the cell's
  // area (translations a and b come first). A supported detection is noise
  // only if a peak landed on a site.
  const PointXY& ta = sites.translations[0];
  const PointXY& tb = sites.translations.size() > 1 ? sites.translations[1] : ta;
  const double cell_area = std::abs(ta.x * tb.y - ta.y * tb.x);
  const double columns_per_cell =
      sites.column_offsets.empty() ? 1.0 : static_cast<double>(sites.column_offsets.size());
  const double on_site =
      cell_area > 0.0 ? std::min(1.0, std::numbers::pi * r2 * columns_per_cell / cell_area) : 1.0;
  const double dup2 = sites.duplicate_px * sites.duplicate_px;
  for (size_t i = 0; i < points.size(); ++i) {
    const PointXY& p = points[i];
    if (!inside(p)) continue;
    ++out.num_found;
    bool duplicated = false;
    if (dup2 > 0.0) {
      grid.ForSquare(p, sites.duplicate_px, [&](int j) {
        const double dx = points[j].x - p.x, dy = points[j].y - p.y;
        if (static_cast<size_t>(j) != i && dx * dx + dy * dy < dup2) duplicated = true;
      });
    }
    // Translation sites first: they decide support.
    int num_sites = 0, num_missing = 0;
    double cost = 0.0;
    auto visit = [&](const PointXY& site) {
      const int j = nearest(site);
      if (inside(site)) {
        ++num_sites, num_missing += j < 0 ? 1 : 0;
        cost += j < 0 ? 1.0 : found_cost(j);
      }
      return j >= 0;
    };
    bool supported = false;
    for (const PointXY& t : sites.translations) {
      supported |= visit({p.x + t.x, p.y + t.y});
      supported |= visit({p.x - t.x, p.y - t.y});
    }
    if (duplicated || !supported) {
      ++out.num_spurious;
      if (spurious != nullptr) spurious->push_back(static_cast<int>(i));
      continue;  // its sites say nothing about the crystal
    }
    if (margins != nullptr && !margins->noise_ratio.empty()) {
      const double q = std::min(1.0, margins->noise_ratio[i]);
      noise_sum += on_site * q * q;
    }
    // The cell's other columns, seen from the column p most likely is.
    int best_hits = -1;
    int best_sites = 0, best_missing = 0;
    double best_cost = 0.0;
    for (const auto& offsets : sites.column_offsets) {
      int hits = 0, n = 0, missing = 0;
      double c = 0.0;
      for (const PointXY& v : offsets) {
        const PointXY site{p.x + v.x, p.y + v.y};
        const int j = nearest(site);
        hits += j >= 0 ? 1 : 0;
        if (inside(site)) ++n, missing += j < 0 ? 1 : 0, c += j < 0 ? 1.0 : found_cost(j);
      }
      if (hits > best_hits) best_hits = hits, best_sites = n, best_missing = missing, best_cost = c;
    }
    out.num_sites += num_sites + best_sites;
    out.num_missing += num_missing + best_missing;
    // Each other column of the cell weighs as much as all of p's
    // translation sites together, so that misses is about the share of
    // columns missing whatever their sublattice: unweighted, a cell's second
    // column was one site in nine, and a window that found none of a dim
    // sublattice still scored misses 0.11 (see kCellColumnWeight).
    missed += cost + kCellColumnWeight * best_cost;
    weighted_sites += num_sites + kCellColumnWeight * best_sites;
  }
  spurious_sum = out.num_spurious + noise_sum;
  if (margins != nullptr) {
    // Maxima under the threshold: unsupported ones not on a detected column
    // are noise peaks, weighed by how nearly they were admitted.
    for (size_t m = 0; m < margins->below.size(); ++m) {
      const PointXY& q = margins->below[m];
      if (!inside(q) || occupied(q)) continue;
      bool supported = false;
      for (const PointXY& t : sites.translations) {
        supported =
            supported || occupied({q.x + t.x, q.y + t.y}) || occupied({q.x - t.x, q.y - t.y});
      }
      if (!supported) spurious_sum += margins->below_ratio[m] * margins->below_ratio[m];
    }
  }
  out.misses = weighted_sites > 0.0 ? missed / weighted_sites : 1.0;
  out.spurious = out.num_found > 0 ? std::min(1.0, spurious_sum / out.num_found) : 1.0;
  return out;
}

absl::StatusOr<Rewards> ComputeRewards(absl::Span<const PointXY> atoms, const PixelRegion& region,
                                       const PhysicsPrior& prior, const RewardOptions& options,
                                       std::vector<int>* erroneous, const CrystalMask* crystal) {
  LOGSTAR_RETURN_IF_ERROR(options.Validate());
  LOGSTAR_RETURN_IF_ERROR(prior.Validate());
  LOGSTAR_RETURN_IF_ERROR(ValidateRegion(region));

  // Bounds in double so that col0 + cols cannot overflow int.
  const double x_min = static_cast<double>(region.col0) - 0.5;
  const double x_end = static_cast<double>(region.col0) + region.cols - 0.5;
  const double y_min = static_cast<double>(region.row0) - 0.5;
  const double y_end = static_cast<double>(region.row0) + region.rows - 0.5;

  std::vector<PointXY> inside;
  std::vector<int> index;  // into atoms, when the caller wants the flagged ones
  for (size_t i = 0; i < atoms.size(); ++i) {
    const PointXY& p = atoms[i];
    // A NaN would silently fall outside every region and vanish from QC.
    if (!std::isfinite(p.x) || !std::isfinite(p.y)) {
      return absl::InvalidArgumentError(
          absl::StrCat("atoms[", i, "] has non-finite coordinates (", p.x, ", ", p.y, ")"));
    }
    if (p.x >= x_min && p.x < x_end && p.y >= y_min && p.y < y_end &&
        (crystal == nullptr || crystal->Contains(p))) {
      inside.push_back(p);
      if (erroneous != nullptr) index.push_back(static_cast<int>(i));
    }
  }
  if (inside.size() > static_cast<size_t>(std::numeric_limits<int>::max())) {
    return absl::InvalidArgumentError(
        absl::StrCat("region holds ", inside.size(), " atoms, more than an int can count"));
  }

  Rewards rewards;
  rewards.ds_px =
      static_cast<double>(options.num_neighbors) * options.ds_factor * prior.NearestNeighborPx();
  const double area = crystal == nullptr
                          ? static_cast<double>(region.cols) * static_cast<double>(region.rows)
                          : static_cast<double>(crystal->Area(region));
  if (area <= 0.0) {
    if (erroneous != nullptr) erroneous->clear();
    return rewards;  // no crystal, nothing to count (inside is empty too)
  }
  rewards.num_found = static_cast<int>(inside.size());
  rewards.num_expected = prior.ColumnDensityPerPx2() * area;
  rewards.qc = std::abs(rewards.num_found - rewards.num_expected) / rewards.num_expected;
  std::vector<int> flagged = ErFlaggedPoints(inside, rewards.ds_px, options.num_neighbors);
  rewards.num_erroneous = static_cast<int>(flagged.size());
  rewards.er = rewards.num_erroneous / rewards.num_expected;
  if (erroneous != nullptr) {
    for (int& f : flagged) f = index[f];
    *erroneous = std::move(flagged);
  }
  return rewards;
}

}  // namespace logstar
