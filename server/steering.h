// Steering decisions: where in a frame the operator (or the acquisition
// software) should look next, ranked, each with its reason. Derived from an
// engine result alone, so the rule is testable without gRPC.
//
// Reasons and scores (a score is how far past its threshold a region is, so
// regions of different reasons rank on one scale; above 1 = past it):
//  * ER-flagged atoms: atoms whose summed distance to their k nearest
//    neighbours (k and DS as in engine/physics/rewards.h) is below DS — spurious
//    detections or a defect. Flagged atoms are grouped by window; score =
//    the group's share of the window's expected atoms / 0.05.
//  * Reward drift: a window re-tuned on this frame (score 1 + drift, as
//    its cached rewards no longer held), or a cached window whose rewards
//    moved more than half the drift tolerance (score drift / tolerance).
//  * Count deviation: a window whose QC (relative deviation of the atom
//    count from the prior's expectation) exceeds 0.2; score = QC / 0.2.
//  * Amorphous regions (when the stage is on): each region at its
//    centroid, with its bounding box; score = its share of the frame /
//    the stage's min_share (the smallest share it reports, 0.02).
//
// Coordinates: x = column, y = row, px, origin at the centre of the
// top-left pixel.
#ifndef LOGSTAR_SERVER_STEERING_H_
#define LOGSTAR_SERVER_STEERING_H_

#include <string>
#include <vector>

#include "engine/analysis/analyzer.h"
#include "engine/physics/rewards.h"

namespace logstar::server {

struct SteeringRegion {
  enum class Reason { kErFlaggedAtoms, kRewardDrift, kCountDeviation, kAmorphousRegion };
  Reason reason = Reason::kErFlaggedAtoms;
  double x = 0.0;  // centre, px
  double y = 0.0;
  PixelRegion box;
  double score = 0.0;
  int window = -1;
  std::string detail;
};

struct SteeringOptions {
  int max_regions = 8;                // >= 0
  double drift_tolerance = 0.1;       // the analyzer's
  int num_neighbors = 4;              // the rewards'
  double amorphous_min_share = 0.02;  // the amorphous stage's min_share, > 0
};

// Indices into analysis.atoms of the atoms ER counts, over the whole frame
// (the engine counts per window; near seams the two can differ slightly).
std::vector<int> ErFlaggedAtoms(const FrameAnalysis& analysis, double ds_px, int num_neighbors);

// At most options.max_regions regions, highest score first (ties: by
// reason, then window).
std::vector<SteeringRegion> FindRegionsOfInterest(const FrameAnalysis& analysis,
                                                  const SteeringOptions& options);

}  // namespace logstar::server

#endif  // LOGSTAR_SERVER_STEERING_H_
