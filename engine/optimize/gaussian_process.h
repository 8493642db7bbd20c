// Gaussian-process regression with the model scikit-learn 1.2 fits for
//   GaussianProcessRegressor(ConstantKernel(1.0, (1e-3, 1e3))
//       * Matern(length_scale=ones(d), length_scale_bounds=(1e-2, 1e2), nu=2.5)
//       + WhiteKernel(1e-3, (1e-6, 1)), alpha=1e-10, normalize_y=True)
// i.e. k(x, x') = s² · Matern52(r) + noise² · [x is x'], with
//   r² = Σ_j ((x_j - x'_j) / ℓ_j)²  (ARD: one length scale per input),
//   Matern52(r) = (1 + √5 r + 5 r² / 3) · exp(-√5 r),
// and `jitter` added to the diagonal of the training covariance only.
//
// Units: inputs live in the unit box [0, 1]^d (the caller scales them, so the
// length-scale bounds mean the same in every dimension). Targets are
// standardised internally — minus their mean, divided by their population
// standard deviation, which is taken as 1 when it is 0 (all targets equal) —
// and predictions come back in the targets' units. Hyperparameters are
// variances and length scales in the standardised / unit-box space.
//
// Fitting maximises the log marginal likelihood (LML) of the standardised
// targets over θ = (log s², log ℓ_1..d, log noise²) inside box bounds with
// an analytic gradient and a projected L-BFGS, from the warm start (or
// sklearn's initial values) plus `num_restarts` starts drawn uniformly in
// the log-bounds from a seeded SplitMix64: results depend only on the inputs,
// the seed and whether the CPU has AVX2 + FMA (the hot loops — the kernel's
// exponentials, Cholesky, K⁻¹, posterior variances — are hand-vectorised in
// gp_kernels.h, chosen at run time; without FMA their rounding differs in
// the last bits).
// An LML value costs a Cholesky factorisation, its gradient also K⁻¹, both
// O(n³): about 5 and 10 µs at n = 30 on a 2.6 GHz EPYC; fits are for the
// tens to hundreds of points of Bayesian optimisation, not for big data.
//
// Thread-safety: Fit and LogMarginalLikelihood are pure functions; a fitted
// GaussianProcess is immutable and its const methods may run concurrently.
#ifndef LOGSTAR_ENGINE_OPTIMIZE_GAUSSIAN_PROCESS_H_
#define LOGSTAR_ENGINE_OPTIMIZE_GAUSSIAN_PROCESS_H_

#include <atomic>
#include <cstdint>
#include <vector>

#include <Eigen/Core>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace logstar {

struct GpHyperparameters {
  double signal_variance = 1.0;       // s², of the standardised targets
  std::vector<double> length_scales;  // ℓ_j, unit-box units, one per input dimension
  double noise_variance = 1e-3;       // noise², of the standardised targets
};

struct GaussianProcessOptions {
  // Inclusive bounds of the fitted hyperparameters (0 < min <= max).
  double signal_variance_min = 1e-3;
  double signal_variance_max = 1e3;
  double length_scale_min = 1e-2;
  double length_scale_max = 1e2;
  double noise_variance_min = 1e-6;
  double noise_variance_max = 1.0;
  // Added to the training covariance's diagonal (sklearn's `alpha`), >= 0.
  // If the factorisation still fails after fitting, it is raised tenfold
  // until it succeeds (at most to 1e-2, then Fit fails).
  double jitter = 1e-10;
  // false: use the warm start (or the initial values) as they are, like
  // sklearn's optimizer=None; bounds are then not enforced.
  bool optimize = true;
  int num_restarts = 2;      // extra random starts, >= 0
  uint64_t seed = 0;         // of the random starts
  int max_iterations = 100;  // L-BFGS iterations per start, >= 1
  // A start has converged when the largest projected gradient component
  // falls below gradient_tolerance or an iteration lowers -LML by less than
  // relative_tolerance · max(|LML|, 1) (scipy L-BFGS-B's gtol and ftol
  // defaults, which sklearn uses).
  double gradient_tolerance = 1e-5;
  double relative_tolerance = 2.2e-9;
  // Not owned; may be null. Once *cancel is true the hyperparameter search
  // stops at its next iteration and the fit completes with the best point so
  // far (one factorisation): a caller being cancelled is not held up by a
  // search that grows as n³; it sees the flag itself and drops the model.
  const std::atomic<bool>* cancel = nullptr;

  absl::Status Validate() const;
};

class GaussianProcess {
 public:
  // x: n × d, n >= 1, d >= 1, every entry finite and in [0, 1]; y: n finite
  // values. warm_start: the first start of the optimiser (clamped into the
  // bounds) or, without optimisation, the hyperparameters; its length_scales
  // must have d entries. Without it, s² = 1, ℓ = 1, noise² = 1e-3 (clamped
  // into the bounds). InvalidArgument names the offending input.
  static absl::StatusOr<GaussianProcess> Fit(const Eigen::MatrixXd& x, const Eigen::VectorXd& y,
                                             const GaussianProcessOptions& options,
                                             const GpHyperparameters* warm_start = nullptr);

  // Posterior at the m rows of x (m × d; the fit's box is where the model
  // means something, and non-finite rows give NaN): mean and standard
  // deviation in the targets' units, each resized to m. With with_noise the deviation is of a
  // new noisy observation (latent variance + noise², what sklearn's
  // predict(return_std=True) returns); without, of the latent function.
  // stddev may be null. InvalidArgument on a column-count mismatch or null mean.
  absl::Status Predict(const Eigen::MatrixXd& x, Eigen::VectorXd* mean, Eigen::VectorXd* stddev,
                       bool with_noise = true) const;

  // LML of the standardised targets at the fitted hyperparameters (sklearn's
  // log_marginal_likelihood_value_), with the jitter actually used.
  double log_marginal_likelihood() const { return log_marginal_likelihood_; }
  const GpHyperparameters& hyperparameters() const { return hyperparameters_; }
  double jitter() const { return jitter_; }
  int num_observations() const { return static_cast<int>(x_.rows()); }
  int num_inputs() const { return static_cast<int>(x_.cols()); }
  double target_mean() const { return y_mean_; }
  double target_scale() const { return y_scale_; }

 private:
  GaussianProcess() = default;

  Eigen::MatrixXd x_;              // n × d training inputs
  Eigen::MatrixXd x_over_length_;  // n × d, column j divided by ℓ_j
  Eigen::MatrixXd chol_;           // n × n lower Cholesky factor L of the training covariance
  Eigen::MatrixXd chol_inv_t_;     // (L⁻¹)ᵀ, for the vectorised posterior variance
  Eigen::VectorXd weights_;        // K⁻¹ · standardised y
  double y_mean_ = 0.0;
  double y_scale_ = 1.0;
  GpHyperparameters hyperparameters_;
  double jitter_ = 0.0;
  double log_marginal_likelihood_ = 0.0;
};

// LML of targets y (used as given: standardise them first to match Fit) at
// `hyperparameters`, and optionally its gradient with respect to θ =
// (log s², log ℓ_1..d, log noise²) (resized to d + 2). x as for Fit, without
// the unit-box check. InvalidArgument on bad input or when the covariance is
// not positive definite.
absl::StatusOr<double> LogMarginalLikelihood(const Eigen::MatrixXd& x, const Eigen::VectorXd& y,
                                             const GpHyperparameters& hyperparameters,
                                             double jitter, Eigen::VectorXd* gradient = nullptr);
}  // namespace logstar

#endif  // LOGSTAR_ENGINE_OPTIMIZE_GAUSSIAN_PROCESS_H_
