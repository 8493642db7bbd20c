// Pareto fronts, hypervolume and expected hypervolume improvement (EHVI) for
// two objectives, both minimised.
//
// Front: a point is on the front when no other point dominates it (is <= in
// both objectives and < in one). Of exactly equal points only the one with
// the lowest index is on the front, so the front has no duplicates and does
// not depend on the order ties are met. Fronts are returned sorted by the
// first objective ascending (hence the second strictly descending).
//
// Hypervolume: the area dominated by a set and bounded by a reference point
// r, i.e. of the union of the boxes [p1, r1] × [p2, r2]. Only points strictly
// better than r in both objectives count.
//
// EHVI: E[HV(P ∪ {Y}) - HV(P)] for Y with independent Gaussian coordinates,
// in closed form (Emmerich, Deutz & Klinkenberg 2016; Yang et al. 2019): the
// region not dominated by P and below r splits into one vertical strip per
// front point plus one, the improvement is a sum over strips of (width gained)
// × (height gained), and each factor's expectation is a Gaussian ψ/Φ
// expression. A standard deviation of 0 makes that coordinate deterministic
// and the formula reduces exactly to the hypervolume improvement. Strip
// edges more than 8.5 standard deviations below the mean contribute less
// than 1e-18 σ each and are skipped, so a query costs O(log |P|) plus the
// strips near the mean; the Gaussian terms are accurate to ~1e-13 relative.
//
// All objective values are in the caller's units. Every function here is
// pure; HypervolumeFront is immutable after Create() and safe to share
// between threads.
#ifndef LOGSTAR_ENGINE_OPTIMIZE_PARETO_H_
#define LOGSTAR_ENGINE_OPTIMIZE_PARETO_H_

#include <array>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"

namespace logstar {

using Objectives2 = std::array<double, 2>;

// Indices of the non-dominated points, ordered by the first objective.
// InvalidArgument if a value is not finite. An empty input gives an empty front.
absl::StatusOr<std::vector<int>> ParetoFront(absl::Span<const Objectives2> points);

// Hypervolume of `points` with respect to `reference`. InvalidArgument on
// non-finite values.
absl::StatusOr<double> Hypervolume(absl::Span<const Objectives2> points,
                                   const Objectives2& reference);

// A front and reference point prepared for many improvement queries (what an
// acquisition function asks for thousands of candidates).
class HypervolumeFront {
 public:
  static absl::StatusOr<HypervolumeFront> Create(absl::Span<const Objectives2> points,
                                                 const Objectives2& reference);

  double hypervolume() const { return hypervolume_; }
  const Objectives2& reference() const { return reference_; }
  // The points that count (strictly better than the reference), as a front.
  const std::vector<Objectives2>& front() const { return front_; }

  // HV(front ∪ {point}) - HV(front), >= 0. Non-finite input gives NaN.
  double Improvement(const Objectives2& point) const;
  // EHVI for Y_k ~ N(mean[k], stddev[k]²) independent, stddev[k] >= 0.
  // Non-finite input or a negative stddev gives NaN.
  double ExpectedImprovement(const Objectives2& mean, const Objectives2& stddev) const;

 private:
  HypervolumeFront() = default;

  Objectives2 reference_ = {0.0, 0.0};
  std::vector<Objectives2> front_;
  // Strip i (i = 0..front size) spans first objective [lower_[i], upper_[i])
  // (lower_[0] = -inf) and lies below height_[i] in the second.
  std::vector<double> lower_;
  std::vector<double> upper_;
  std::vector<double> height_;
  double hypervolume_ = 0.0;
};

// EHVI of one Gaussian point over `points` and `reference` (builds a
// HypervolumeFront; use the class for repeated queries).
absl::StatusOr<double> ExpectedHypervolumeImprovement(absl::Span<const Objectives2> points,
                                                      const Objectives2& reference,
                                                      const Objectives2& mean,
                                                      const Objectives2& stddev);

// How to pick one point of a front. Objectives are first min–max normalised
// over the front (an objective constant over the front normalises to 0), so
// both weigh alike whatever their units — unless the caller says they share
// a unit already (ChooseOnFront's `normalize`).
enum class FrontChoiceRule {
  kEuclidean,  // closest to the utopia point (0, 0)
  kChebyshev,  // smallest max of the normalised objectives
  kWeights,    // smallest weights[0]·g1 + weights[1]·g2
};

// Returns the chosen index into `objectives` among `front_indices` (usually
// ParetoFront's output; any non-empty subset works). Ties go to the lowest
// index. `weights` (used by kWeights only) must be >= 0, finite, not both 0.
// With `normalize` false the rule sees the objectives as they are (g = f).
absl::StatusOr<int> ChooseOnFront(absl::Span<const Objectives2> objectives,
                                  absl::Span<const int> front_indices, FrontChoiceRule rule,
                                  const Objectives2& weights = {1.0, 1.0}, bool normalize = true);

}  // namespace logstar

#endif  // LOGSTAR_ENGINE_OPTIMIZE_PARETO_H_
