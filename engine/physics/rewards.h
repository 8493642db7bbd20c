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
  absl::Status Validate() const;
};

struct Rewards {
  double qc = 0.0;
  double er = 0.0;
  int num_found = 0;          // atoms inside the region
  double num_expected = 0.0;  // from the prior and the region's area
  int num_erroneous = 0;      // atoms counted by ER
  double ds_px = 0.0;         // the DS threshold used
};

// `prior` must pass Validate(). When `erroneous` is not null it receives the
// indices into `atoms` of the atoms ER counted (num_erroneous of them),
// increasing. O(n) for a crystal's detections (see ErFlaggedPoints).
absl::StatusOr<Rewards> ComputeRewards(absl::Span<const PointXY> atoms, const PixelRegion& region,
                                       const PhysicsPrior& prior, const RewardOptions& options,
                                       std::vector<int>* erroneous = nullptr);

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
