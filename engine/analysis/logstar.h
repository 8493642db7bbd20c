// LoG*: the LoG detector tuned per window against the physics rewards by
// two-objective Bayesian optimisation (Barakati et al., Digital Discovery
// 2024), with the costs arranged for a live stream.
//
// One run on a window:
//  1. the window's LoG responses are computed once on a geometric sigma grid
//     covering every sigma the search may ask for (engine/log/log_scale_grid.h);
//  2. MinimizeTwoObjectives (engine/optimize/mobo.h) searches min_sigma, max_sigma,
//     threshold and overlap; an evaluation is a peak search and pruning on
//     the grid plus the rewards of the atoms in the window
//     (engine/physics/rewards.h) — no convolution: QC and ER as published,
//     or the lattice pair (misses, spurious; see ObjectivePair), which also
//     looks at the maxima down to 1/16 of the threshold (a second peak
//     search on the same grid, whose floor is lowered to keep them);
//  3. one point of the Pareto front is chosen (FrontChoiceRule on the
//     normalised rewards, or operator weights). The last few evaluations of
//     the budget are exact (blob_log's own sigmas, no grid): the front's
//     points are re-evaluated so the front reported is exact, then (published
//     pair only: the lattice pair is count-free) the chosen point's
//     threshold is stepped toward the expected count;
//  4. the chosen parameters are run once more with the exact blob_log
//     semantics (DetectBlobsLog), positions are refined to sub-pixel
//     (engine/log/refine.h), and the rewards of that final detection reported.
//
// Search bounds: unless overridden, they scale with the expected width of a
// column's image in pixels, sc = column_sigma_angstrom / pixel size:
// min_sigma in [0.25, 1.5] sc and max_sigma in [0.75, 2] sc, threshold in
// [0.01, 0.4], overlap in [0.01, 0.5] (the published ranges). A Gaussian
// column of width s gives its strongest scale-normalised LoG response at
// sigma = s; min_sigma reaches beyond s because under heavy noise a coarser
// scale is the better matched filter: finer scales let noise peaks in that
// the rewards cannot tell from columns (with min_sigma <= sc, F1 was 0.58 on
// generated YBCO frames at noise 0.6; 0.91 with this range, see
// tests/bench/run_logstar_accuracy.sh), and only the search can tell when a
// frame needs it.
// A candidate with max_sigma < min_sigma is run with max_sigma = min_sigma.
//
// Coordinates: x = column, y = row, pixels of the image passed in, origin
// at the centre of its top-left pixel.
//
// Thread-safety: RunLogStar may be called concurrently (on different or the
// same image); it runs its parallel parts in the given context.
#ifndef LOGSTAR_ENGINE_ANALYSIS_LOGSTAR_H_
#define LOGSTAR_ENGINE_ANALYSIS_LOGSTAR_H_

#include <optional>
#include <string>
#include <vector>

#include <opencv2/core.hpp>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "engine/base/context.h"
#include "engine/log/log_detector.h"
#include "engine/log/refine.h"
#include "engine/optimize/mobo.h"
#include "engine/optimize/pareto.h"
#include "engine/physics/lattice.h"
#include "engine/physics/physics_prior.h"
#include "engine/physics/rewards.h"

namespace logstar {

// The parameters LoG* tunes (num_sigma is fixed per run).
struct LogParameters {
  double min_sigma = 1.0;  // px
  double max_sigma = 2.0;  // px, >= min_sigma
  int num_sigma = 10;
  double threshold = 0.05;  // absolute scale-normalised response
  double overlap = 0.5;     // in [0, 1]

  LogOptions ToLogOptions() const;
};

struct Interval {
  double lower = 0.0;
  double upper = 0.0;
};

// The two objectives the search minimises.
//  kPublished: (QC, ER) as published (engine/physics/rewards.h). ER is 0 in
//    nearly every window of a crystal (blob pruning removes the dense
//    clusters it counts), so the front usually has one point and the
//    search is in effect QC alone; kept so the published method stays
//    reproducible.
//  kLattice: (misses, spurious), the lattice pair of engine/physics/rewards.h,
//    measured against the lattice of the image passed to RunLogStar (the
//    window with its context; MeasureLattice). One end of its front finds
//    every expected site (higher recall), the other admits only detections
//    the lattice supports (higher precision). When the image shows no
//    lattice the run falls back to kPublished and says so.
enum class ObjectivePair { kPublished, kLattice };

struct LogStarOptions {
  // Expected Gaussian width (sigma) of one column's image; with the prior's
  // pixel size it sets the default sigma bounds (see the file comment).
  // HAADF columns are 0.3–0.6 Å wide at typical probe sizes.
  double column_sigma_angstrom = 0.45;
  // Overrides of the search bounds, in pixels.
  std::optional<Interval> min_sigma_px;
  std::optional<Interval> max_sigma_px;
  Interval threshold = {0.01, 0.4};
  Interval overlap = {0.01, 0.5};
  int num_sigma = 10;  // in [1, 64]

  // Relative spacing of the sigma grid evaluations run on.
  double grid_spacing = 0.04;
  // On generated frames the lattice pair's chosen point has F1 at least the
  // published pair's at every noise level and lattice tried
  // (tests/bench/rewards_sweep.cc). The default stays published, in process
  // and in the daemon alike, until the lattice pair also serves the
  // amorphous stage: it counts atoms off the lattice as spurious, which
  // that stage needs to see (with it, the amorphous mask IoU test falls
  // from >= 0.6 to 0.575).
  ObjectivePair objectives = ObjectivePair::kPublished;
  RewardOptions rewards;
  LatticeOptions lattice;  // kLattice: how the window's lattice is measured
  // The search sees each reward as min(reward, objective_cap). A candidate
  // that certainly finds at least (1 + objective_cap) × the expected count —
  // a window flooded with noise peaks — is scored (cap, cap) without being
  // pruned (by far the costliest evaluation otherwise); its ER would be as
  // large. Hypervolumes use the reference point (1, 1), so capped points
  // never count; the cap also keeps such outliers from distorting the GP.
  double objective_cap = 3.0;  // >= 1
  // Evaluations of the budget (optimizer.num_evaluations) kept for polishing
  // the front with exact detections (see step 3 of the file comment); at
  // most a fifth of the budget is used so.
  int polish_evaluations = 5;  // >= 0
  // num_evaluations defaults to 50 as published; seed fixes the run.
  MoboOptions optimizer;
  FrontChoiceRule choice = FrontChoiceRule::kEuclidean;
  // For kWeights, on the pair searched: (QC, ER) or (misses, spurious).
  // With the lattice pair, weight on misses moves the choice toward the
  // high-recall end of the front, weight on spurious toward the
  // high-precision end.
  Objectives2 choice_weights = {1.0, 1.0};
  // Sub-pixel refinement of the final positions; off reports pixel centres
  // exactly as blob_log does.
  bool refine_positions = true;
  RefineOptions refine;

  absl::Status Validate() const;
};

// The search space of a run: bounds resolved from options and prior.
struct LogStarBounds {
  Interval min_sigma, max_sigma, threshold, overlap;
};
absl::StatusOr<LogStarBounds> ResolveBounds(const LogStarOptions& options,
                                            const PhysicsPrior& prior);

// One evaluated point that is on the Pareto front.
// qc and er are always filled; misses and spurious when the lattice pair
// was searched (else 0).
struct FrontPoint {
  LogParameters parameters;
  double qc = 0.0;
  double er = 0.0;
  double misses = 0.0;
  double spurious = 0.0;
};

struct LogStarResult {
  LogParameters parameters;  // the chosen point
  // Rewards of the final (exact) detection in the region; they can differ
  // slightly from the chosen point's during the search (sigma grid).
  Rewards rewards;
  std::vector<Blob> blobs;     // the final detection's blobs in or within 2 px of the region
  std::vector<int> erroneous;  // indices into blobs of the atoms rewards.num_erroneous counts
  // The pair searched: options.objectives, or kPublished when the lattice
  // pair was asked for and the image shows no lattice (lattice_note says
  // why). lattice_rewards: of the final detection, with the lattice pair.
  ObjectivePair objectives = ObjectivePair::kPublished;
  std::string lattice_note;
  std::optional<LatticeRewards> lattice_rewards;
  std::vector<FrontPoint> front;  // by increasing first objective
  int chosen = 0;                 // index into front
  int num_evaluations = 0;
  double hypervolume = 0.0;  // of the front, reference point (1, 1), in the pair searched
  double tuning_ms = 0.0;    // grid + optimiser
  double detect_ms = 0.0;    // final detection, refinement and rewards

  std::string Summary() const;
};

// Tunes LoG on `image` (single-channel CV_32F, normalised, finite) with the
// rewards of the atoms inside `region` (a sub-rectangle of the image; the
// rest is context so that atoms near the region's edges are seen whole).
// `warm_start` parameters (e.g. a cached front) are evaluated first.
// With the lattice pair, `lattice` is the lattice the rewards check (e.g.
// measured once on the whole frame, which sees it through more noise than a
// window does; must outlive the call); null = measured on `image`.
absl::StatusOr<LogStarResult> RunLogStar(const cv::Mat& image, const PixelRegion& region,
                                         const PhysicsPrior& prior, const LogStarOptions& options,
                                         ExecutionContext* context,
                                         absl::Span<const LogParameters> warm_start = {},
                                         const LatticeMeasurement* lattice = nullptr);

// The final step alone, for cached parameters: exact detection with
// `parameters` on `image`, optional refinement, rewards inside `region`.
struct LogDetection {
  std::vector<Blob> blobs;  // found in or within 2 px of the region, then refined
  Rewards rewards;          // of the atoms inside region
  // Indices into blobs of the atoms rewards.num_erroneous counts.
  std::vector<int> erroneous;
  // With `sites`: the lattice pair of the atoms inside region.
  std::optional<LatticeRewards> lattice_rewards;
};
absl::StatusOr<LogDetection> DetectAndScore(const cv::Mat& image, const PixelRegion& region,
                                            const PhysicsPrior& prior,
                                            const LogParameters& parameters,
                                            const LogStarOptions& options,
                                            ExecutionContext* context,
                                            const LatticeSites* sites = nullptr);

}  // namespace logstar

#endif  // LOGSTAR_ENGINE_ANALYSIS_LOGSTAR_H_
