// Steering decisions: where in a frame the operator (or the acquisition
// software) should look next, ranked, each with its reason. Derived from an
// engine result alone.
//
// Reasons and scores (a score is how far past its threshold a region is, so
// regions of different reasons rank on one scale; above 1 = past it):
//  * ER-flagged atoms: the atoms a window's ER counted (engine/physics/
//    rewards.h: summed distance to the k nearest neighbours below DS —
//    spurious detections or a defect), exactly those of its rewards
//    (WindowResult::er_flagged); score = their share of the window's
//    expected atoms / 0.05.
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
//
// Thread-safety: pure functions.
#ifndef LOGSTAR_ENGINE_ANALYSIS_STEERING_H_
#define LOGSTAR_ENGINE_ANALYSIS_STEERING_H_

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "engine/analysis/analyzer.h"
#include "engine/base/geometry.h"

namespace logstar {

struct SteeringRegion {
  enum class Reason { kErFlaggedAtoms, kRewardDrift, kCountDeviation, kAmorphousRegion };
  Reason reason = Reason::kErFlaggedAtoms;
  double x = 0.0;  // centre, px
  double y = 0.0;
  PixelRegion box;
  double score = 0.0;
  int window = -1;  // -1 for amorphous regions
  std::string detail;
};

struct SteeringOptions {
  int max_regions = 8;                // >= 0
  double drift_tolerance = 0.1;       // > 0; the analyzer's
  double amorphous_min_share = 0.02;  // > 0; the amorphous stage's min_share

  absl::Status Validate() const;
};

// The options matching the analyzer that made the analyses: its drift
// tolerance and the amorphous stage's min_share.
SteeringOptions SteeringOptionsFor(const AnalyzerOptions& analyzer, int max_regions);

// At most options.max_regions regions, highest score first (ties: by
// reason, then window). `options` must pass Validate().
std::vector<SteeringRegion> FindRegionsOfInterest(const FrameAnalysis& analysis,
                                                  const SteeringOptions& options);

}  // namespace logstar

#endif  // LOGSTAR_ENGINE_ANALYSIS_STEERING_H_
