#include "engine/optimize/gaussian_process.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <deque>
#include <limits>
#include <utility>
#include <vector>

#include <Eigen/Core>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "engine/base/random.h"
#include "engine/base/status_macros.h"
#include "engine/optimize/gp_kernels.h"

namespace logstar {
namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();
constexpr double kLog2Pi = 1.8378770664093454836;
constexpr double kMaxJitter = 1e-2;

absl::Status CheckBounds(const char* name, double lo, double hi) {
  if (!(std::isfinite(lo) && std::isfinite(hi) && lo > 0.0 && lo <= hi)) {
    return absl::InvalidArgumentError(absl::StrCat("GaussianProcessOptions.", name,
                                                   "_min/_max must be finite with 0 < min <= max, "
                                                   "got [",
                                                   lo, ", ", hi, "]"));
  }
  return absl::OkStatus();
}

absl::Status CheckInputs(const Eigen::MatrixXd& x, const Eigen::VectorXd& y, bool unit_box) {
  if (x.rows() == 0) return absl::InvalidArgumentError("GP inputs are empty (no rows in x)");
  if (x.cols() == 0)
    return absl::InvalidArgumentError("GP inputs have no dimensions (x has 0 columns)");
  if (y.size() != x.rows()) {
    return absl::InvalidArgumentError(
        absl::StrCat("GP targets have ", y.size(), " values but x has ", x.rows(), " rows"));
  }
  for (Eigen::Index i = 0; i < x.rows(); ++i) {
    for (Eigen::Index j = 0; j < x.cols(); ++j) {
      const double v = x(i, j);
      if (!std::isfinite(v)) {
        return absl::InvalidArgumentError(
            absl::StrCat("GP input x(", i, ", ", j, ") is not finite: ", v));
      }
      if (unit_box && (v < 0.0 || v > 1.0)) {
        return absl::InvalidArgumentError(
            absl::StrCat("GP input x(", i, ", ", j, ") = ", v, " is outside the unit box [0, 1]"));
      }
    }
    if (!std::isfinite(y[i])) {
      return absl::InvalidArgumentError(absl::StrCat("GP target y(", i, ") is not finite: ", y[i]));
    }
  }
  return absl::OkStatus();
}

absl::Status CheckHyperparameters(const GpHyperparameters& h, Eigen::Index d) {
  if (static_cast<Eigen::Index>(h.length_scales.size()) != d) {
    return absl::InvalidArgumentError(absl::StrCat("GP hyperparameters have ",
                                                   h.length_scales.size(), " length scales for ", d,
                                                   " input dimensions"));
  }
  auto positive = [](double v) { return std::isfinite(v) && v > 0.0; };
  if (!positive(h.signal_variance)) {
    return absl::InvalidArgumentError(
        absl::StrCat("GP signal_variance must be finite and > 0, got ", h.signal_variance));
  }
  if (!positive(h.noise_variance)) {
    return absl::InvalidArgumentError(
        absl::StrCat("GP noise_variance must be finite and > 0, got ", h.noise_variance));
  }
  for (size_t j = 0; j < h.length_scales.size(); ++j) {
    if (!positive(h.length_scales[j])) {
      return absl::InvalidArgumentError(absl::StrCat(
          "GP length_scales[", j, "] must be finite and > 0, got ", h.length_scales[j]));
    }
  }
  return absl::OkStatus();
}

Eigen::VectorXd ToTheta(const GpHyperparameters& h) {
  const Eigen::Index d = static_cast<Eigen::Index>(h.length_scales.size());
  Eigen::VectorXd theta(d + 2);
  theta[0] = std::log(h.signal_variance);
  for (Eigen::Index j = 0; j < d; ++j) theta[1 + j] = std::log(h.length_scales[j]);
  theta[d + 1] = std::log(h.noise_variance);
  return theta;
}

GpHyperparameters FromTheta(const Eigen::VectorXd& theta) {
  const Eigen::Index d = theta.size() - 2;
  GpHyperparameters h;
  h.signal_variance = std::exp(theta[0]);
  h.length_scales.resize(d);
  for (Eigen::Index j = 0; j < d; ++j) h.length_scales[j] = std::exp(theta[1 + j]);
  h.noise_variance = std::exp(theta[d + 1]);
  return h;
}

// Lower Cholesky factor of the lower triangle of *a, in place
// (GpKernelFns::cholesky). False if *a is not numerically positive definite.
bool CholeskyInPlace(Eigen::MatrixXd* a) {
  return internal::GpKernels().cholesky(a->data(), a->rows());
}

// The lower triangle of K⁻¹ = L⁻ᵀ L⁻¹ from the lower factor L; *work is
// workspace, resized as needed.
void InverseFromCholesky(const Eigen::MatrixXd& l, Eigen::MatrixXd* work, Eigen::MatrixXd* kinv) {
  work->resize(internal::InverseWorkRows(l.rows()), l.rows());
  internal::GpKernels().inverse_from_cholesky(l.data(), l.rows(), work->data(), kinv->data());
}

// The LML and its gradient for one data set, evaluated many times by the
// optimiser. Pairwise quantities live in packed vectors over the strictly
// lower triangle (the covariance is symmetric: half the exponentials), the
// per-dimension squared differences, which do not depend on θ, are computed
// once, and every buffer is allocated here, so an evaluation allocates
// nothing.
class LmlEvaluator {
 public:
  LmlEvaluator(const Eigen::MatrixXd& x, const Eigen::VectorXd& y, double jitter)
      : n_(x.rows()), d_(x.cols()), pairs_(n_ * (n_ - 1) / 2), y_(y), jitter_(jitter) {
    sq_diff_.resize(pairs_, d_);
    for (Eigen::Index j = 0; j < d_; ++j) {
      Eigen::Index p = 0;
      for (Eigen::Index c = 0; c < n_; ++c) {
        for (Eigen::Index r = c + 1; r < n_; ++r, ++p) {
          const double diff = x(r, j) - x(c, j);
          sq_diff_(p, j) = diff * diff;
        }
      }
    }
    inv_sq_length_.resize(d_);
    s_.resize(pairs_);
    decay_.resize(pairs_);
    km_.resize(pairs_);
    w_.resize(pairs_);
    k_.resize(n_, n_);
    kinv_.resize(n_, n_);
    alpha_.resize(n_);
  }

  // Lower triangle (diagonal included) of s² Matern52 + (noise² + jitter) I.
  const Eigen::MatrixXd& Covariance(const Eigen::VectorXd& theta, double jitter) {
    const double signal = std::exp(theta[0]);
    const double noise = std::exp(theta[d_ + 1]);
    for (Eigen::Index j = 0; j < d_; ++j) inv_sq_length_[j] = std::exp(-2.0 * theta[1 + j]);
    // s_ = √5 r, decay_ = e^-s_, km_ = the Matérn term, in one pass.
    internal::GpKernels().matern_pairs(sq_diff_.data(), pairs_, d_, inv_sq_length_.data(), signal,
                                       s_.data(), decay_.data(), km_.data());
    Eigen::Index p = 0;
    for (Eigen::Index c = 0; c < n_; ++c) {
      k_(c, c) = signal + noise + jitter;
      for (Eigen::Index r = c + 1; r < n_; ++r, ++p) k_(r, c) = km_[p];
    }
    return k_;
  }

  // θ = (log s², log ℓ_1..d, log noise²). Returns -inf when the covariance
  // is not positive definite (as sklearn does); the optimiser then backs off.
  double Value(const Eigen::VectorXd& theta) {
    Covariance(theta, jitter_);
    if (!CholeskyInPlace(&k_)) return -kInf;
    alpha_ = y_;
    k_.triangularView<Eigen::Lower>().solveInPlace(alpha_);
    k_.triangularView<Eigen::Lower>().transpose().solveInPlace(alpha_);
    const double log_det_half = k_.diagonal().array().log().sum();
    const double lml = -0.5 * y_.dot(alpha_) - log_det_half - 0.5 * n_ * kLog2Pi;
    return std::isfinite(lml) ? lml : -kInf;
  }

  // The gradient at the θ of the last Value() call, which must have been
  // finite. Separate because it costs twice as much as the value, and the
  // line search rejects a quarter of its trial points on the value alone.
  void Gradient(const Eigen::VectorXd& theta, Eigen::VectorXd* gradient) {
    // ∂LML/∂θ_p = ½ tr(W ∂K/∂θ_p) with W = α αᵀ - K⁻¹ symmetric, so the
    // traces are diagonal terms plus twice the strictly lower ones.
    // K⁻¹ = L⁻ᵀ L⁻¹ (lower triangle only).
    const double signal = std::exp(theta[0]);
    const double noise = std::exp(theta[d_ + 1]);
    InverseFromCholesky(k_, &inverse_work_, &kinv_);
    double diagonal_sum = 0.0;
    Eigen::Index p = 0;
    for (Eigen::Index c = 0; c < n_; ++c) {
      diagonal_sum += alpha_[c] * alpha_[c] - kinv_(c, c);
      for (Eigen::Index r = c + 1; r < n_; ++r, ++p) w_[p] = alpha_[r] * alpha_[c] - kinv_(r, c);
    }
    gradient->resize(d_ + 2);
    (*gradient)[0] = 0.5 * signal * diagonal_sum + (w_ * km_).sum();
    // ∂k/∂log ℓ_j = s² (5/3) (1 + √5 r) exp(-√5 r) (x_j - x'_j)² / ℓ_j²,
    // 0 on the diagonal.
    w_ *= signal * (5.0 / 3.0) * (1.0 + s_) * decay_;
    for (Eigen::Index j = 0; j < d_; ++j) {
      (*gradient)[1 + j] = inv_sq_length_[j] * sq_diff_.col(j).dot(w_.matrix());
    }
    (*gradient)[d_ + 1] = 0.5 * noise * diagonal_sum;
  }

 private:
  Eigen::Index n_;
  Eigen::Index d_;
  Eigen::Index pairs_;
  const Eigen::VectorXd& y_;
  double jitter_;
  Eigen::MatrixXd sq_diff_;  // pairs × d, (x_rj - x_cj)² for r > c, column-major pair order
  Eigen::VectorXd inv_sq_length_;
  Eigen::ArrayXd s_, decay_, km_, w_;  // per pair
  Eigen::MatrixXd k_;                  // covariance, then its Cholesky factor (lower)
  Eigen::MatrixXd inverse_work_;       // for InverseFromCholesky
  Eigen::MatrixXd kinv_;               // K⁻¹ (lower)
  Eigen::VectorXd alpha_;
};

// (s, y) pairs of the last L-BFGS steps, oldest first.
using LbfgsMemory = std::deque<std::pair<Eigen::VectorXd, Eigen::VectorXd>>;

// Marks in *free (1 or 0) the variables that may move: a variable at a bound
// whose gradient pushes outward is held. Returns the largest gradient
// component of the free ones (the projected gradient's norm).
double MarkFreeVariables(const Eigen::VectorXd& x, const Eigen::VectorXd& g,
                         const Eigen::VectorXd& lo, const Eigen::VectorXd& hi,
                         Eigen::VectorXd* free) {
  double pg_norm = 0.0;
  for (Eigen::Index i = 0; i < x.size(); ++i) {
    const bool held = (x[i] <= lo[i] && g[i] > 0.0) || (x[i] >= hi[i] && g[i] < 0.0);
    (*free)[i] = held ? 0.0 : 1.0;
    pg_norm = std::max(pg_norm, held ? 0.0 : std::abs(g[i]));
  }
  return pg_norm;
}

// The quasi-Newton direction: the L-BFGS two-loop recursion restricted to
// the free variables. Without memory, or when that direction does not
// descend, the memory is cleared and the direction is steepest descent.
void SearchDirection(const Eigen::VectorXd& g, const Eigen::VectorXd& free, LbfgsMemory& memory,
                     Eigen::VectorXd* dir) {
  Eigen::VectorXd q = g.cwiseProduct(free);
  const int m = static_cast<int>(memory.size());
  std::vector<double> a(m);
  for (int k = m - 1; k >= 0; --k) {
    const Eigen::VectorXd& s = memory[k].first;
    const Eigen::VectorXd& yv = memory[k].second;
    const double sy = s.cwiseProduct(free).dot(yv);
    if (sy <= 0.0) {
      a[k] = 0.0;
      continue;
    }
    a[k] = s.cwiseProduct(free).dot(q) / sy;
    q -= a[k] * yv.cwiseProduct(free);
  }
  if (m > 0) {
    const Eigen::VectorXd yf = memory.back().second.cwiseProduct(free);
    const double yy = yf.squaredNorm();
    const double sy = memory.back().first.cwiseProduct(free).dot(yf);
    if (yy > 0.0 && sy > 0.0) q *= sy / yy;
  }
  for (int k = 0; k < m; ++k) {
    const Eigen::VectorXd& s = memory[k].first;
    const Eigen::VectorXd& yv = memory[k].second;
    const double sy = s.cwiseProduct(free).dot(yv);
    if (sy <= 0.0) continue;
    const double b = yv.cwiseProduct(free).dot(q) / sy;
    q += (a[k] - b) * s.cwiseProduct(free);
  }
  *dir = -q;
  if (m == 0 || !(dir->dot(g) < 0.0)) {
    memory.clear();
    *dir = -g.cwiseProduct(free);
  }
}

// A point along x + t·dir projected into the box [lo, hi] that satisfies
// the Armijo condition, from step t down. Each rejected trial shrinks t to
// the minimiser of the quadratic through f(x), its slope and the trial
// value, kept within [0.001, 0.5] of the step: far fewer evaluations than
// halving when the first step overshoots by orders of magnitude. On
// success, *x_new, *step = *x_new - x, *f_new and *g_new describe the
// point; false when the projected step vanishes or the backtracks run out.
template <typename F>
bool ProjectedLineSearch(F& f, const Eigen::VectorXd& x, double fx, const Eigen::VectorXd& g,
                         const Eigen::VectorXd& dir, double t, const Eigen::VectorXd& lo,
                         const Eigen::VectorXd& hi, Eigen::VectorXd* x_new, Eigen::VectorXd* step,
                         double* f_new, Eigen::VectorXd* g_new) {
  constexpr double kArmijo = 1e-4;
  constexpr int kMaxBacktracks = 30;
  for (int backtrack = 0; backtrack < kMaxBacktracks; ++backtrack) {
    *x_new = (x + t * dir).cwiseMax(lo).cwiseMin(hi);
    *step = *x_new - x;
    if (step->cwiseAbs().maxCoeff() == 0.0) return false;
    *f_new = f.Value(*x_new);
    const double slope = g.dot(*step);
    if (std::isfinite(*f_new) && *f_new <= fx + kArmijo * slope) {
      f.Gradient(*x_new, g_new);
      return true;
    }
    double shrink = 0.25;
    const double curvature = *f_new - fx - slope;
    if (std::isfinite(*f_new) && slope < 0.0 && curvature > 0.0) {
      shrink = std::clamp(-slope / (2.0 * curvature), 1e-3, 0.5);
    }
    t *= shrink;
  }
  return false;
}

// Minimises f over the box [lo, hi] by projected L-BFGS: the quasi-Newton
// step is taken in the variables not held at a bound by the gradient, the
// trial point is projected back into the box, and the step shrinks until
// the Armijo condition holds along the projected path. Stops by the
// tolerances and iteration limit of `options` (see gaussian_process.h).
// f.Value(x) returns the value (+inf where undefined); f.Gradient(x, &g)
// writes the gradient at the x of the last Value() call.
template <typename F>
double MinimizeInBox(F& f, const Eigen::VectorXd& lo, const Eigen::VectorXd& hi,
                     const GaussianProcessOptions& options, Eigen::VectorXd* x_inout) {
  constexpr int kMemory = 10;
  const Eigen::Index p = lo.size();

  Eigen::VectorXd x = x_inout->cwiseMax(lo).cwiseMin(hi);
  Eigen::VectorXd g(p), g_new(p), x_new(p), dir(p), free(p), step(p);
  double fx = f.Value(x);
  if (!std::isfinite(fx)) {
    *x_inout = x;
    return kInf;
  }
  f.Gradient(x, &g);
  LbfgsMemory memory;

  for (int iteration = 0; iteration < options.max_iterations; ++iteration) {
    if (options.cancel != nullptr && options.cancel->load(std::memory_order_relaxed)) break;
    if (MarkFreeVariables(x, g, lo, hi, &free) < options.gradient_tolerance) break;
    SearchDirection(g, free, memory, &dir);
    // Without curvature information the first step is scaled to move the
    // largest coordinate by at most 1 (a factor e in a hyperparameter).
    const double t = memory.empty() ? std::min(1.0, 1.0 / dir.cwiseAbs().maxCoeff()) : 1.0;
    double f_new = kInf;
    if (!ProjectedLineSearch(f, x, fx, g, dir, t, lo, hi, &x_new, &step, &f_new, &g_new)) {
      if (memory.empty()) break;
      memory.clear();  // a poor quasi-Newton model; retry from steepest descent
      continue;
    }
    Eigen::VectorXd yv = g_new - g;
    if (step.dot(yv) > 1e-10 * yv.squaredNorm()) {
      if (static_cast<int>(memory.size()) == kMemory) memory.pop_front();
      memory.emplace_back(step, std::move(yv));
    }
    const double decrease = fx - f_new;
    x.swap(x_new);
    g.swap(g_new);
    fx = f_new;
    if (decrease <=
        options.relative_tolerance * std::max({std::abs(fx), std::abs(fx + decrease), 1.0})) {
      break;
    }
  }
  *x_inout = x;
  return fx;
}

// sklearn's standardisation: mean and population std; a std of exactly 0
// becomes 1. Equal targets are caught before summing, since rounding in the
// mean could otherwise leave a spurious std of 1e-17.
void StandardizeTargets(const Eigen::VectorXd& y, double* mean, double* scale) {
  const bool constant = y.maxCoeff() == y.minCoeff();
  *mean = constant ? y[0] : y.mean();
  const double std = constant ? 0.0 : std::sqrt((y.array() - *mean).square().mean());
  *scale = std == 0.0 ? 1.0 : std;
}

// The θ maximising the LML inside the log-bounds of `options`: L-BFGS from
// `start` and from options.num_restarts starts drawn uniformly in the
// log-bounds, the best kept (the earlier of equals). If no start had a
// positive definite covariance, the start itself, clamped into the bounds.
Eigen::VectorXd MaximizeLml(LmlEvaluator& evaluator, const Eigen::VectorXd& start,
                            const GaussianProcessOptions& options) {
  const Eigen::Index p = start.size();
  Eigen::VectorXd lo(p), hi(p);
  lo[0] = std::log(options.signal_variance_min);
  hi[0] = std::log(options.signal_variance_max);
  lo.segment(1, p - 2).setConstant(std::log(options.length_scale_min));
  hi.segment(1, p - 2).setConstant(std::log(options.length_scale_max));
  lo[p - 1] = std::log(options.noise_variance_min);
  hi[p - 1] = std::log(options.noise_variance_max);
  struct NegativeLml {
    LmlEvaluator& evaluator;
    double Value(const Eigen::VectorXd& t) { return -evaluator.Value(t); }
    void Gradient(const Eigen::VectorXd& t, Eigen::VectorXd* g) {
      evaluator.Gradient(t, g);
      *g = -*g;
    }
  } negative_lml{evaluator};
  SplitMix64 rng(options.seed);
  Eigen::VectorXd best = start;
  double best_value = MinimizeInBox(negative_lml, lo, hi, options, &best);
  for (int r = 0; r < options.num_restarts; ++r) {
    Eigen::VectorXd candidate(p);
    for (Eigen::Index i = 0; i < p; ++i) candidate[i] = rng.Uniform(lo[i], hi[i]);
    const double value = MinimizeInBox(negative_lml, lo, hi, options, &candidate);
    if (value < best_value) {
      best_value = value;
      best = candidate;
    }
  }
  return best.cwiseMax(lo).cwiseMin(hi);
}

// exp(log(bound)) can land an ulp outside the bound.
void ClampToBounds(const GaussianProcessOptions& options, GpHyperparameters* h) {
  h->signal_variance =
      std::clamp(h->signal_variance, options.signal_variance_min, options.signal_variance_max);
  for (double& l : h->length_scales) {
    l = std::clamp(l, options.length_scale_min, options.length_scale_max);
  }
  h->noise_variance =
      std::clamp(h->noise_variance, options.noise_variance_min, options.noise_variance_max);
}

// The final factorisation into *chol (lower, zero above), with jitter
// escalation for the rare θ whose covariance is numerically singular:
// returns the jitter used.
absl::StatusOr<double> FactorWithJitter(LmlEvaluator& evaluator, const Eigen::VectorXd& theta,
                                        double jitter, Eigen::MatrixXd* chol) {
  while (true) {
    *chol = evaluator.Covariance(theta, jitter);
    if (CholeskyInPlace(chol)) break;
    jitter = jitter <= 0.0 ? 1e-12 : 10.0 * jitter;
    if (jitter > kMaxJitter) {
      return absl::InternalError("GP covariance is not positive definite even with jitter 1e-2");
    }
  }
  chol->triangularView<Eigen::StrictlyUpper>().setZero();
  return jitter;
}

}  // namespace

absl::Status GaussianProcessOptions::Validate() const {
  LOGSTAR_RETURN_IF_ERROR(CheckBounds("signal_variance", signal_variance_min, signal_variance_max));
  LOGSTAR_RETURN_IF_ERROR(CheckBounds("length_scale", length_scale_min, length_scale_max));
  LOGSTAR_RETURN_IF_ERROR(CheckBounds("noise_variance", noise_variance_min, noise_variance_max));
  if (!(std::isfinite(jitter) && jitter >= 0.0)) {
    return absl::InvalidArgumentError(
        absl::StrCat("GaussianProcessOptions.jitter must be finite and >= 0, got ", jitter));
  }
  if (num_restarts < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("GaussianProcessOptions.num_restarts must be >= 0, got ", num_restarts));
  }
  if (!(std::isfinite(gradient_tolerance) && gradient_tolerance >= 0.0)) {
    return absl::InvalidArgumentError(
        absl::StrCat("GaussianProcessOptions.gradient_tolerance must be finite and >= 0, got ",
                     gradient_tolerance));
  }
  if (!(std::isfinite(relative_tolerance) && relative_tolerance >= 0.0)) {
    return absl::InvalidArgumentError(
        absl::StrCat("GaussianProcessOptions.relative_tolerance must be finite and >= 0, got ",
                     relative_tolerance));
  }
  if (max_iterations < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("GaussianProcessOptions.max_iterations must be >= 1, got ", max_iterations));
  }
  return absl::OkStatus();
}

absl::StatusOr<double> LogMarginalLikelihood(const Eigen::MatrixXd& x, const Eigen::VectorXd& y,
                                             const GpHyperparameters& hyperparameters,
                                             double jitter, Eigen::VectorXd* gradient) {
  LOGSTAR_RETURN_IF_ERROR(CheckInputs(x, y, /*unit_box=*/false));
  LOGSTAR_RETURN_IF_ERROR(CheckHyperparameters(hyperparameters, x.cols()));
  if (!(std::isfinite(jitter) && jitter >= 0.0)) {
    return absl::InvalidArgumentError(absl::StrCat("jitter must be finite and >= 0, got ", jitter));
  }
  LmlEvaluator evaluator(x, y, jitter);
  const Eigen::VectorXd theta = ToTheta(hyperparameters);
  const double lml = evaluator.Value(theta);
  if (!std::isfinite(lml)) {
    return absl::InvalidArgumentError(
        "GP covariance is not positive definite at these hyperparameters");
  }
  if (gradient != nullptr) evaluator.Gradient(theta, gradient);
  return lml;
}

absl::StatusOr<GaussianProcess> GaussianProcess::Fit(const Eigen::MatrixXd& x,
                                                     const Eigen::VectorXd& y,
                                                     const GaussianProcessOptions& options,
                                                     const GpHyperparameters* warm_start) {
  LOGSTAR_RETURN_IF_ERROR(options.Validate());
  LOGSTAR_RETURN_IF_ERROR(CheckInputs(x, y, /*unit_box=*/true));
  const Eigen::Index n = x.rows();
  const Eigen::Index d = x.cols();
  GpHyperparameters start;
  if (warm_start != nullptr) {
    LOGSTAR_RETURN_IF_ERROR(CheckHyperparameters(*warm_start, d));
    start = *warm_start;
  } else {
    start.length_scales.assign(d, 1.0);
  }

  GaussianProcess gp;
  gp.x_ = x;
  StandardizeTargets(y, &gp.y_mean_, &gp.y_scale_);
  const Eigen::VectorXd y_std = (y.array() - gp.y_mean_) / gp.y_scale_;

  LmlEvaluator evaluator(x, y_std, options.jitter);
  if (options.optimize) {
    gp.hyperparameters_ = FromTheta(MaximizeLml(evaluator, ToTheta(start), options));
    ClampToBounds(options, &gp.hyperparameters_);
  } else {
    gp.hyperparameters_ = FromTheta(ToTheta(start));
  }

  const GpHyperparameters& h = gp.hyperparameters_;
  gp.x_over_length_ = x;
  for (Eigen::Index j = 0; j < d; ++j) gp.x_over_length_.col(j) /= h.length_scales[j];
  LOGSTAR_ASSIGN_OR_RETURN(gp.jitter_,
                           FactorWithJitter(evaluator, ToTheta(h), options.jitter, &gp.chol_));
  // The posterior's precomputed parts: K⁻¹ y and (L⁻¹)ᵀ.
  gp.weights_ = y_std;
  gp.chol_.triangularView<Eigen::Lower>().solveInPlace(gp.weights_);
  gp.chol_.triangularView<Eigen::Lower>().transpose().solveInPlace(gp.weights_);
  gp.chol_inv_t_ = Eigen::MatrixXd::Identity(n, n);
  gp.chol_.triangularView<Eigen::Lower>().solveInPlace(gp.chol_inv_t_);
  gp.chol_inv_t_.transposeInPlace();
  gp.log_marginal_likelihood_ =
      -0.5 * y_std.dot(gp.weights_) - gp.chol_.diagonal().array().log().sum() - 0.5 * n * kLog2Pi;
  return gp;
}

absl::Status GaussianProcess::Predict(const Eigen::MatrixXd& x, Eigen::VectorXd* mean,
                                      Eigen::VectorXd* stddev, bool with_noise) const {
  if (mean == nullptr) return absl::InvalidArgumentError("mean must not be null");
  if (x.cols() != x_.cols()) {
    return absl::InvalidArgumentError(absl::StrCat("GP prediction inputs have ", x.cols(),
                                                   " columns, the model has ", x_.cols()));
  }
  const Eigen::Index m = x.rows();
  const Eigen::Index n = x_.rows();
  const Eigen::Index d = x_.cols();
  const GpHyperparameters& h = hyperparameters_;
  Eigen::MatrixXd scaled = x;
  for (Eigen::Index j = 0; j < d; ++j) scaled.col(j) /= h.length_scales[j];
  const internal::GpKernelFns& kernels = internal::GpKernels();
  Eigen::MatrixXd cross(m, n);
  kernels.matern_cross(scaled.data(), m, x_over_length_.data(), n, d, h.signal_variance,
                       cross.data());
  mean->noalias() = cross * weights_;
  *mean = (mean->array() * y_scale_ + y_mean_).matrix();
  if (stddev == nullptr) return absl::OkStatus();
  // Posterior variance s² - ‖L⁻¹ k*‖².
  Eigen::VectorXd explained(m);
  kernels.quadratic_forms(cross.data(), m, chol_inv_t_.data(), n, explained.data());
  const double prior = h.signal_variance + (with_noise ? h.noise_variance : 0.0);
  *stddev = ((prior - explained.array()).max(0.0).sqrt() * y_scale_).matrix();
  return absl::OkStatus();
}
}  // namespace logstar
