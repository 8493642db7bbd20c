// Physics rewards of a set of detections in a rectangular region: the two
// objectives LoG* minimises (Barakati et al., Digital Discovery 2024).
//
//  QC (quantity of columns) = |n - n_expected| / n_expected, with
//     n_expected = prior column density (per px²) × region area (px²).
//  ER (error rate) = #{atoms whose summed distance to their 4 nearest
//     neighbours is below DS} / n_expected, with
//     DS = 4 × ds_factor × nearest-neighbour distance (px), ds_factor = 0.6:
//     an atom is suspect when its mean distance to 4 neighbours is below 60 %
//     of the smallest plausible column spacing, i.e. it sits in a cluster of
//     spurious detections.
//
// Borders: a region is the pixel rectangle [col0, col0+cols) × [row0,
// row0+rows); with the origin at the centre of the top-left pixel it covers
// x in [col0 - 0.5, col0 + cols - 0.5) and likewise y, area cols × rows px².
// An atom belongs to the region when its centre lies in that half-open box,
// so tiling a frame with regions counts every atom exactly once. Neighbours
// for ER are searched among the atoms of the same region only (as when the
// region is analysed on its own); with fewer than 5 atoms ER is 0.
//
// The lattice pair (issue 15): two count-free objectives measured locally
// against the frame's measured lattice (engine/physics/lattice.h), which
// LoG* can minimise instead of (QC, ER). A detection p inside the region is
// supported when a detection lies within match radius r of p ± a, p ± b,
// p ± (a + b) or p ± (a - b): a noise peak's translations land between
// columns, a column's on columns. Its expected sites are those eight and,
// when the cell holds several columns, p's offsets to the cell's other
// columns (p is taken for the column whose offsets find the most
// detections), counted when they fall inside the region.
//  misses   = over the expected sites of the supported detections, the mean
//     of 1 for a site without detection within r, and the ambiguity of the
//     nearest detection for a site found: how nearly it was missed. A site
//     of another column of the cell weighs 8, as much as all of the
//     detection's translation sites together, so that misses is about the
//     share of columns missing whatever their sublattice (unweighted, a
//     window that found none of a dim second sublattice scored about 0.11,
//     and the search happily dropped it: F1 0.67 on generated A/B frames of
//     brightness ratio 3 at noise 0.6, 0.91 weighted).
//  spurious = over the detections inside the region, the sum of 1 for each
//     detection unsupported or with another detection closer than
//     duplicate_px (split columns), plus the ambiguity of each maximum below
//     the threshold that is unsupported and not within r of a detection (how
//     nearly a noise peak was admitted), divided by the number of detections
//     and capped at 1.
// The ambiguity of a maximum with response v under threshold t is
// (min(v, t) / max(v, t))², in (0, 1]. Without margins (responses unknown) it
// is 0: the pair then counts missing sites and unsupported detections only.
// The ambiguities make the trade-off continuous even where one threshold
// separates columns from noise perfectly: lowering it brings the noise peaks
// nearer admission (spurious up, misses down), raising it brings the
// columns nearer loss (misses up, spurious down), and the front spans the
// gap, with the knee where both margins are balanced. With no detection both
// are 1; with no supported detection misses is 1.
// Against the noise: given noise ratios (the level n the frame's noise
// peaks reach at a detection's scale over its response v), spurious also
// adds min(1, n / v)² for each supported detection: how nearly it could be
// a noise peak that happens to sit on a site. Without it, where a coarse
// scale holds every maximum between columns under 0 (generated frames at
// noise 0.3) the "below" set is empty, spurious is 0 at the lowest
// threshold and one point dominates every other; with it, raising the
// threshold drops the least certain detections first (misses up, spurious
// down), so the front is the nested sets from every candidate to the
// surest ones.
//
// The crystalline area (issue 15, item 2). Given a CrystalMask
// (engine/physics/crystallinity.h), both pairs look at the crystal only:
// the published pair's n counts the atoms inside the region that lie on the
// crystal, n_expected = prior density × the region's crystalline area, and
// ER counts clusters among those atoms; the lattice pair counts the
// detections, the expected sites and the maxima under the threshold that lie
// on the crystal. Detections off it — on vacuum, a support film or
// amorphous material — are neither spurious nor supported (what they are is
// the amorphous stage's business), though they may still occupy a site or
// support a detection on the crystal, as context does. A region without
// crystalline area has nothing to count: QC = ER = 0 with n = n_expected = 0,
// misses = spurious = 1 as for a region without detections. Without a mask
// the whole region counts (the published method).
//
// One implementation of the ER rule (ErFlaggedPoints) serves the rewards and
// whoever needs to know which atoms ER counted (the steering's regions of
// interest, engine/analysis/steering.h).
#ifndef LOGSTAR_ENGINE_PHYSICS_REWARDS_H_
#define LOGSTAR_ENGINE_PHYSICS_REWARDS_H_

#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "engine/base/geometry.h"
#include "engine/physics/physics_prior.h"

namespace logstar {

struct RewardOptions {
  double ds_factor = 0.6;  // > 0
  int num_neighbors = 4;   // >= 1
  // Lattice pair: match radius r and duplicate distance as fractions of the
  // measured nearest-neighbour column spacing.
  // 0.2 (against 0.3 and 0.25) gave the best F1 of the chosen point at noise
  // 0.6–0.9 on generated frames (tests/bench/rewards_sweep.cc, seeds 1–3).
  double site_radius_fraction = 0.2;  // (0, 0.5]
  double duplicate_fraction = 0.5;    // [0, 1)
  absl::Status Validate() const;
};

struct Rewards {
  double qc = 0.0;
  double er = 0.0;
  int num_found = 0;          // atoms inside the region (and on the crystal, given a mask)
  double num_expected = 0.0;  // from the prior and the region's (crystalline) area
  int num_erroneous = 0;      // atoms counted by ER
  double ds_px = 0.0;         // the DS threshold used
};

class CrystalMask;

// `prior` must pass Validate(). When `erroneous` is not null it receives the
// indices into `atoms` of the atoms ER counted (num_erroneous of them),
// increasing. `crystal` (may be null: the whole region is crystal) is in the
// coordinates of `atoms`. O(n) for a crystal's detections (see
// ErFlaggedPoints).
absl::StatusOr<Rewards> ComputeRewards(absl::Span<const PointXY> atoms, const PixelRegion& region,
                                       const PhysicsPrior& prior, const RewardOptions& options,
                                       std::vector<int>* erroneous = nullptr,
                                       const CrystalMask* crystal = nullptr);

// The lattice sites the lattice pair checks, from a measured lattice.
struct LatticeSites {
  // Lattice translations, px, one of each ± pair (both signs are checked).
  std::vector<PointXY> translations;
  // Per column k of the cell: the shortest vectors from it to each other
  // column of the cell, px (empty with one column per cell).
  std::vector<std::vector<PointXY>> column_offsets;
  double match_radius_px = 0.0;  // r, > 0
  double duplicate_px = 0.0;     // >= 0, < the shortest site vector

  absl::Status Validate() const;
};

// From `lattice` (found, with columns): translations a, b, a + b, a - b; r
// and duplicate_px from options and lattice.nearest_neighbor_px.
// InvalidArgument when the lattice was not found or options are invalid.
struct LatticeMeasurement;
absl::StatusOr<LatticeSites> MakeLatticeSites(const LatticeMeasurement& lattice,
                                              const RewardOptions& options);

struct LatticeRewards {
  double misses = 0.0;    // [0, 1]
  double spurious = 0.0;  // [0, 1]
  int num_found = 0;      // detections inside the region (and on the crystal, given a mask)
  int num_sites = 0;      // expected sites checked inside the region (idem)
  int num_missing = 0;    // of those, without detection
  int num_spurious = 0;   // detections counted by `spurious`
};

// The responses behind the detections, for the ambiguities (see above);
// ratios are response / threshold.
struct LatticeMargins {
  absl::Span<const double> detected;     // one per point, >= 1
  absl::Span<const PointXY> below;       // maxima under the threshold (context too)
  absl::Span<const double> below_ratio;  // one per `below`, in (0, 1)
  // Optional (empty, or one per point, >= 0): the level noise peaks reach
  // at the detection's scale over its response (see "Against the noise"
  // above).
  absl::Span<const double> noise_ratio;
};

// The lattice pair of `points` inside `region` (the same half-open box as
// ComputeRewards) and on `crystal` (may be null: the whole region; in the
// coordinates of `points`); points outside the region or off the crystal
// (context) can occupy sites and support detections. `sites` must pass
// Validate(); `margins` may be null. When `spurious` is not null it receives
// the indices into `points` of the detections counted as spurious,
// increasing. O((n + below) × sites per detection).
absl::StatusOr<LatticeRewards> ComputeLatticeRewards(absl::Span<const PointXY> points,
                                                     const PixelRegion& region,
                                                     const LatticeSites& sites,
                                                     const LatticeMargins* margins = nullptr,
                                                     std::vector<int>* spurious = nullptr,
                                                     const CrystalMask* crystal = nullptr);

// The ER rule alone: indices (increasing) into `points` of the points whose
// summed distance to their `num_neighbors` nearest other points is below
// `ds_px` (an exact duplicate is a neighbour at distance 0). With
// num_neighbors or fewer points, none. Points must be finite; none are
// flagged unless ds_px > 0 and num_neighbors >= 1.
//
// A bucket grid of DS / num_neighbors cells searched ring by ring: an atom
// of a crystal is ruled out by its own 3 x 3 cells (its nearest neighbour
// is farther than DS / k), and a dense cluster of detections stops after a
// ring or two. The sums are formed as a k-d tree search would (square roots
// of squared distances, ascending), so the result is exactly the rule's.
std::vector<int> ErFlaggedPoints(absl::Span<const PointXY> points, double ds_px, int num_neighbors);

}  // namespace logstar

#endif  // LOGSTAR_ENGINE_PHYSICS_REWARDS_H_
