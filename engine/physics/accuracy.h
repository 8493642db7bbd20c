// Accuracy of detections against ground truth (generated frames, labelled
// data): what tests, benchmarks and replays report next to the rewards.
#ifndef LOGSTAR_ENGINE_PHYSICS_ACCURACY_H_
#define LOGSTAR_ENGINE_PHYSICS_ACCURACY_H_

#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "engine/physics/rewards.h"

namespace logstar {

struct Accuracy {
  int num_detected = 0;
  int num_true = 0;
  int true_positives = 0;
  double precision = 0.0;  // true_positives / num_detected (0 when none detected)
  double recall = 0.0;     // true_positives / num_true (0 when no truth)
  double f1 = 0.0;
  double rms_px = 0.0;  // RMS distance of the matched pairs
};

// One-to-one matching of detections to true positions: pairs at most
// `radius_px` apart are taken greedily in order of increasing distance (ties by
// detection index, then truth index), as the reference workflow does; with
// a radius below half the column spacing this is the optimal assignment
// except in rare conflicts. Coordinates in pixels (x = column, y = row).
absl::StatusOr<Accuracy> MatchToTruth(absl::Span<const PointXY> detected,
                                      absl::Span<const PointXY> truth, double radius_px);

}  // namespace logstar

#endif  // LOGSTAR_ENGINE_PHYSICS_ACCURACY_H_
