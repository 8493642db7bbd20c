// Two-objective Bayesian optimisation (both objectives minimised) over a
// mixed search space, for tuning the detector per window in the live service.
//
// Method. An initial design — the caller's warm-start points, re-evaluated
// because the objective may have changed since they were found, then
// scrambled Sobol points — is followed by one proposal per iteration:
//  1. one GP per objective (engine/optimize/gaussian_process.h) on the encoded
//     points and, with log1p_objectives, on log1p(f): QC reaches thousands
//     when the threshold lets noise through, and log1p is monotone, so the
//     Pareto set is unchanged while the GP sees a tame target;
//  2. the acquisition is the closed-form EHVI (engine/optimize/pareto.h) of the two
//     latent posteriors (noise excluded), in the GP's output space, over the
//     observed front, with reference point r_k = max_k + 0.1 · (max_k - min_k)
//     of the (transformed) observations (0.1 · max(1, |max_k|) when all are
//     equal), so every observation lies strictly inside;
//  3. EHVI is maximised over num_candidates scrambled Sobol points (a new
//     shift each iteration), each projected onto the point it decodes to;
//     the num_refine best are refined in parallel by a compass search inside
//     the unit box (step 0.1, halved when no neighbour improves, six
//     rounds), and the best point whose decoded values were not evaluated
//     before is proposed. When EHVI vanishes everywhere, the candidate
//     farthest from all evaluated points is taken instead. When every
//     candidate decodes to an evaluated point (a small discrete space), the
//     run stops early (MoboResult::exhausted); so does it, with
//     min_relative_improvement set, when the best EHVI falls under that
//     share of the front's hypervolume (MoboResult::converged).
// Hyperparameters: each fit starts from the previous iteration's optimum;
// every full_refit_every iterations (and the first) it also runs
// gp.num_restarts random restarts (log-uniform in the bounds, all starts of
// both objectives in parallel), the other iterations a single local
// optimisation — restarts cost several times a whole iteration and rarely
// move a GP that changed by one point.
//
// Cost (objective excluded; 2.6 GHz AMD EPYC with AVX2): a 50-evaluation
// run on 4 continuous parameters takes ~21 ms with 2 threads, ~32 ms with
// one. At 50 observations an iteration costs ~1.1 ms of CPU (the two warm
// fits 0.35, scoring 1024 candidates 0.65, refinement 0.1); a full refit
// adds ~5 ms of CPU, spread over the threads.
//
// Encoding (SearchSpace): every parameter maps to the unit box the GP works
// in. Continuous: (v - lower) / (upper - lower), or with log_scale the same
// in log v. Integer: the integers lower..upper split [0, 1] into equal bins,
// (v - lower + 0.5) / (upper - lower + 1); with log_scale, [0, 1] spans
// log(lower - 0.5) to log(upper + 0.5), so an integer's bin is
// [log(v - 0.5), log(v + 0.5)). Decoding rounds to the nearest integer, and
// the GP always sees the re-encoded rounded value. Categorical: one-hot,
// one dimension per category, decoded by argmax (ties to the first
// category). The faces of the box decode to the bounds exactly.
//
// Determinism: a fixed seed reproduces the run exactly whatever the thread
// count: the GP fits and candidate scoring run in parallel in fixed pieces,
// each writing its own outputs, and nothing is reduced in thread order.
// Objective calls are sequential, on the calling thread, outside the
// context's parallel sections (so the objective may use the context itself).
//
// Thread-safety: MinimizeTwoObjectives may run concurrently with itself;
// it calls `objective` from the calling thread only.
#ifndef LOGSTAR_ENGINE_OPTIMIZE_MOBO_H_
#define LOGSTAR_ENGINE_OPTIMIZE_MOBO_H_

#include <array>
#include <atomic>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "engine/base/context.h"
#include "engine/optimize/gaussian_process.h"
#include "engine/optimize/pareto.h"

namespace logstar {

struct ParameterSpec {
  enum class Kind { kContinuous, kInteger, kCategorical };

  std::string name = {};  // non-empty, unique within the space
  Kind kind = Kind::kContinuous;
  // Continuous: finite, lower < upper. Integer: integral, lower < upper.
  // Unused for categorical.
  double lower = 0.0;
  double upper = 1.0;
  // Continuous: needs lower > 0. Integer: needs lower >= 1.
  bool log_scale = false;
  std::vector<std::string> categories = {};  // categorical only: at least one
};

// Parameter values in original units, one per parameter: a continuous
// value, an integral value, or the index of a category.
using ParameterValues = std::vector<double>;

struct SearchSpace {
  std::vector<ParameterSpec> parameters;

  absl::Status Validate() const;
  // Dimensions of the unit box (one per continuous or integer parameter,
  // one per category).
  int encoded_dimensions() const;
  // InvalidArgument naming the parameter unless `values` is a valid point.
  absl::Status CheckValues(const ParameterValues& values) const;
  // Unit-box coordinates of a valid point (CheckValues first).
  absl::StatusOr<std::vector<double>> Encode(const ParameterValues& values) const;
  // The point a unit-box vector stands for; coordinates are clamped into
  // [0, 1] first. InvalidArgument on a size mismatch or non-finite input.
  absl::StatusOr<ParameterValues> Decode(absl::Span<const double> unit) const;
};

// Both minimised. The objective may fail: the run then stops with its status.
using Objective = std::function<absl::StatusOr<Objectives2>(const ParameterValues&)>;

struct Evaluation {
  ParameterValues parameters;
  Objectives2 objectives = {0.0, 0.0};
};

struct MoboOptions {
  int num_evaluations = 50;   // >= 1, in all (warm start and initial design included)
  int num_initial = 10;       // >= 1 and <= num_evaluations: design before the first GP
  int num_candidates = 1024;  // >= 1, Sobol candidates scored per iteration
  int num_refine = 4;         // >= 0, best candidates refined locally
  // Model log1p(f) (needs every f > -1) instead of f.
  bool log1p_objectives = true;
  uint64_t seed = 0;
  // GP settings; gp.seed is unused (each fit's seed derives from `seed`).
  // Convergence is looser than sklearn's: hyperparameters within 1e-6 of
  // the optimal LML propose the same points and cost a fifth less.
  GaussianProcessOptions gp = {.gradient_tolerance = 1e-3, .relative_tolerance = 1e-6};
  // Iterations between multi-start hyperparameter fits, >= 1 (1 = always).
  int full_refit_every = 10;
  // Early stop, for searches that start near their answer (warm starts): an
  // iteration after the initial design whose best expected hypervolume
  // improvement (the highest EHVI of its candidates and refined points)
  // is below this fraction of the observed front's hypervolume — both in
  // the GP's output space, against the EHVI reference point — ends the run
  // (MoboResult::converged). The model then expects no point to add more
  // than that share to the front. 0 = never: the whole budget is spent.
  double min_relative_improvement = 0.0;  // >= 0
  // Reference point of the reported hypervolume, in objective units.
  // Unset: max + 0.1 · range of the observed objectives (as for EHVI).
  std::optional<Objectives2> reference_point;
  // Not owned; may be null. Once *cancel is true the run stops with
  // CANCELLED before its next evaluation, so an abandoned search frees its
  // thread within one evaluation and one iteration's model work (about a
  // millisecond at 50 observations) instead of finishing its budget. The
  // hyperparameter fits, whose cost grows as n³ (seconds near 500
  // evaluations), see the flag too and stop at their next iteration. Set
  // by whoever owns the work (the analyzer, per frame); must outlive the run.
  const std::atomic<bool>* cancel = nullptr;

  absl::Status Validate() const;
};

struct MoboResult {
  std::vector<Evaluation> evaluations;  // in evaluation order
  std::vector<int> front;               // Pareto front, indices into evaluations
  Objectives2 reference_point = {0.0, 0.0};
  double hypervolume = 0.0;  // of the front w.r.t. reference_point, objective units
  int num_design = 0;        // evaluations from warm start and Sobol design
  bool exhausted = false;    // stopped before num_evaluations: no new point left
  // Stopped before num_evaluations: the expected improvement fell under
  // MoboOptions::min_relative_improvement.
  bool converged = false;

  // Human-readable: counts, hypervolume and the front's points.
  std::string Summary() const;
};

// Minimises both objectives of `objective` over `space`. warm_start points
// must be valid (CheckValues) and at most num_evaluations; they are
// evaluated first, in order. `context` (not null) runs the parallel parts.
// Returns InvalidArgument for invalid arguments or an objective value that
// is not finite (or <= -1 with log1p_objectives), and the objective's own
// status when it fails.
absl::StatusOr<MoboResult> MinimizeTwoObjectives(const SearchSpace& space,
                                                 const Objective& objective,
                                                 const MoboOptions& options,
                                                 ExecutionContext* context,
                                                 absl::Span<const ParameterValues> warm_start = {});

}  // namespace logstar

#endif  // LOGSTAR_ENGINE_OPTIMIZE_MOBO_H_
