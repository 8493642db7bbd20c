#include "engine/amorphous/gmm.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numbers>
#include <optional>
#include <utility>

#include "absl/strings/str_cat.h"
#include "engine/base/random.h"
#include "engine/base/status_macros.h"

namespace logstar {
namespace {

constexpr double kEps = std::numeric_limits<double>::epsilon();

bool AllFinite(const Eigen::MatrixXd& m) { return m.allFinite(); }

// Row-wise log-sum-exp.
Eigen::VectorXd LogSumExpRows(const Eigen::MatrixXd& a) {
  Eigen::VectorXd out(a.rows());
  for (Eigen::Index i = 0; i < a.rows(); ++i) {
    const double m = a.row(i).maxCoeff();
    out(i) = std::isfinite(m) ? m + std::log((a.row(i).array() - m).exp().sum()) : m;
  }
  return out;
}

// Hard k-means assignment: k-means++ seeding (D² sampling), then Lloyd
// iterations. Returns one label per row.
std::vector<int> KMeansLabels(const Eigen::MatrixXd& x, int k, int iterations, SplitMix64& rng) {
  const Eigen::Index n = x.rows();
  Eigen::MatrixXd centers(k, x.cols());
  centers.row(0) = x.row(static_cast<Eigen::Index>(rng.Uniform() * n) % n);
  Eigen::VectorXd d2 = (x.rowwise() - centers.row(0)).rowwise().squaredNorm();
  for (int c = 1; c < k; ++c) {
    const double total = d2.sum();
    Eigen::Index pick = 0;
    if (total > 0.0) {
      double u = rng.Uniform() * total;
      for (pick = 0; pick < n - 1; ++pick) {
        u -= d2(pick);
        if (u < 0.0) break;
      }
    } else {
      pick = static_cast<Eigen::Index>(rng.Uniform() * n) % n;
    }
    centers.row(c) = x.row(pick);
    d2 = d2.cwiseMin((x.rowwise() - centers.row(c)).rowwise().squaredNorm());
  }
  std::vector<int> labels(n, -1);
  for (int it = 0;; ++it) {
    bool changed = false;
    for (Eigen::Index i = 0; i < n; ++i) {
      Eigen::Index best = 0;
      (centers.rowwise() - x.row(i)).rowwise().squaredNorm().minCoeff(&best);
      changed |= labels[i] != best;
      labels[i] = static_cast<int>(best);
    }
    if (!changed || it >= iterations) break;
    Eigen::MatrixXd sums = Eigen::MatrixXd::Zero(k, x.cols());
    Eigen::VectorXd counts = Eigen::VectorXd::Zero(k);
    for (Eigen::Index i = 0; i < n; ++i) sums.row(labels[i]) += x.row(i), counts(labels[i]) += 1;
    for (int c = 0; c < k; ++c) {
      if (counts(c) > 0) centers.row(c) = sums.row(c) / counts(c);
    }
  }
  return labels;
}

}  // namespace

const char* CovarianceTypeName(CovarianceType type) {
  switch (type) {
    case CovarianceType::kTied:
      return "tied";
    case CovarianceType::kDiag:
      return "diag";
    case CovarianceType::kSpherical:
      return "spherical";
    case CovarianceType::kFull:
    default:
      return "full";
  }
}

absl::StatusOr<CovarianceType> ParseCovarianceType(const std::string& name) {
  for (CovarianceType t : {CovarianceType::kFull, CovarianceType::kTied, CovarianceType::kDiag,
                           CovarianceType::kSpherical}) {
    if (name == CovarianceTypeName(t)) return t;
  }
  return absl::InvalidArgumentError(
      absl::StrCat("covariance type must be full, tied, diag or spherical, got '", name, "'"));
}

absl::Status GmmOptions::Validate() const {
  if (num_components < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("num_components must be >= 1, got ", num_components));
  }
  if (!(std::isfinite(reg_covar) && reg_covar >= 0.0)) {
    return absl::InvalidArgumentError(absl::StrCat("reg_covar must be >= 0, got ", reg_covar));
  }
  if (!(std::isfinite(tol) && tol >= 0.0)) {
    return absl::InvalidArgumentError(absl::StrCat("tol must be >= 0, got ", tol));
  }
  if (max_iter < 1)
    return absl::InvalidArgumentError(absl::StrCat("max_iter must be >= 1, got ", max_iter));
  if (n_init < 1)
    return absl::InvalidArgumentError(absl::StrCat("n_init must be >= 1, got ", n_init));
  if (kmeans_iter < 0) {
    return absl::InvalidArgumentError(absl::StrCat("kmeans_iter must be >= 0, got ", kmeans_iter));
  }
  return absl::OkStatus();
}

// The EM steps, as a friend so that they can set the model's fields.
class GmmFitter {
 public:
  GmmFitter(const Eigen::MatrixXd& x, const GmmOptions& o) : x_(x), o_(o) {}

  // Weights, means and covariances from responsibilities (sklearn's
  // _estimate_gaussian_parameters), weights normalised to sum 1; then the
  // Cholesky factors.
  absl::Status MStep(const Eigen::MatrixXd& resp, GaussianMixture& g) const {
    const Eigen::Index d = x_.cols();
    const int k = o_.num_components;
    Eigen::VectorXd nk = resp.colwise().sum().transpose().array() + 10.0 * kEps;
    const Eigen::MatrixXd rx = resp.transpose() * x_;  // K × d
    g.means_ = rx.array().colwise() / nk.array();
    g.covariances_.assign(k, Eigen::MatrixXd::Zero(d, d));
    const Eigen::MatrixXd reg = o_.reg_covar * Eigen::MatrixXd::Identity(d, d);
    switch (o_.covariance_type) {
      case CovarianceType::kFull:
        for (int c = 0; c < k; ++c) {
          const Eigen::MatrixXd diff = x_.rowwise() - g.means_.row(c);
          g.covariances_[c] =
              (diff.array().colwise() * resp.col(c).array()).matrix().transpose() * diff / nk(c) +
              reg;
        }
        break;
      case CovarianceType::kTied: {
        Eigen::MatrixXd cov = x_.transpose() * x_;
        for (int c = 0; c < k; ++c) {
          cov -= nk(c) * g.means_.row(c).transpose() * g.means_.row(c);
        }
        cov /= nk.sum();
        cov += reg;
        cov = 0.5 * (cov + cov.transpose());
        g.covariances_.assign(k, cov);
        break;
      }
      case CovarianceType::kDiag:
      case CovarianceType::kSpherical: {
        const Eigen::MatrixXd x2 = resp.transpose() * x_.cwiseAbs2();  // K × d
        for (int c = 0; c < k; ++c) {
          Eigen::VectorXd v =
              (x2.row(c).array() / nk(c) - g.means_.row(c).array().square()).transpose().array() +
              o_.reg_covar;
          if (o_.covariance_type == CovarianceType::kSpherical) v.setConstant(v.mean());
          g.covariances_[c] = v.asDiagonal();
        }
        break;
      }
    }
    g.weights_ = nk / nk.sum();
    return Factor(g);
  }

  // Cholesky factors and log-determinants of the covariances.
  static absl::Status Factor(GaussianMixture& g) {
    const int k = static_cast<int>(g.covariances_.size());
    g.chol_.resize(k);
    g.half_log_det_.resize(k);
    for (int c = 0; c < k; ++c) {
      Eigen::LLT<Eigen::MatrixXd> llt(g.covariances_[c]);
      if (llt.info() != Eigen::Success || !g.covariances_[c].allFinite()) {
        return absl::FailedPreconditionError(
            absl::StrCat("Gaussian mixture: the covariance of component ", c,
                         " is not positive definite (collapsed samples); increase reg_covar"));
      }
      g.chol_[c] = llt.matrixL();
      g.half_log_det_(c) = g.chol_[c].diagonal().array().log().sum();
    }
    return absl::OkStatus();
  }

  // One run of EM from the parameters already in `g`.
  absl::Status Em(GaussianMixture& g) const {
    double lower = -std::numeric_limits<double>::infinity();
    g.converged_ = false;
    for (int it = 1; it <= o_.max_iter; ++it) {
      const double prev = lower;
      Eigen::MatrixXd wlp = g.WeightedLogProb(x_);
      const Eigen::VectorXd norm = LogSumExpRows(wlp);
      lower = norm.mean();
      wlp.colwise() -= norm;
      LOGSTAR_RETURN_IF_ERROR(MStep(wlp.array().exp().matrix(), g));
      g.num_iterations_ = it;
      if (std::abs(lower - prev) < o_.tol) {
        g.converged_ = true;
        break;
      }
    }
    g.lower_bound_ = lower;
    return absl::OkStatus();
  }

 private:
  const Eigen::MatrixXd& x_;
  const GmmOptions& o_;
};

absl::StatusOr<GaussianMixture> GaussianMixture::Fit(const Eigen::MatrixXd& x,
                                                     const GmmOptions& options,
                                                     const GmmInit* init) {
  LOGSTAR_RETURN_IF_ERROR(options.Validate());
  const int k = options.num_components;
  if (x.rows() == 0 || x.cols() == 0) {
    return absl::InvalidArgumentError("Gaussian mixture: no samples (empty data)");
  }
  if (x.rows() < k) {
    return absl::InvalidArgumentError(absl::StrCat(
        "Gaussian mixture: ", k, " components need at least ", k, " samples, got ", x.rows()));
  }
  if (!AllFinite(x))
    return absl::InvalidArgumentError("Gaussian mixture: data must be finite (NaN or inf found)");
  const Eigen::Index d = x.cols();
  if (init != nullptr) {
    if (init->weights.size() != k || init->means.rows() != k || init->means.cols() != d ||
        static_cast<int>(init->precisions.size()) != k) {
      return absl::InvalidArgumentError(
          absl::StrCat("Gaussian mixture init: need ", k, " weights, a ", k, " x ", d,
                       " means matrix and ", k, " precision matrices"));
    }
    if (!init->weights.allFinite() || (init->weights.array() < 0).any() ||
        std::abs(init->weights.sum() - 1.0) > 1e-6) {
      return absl::InvalidArgumentError("Gaussian mixture init: weights must be >= 0 and sum to 1");
    }
  }
  GmmFitter fitter(x, options);
  std::optional<GaussianMixture> best;
  for (int run = 0; run < options.n_init; ++run) {
    GaussianMixture g;
    g.type_ = options.covariance_type;
    if (init != nullptr) {
      g.weights_ = init->weights;
      g.means_ = init->means;
      g.covariances_.resize(k);
      for (int c = 0; c < k; ++c) {
        const Eigen::MatrixXd& p = init->precisions[c];
        Eigen::LLT<Eigen::MatrixXd> llt(p);
        if (p.rows() != d || p.cols() != d || !p.allFinite() || llt.info() != Eigen::Success) {
          return absl::InvalidArgumentError(absl::StrCat("Gaussian mixture init: precision ", c,
                                                         " must be a positive definite ", d, " x ",
                                                         d, " matrix"));
        }
        g.covariances_[c] = llt.solve(Eigen::MatrixXd::Identity(d, d));
      }
      LOGSTAR_RETURN_IF_ERROR(GmmFitter::Factor(g));
    } else {
      SplitMix64 rng(options.seed * 0x100000001B3ull + static_cast<uint64_t>(run) + 1);
      const std::vector<int> labels = KMeansLabels(x, k, options.kmeans_iter, rng);
      Eigen::MatrixXd resp = Eigen::MatrixXd::Zero(x.rows(), k);
      for (Eigen::Index i = 0; i < x.rows(); ++i) resp(i, labels[i]) = 1.0;
      LOGSTAR_RETURN_IF_ERROR(fitter.MStep(resp, g));
    }
    LOGSTAR_RETURN_IF_ERROR(fitter.Em(g));
    if (!best.has_value() || g.lower_bound_ > best->lower_bound_) best = std::move(g);
  }
  return *std::move(best);
}

Eigen::MatrixXd GaussianMixture::WeightedLogProb(const Eigen::MatrixXd& x) const {
  const int k = num_components();
  const double d = static_cast<double>(dimensions());
  const double log2pi = std::log(2.0 * std::numbers::pi);
  Eigen::MatrixXd out(x.rows(), k);
  for (int c = 0; c < k; ++c) {
    const Eigen::MatrixXd diff = (x.rowwise() - means_.row(c)).transpose();  // d × n
    const Eigen::MatrixXd y = chol_[c].triangularView<Eigen::Lower>().solve(diff);
    out.col(c) = (-0.5 * (d * log2pi + y.colwise().squaredNorm().array()) - half_log_det_(c) +
                  std::log(weights_(c)))
                     .transpose();
  }
  return out;
}

absl::Status GaussianMixture::CheckData(const Eigen::MatrixXd& x) const {
  if (x.cols() != dimensions()) {
    return absl::InvalidArgumentError(absl::StrCat("Gaussian mixture: data has ", x.cols(),
                                                   " features, the model ", dimensions()));
  }
  if (!x.allFinite())
    return absl::InvalidArgumentError("Gaussian mixture: data must be finite (NaN or inf found)");
  return absl::OkStatus();
}

absl::StatusOr<Eigen::VectorXd> GaussianMixture::ScoreSamples(const Eigen::MatrixXd& x) const {
  LOGSTAR_RETURN_IF_ERROR(CheckData(x));
  return LogSumExpRows(WeightedLogProb(x));
}

absl::StatusOr<double> GaussianMixture::Score(const Eigen::MatrixXd& x) const {
  if (x.rows() == 0) return absl::InvalidArgumentError("Gaussian mixture: no samples to score");
  LOGSTAR_ASSIGN_OR_RETURN(const Eigen::VectorXd s, ScoreSamples(x));
  return s.mean();
}

absl::StatusOr<Eigen::MatrixXd> GaussianMixture::PredictProba(const Eigen::MatrixXd& x) const {
  LOGSTAR_RETURN_IF_ERROR(CheckData(x));
  Eigen::MatrixXd wlp = WeightedLogProb(x);
  wlp.colwise() -= LogSumExpRows(wlp);
  return wlp.array().exp().matrix();
}

int GaussianMixture::NumFreeParameters() const {
  const int k = num_components(), d = dimensions();
  int cov = 0;
  switch (type_) {
    case CovarianceType::kFull:
      cov = k * d * (d + 1) / 2;
      break;
    case CovarianceType::kTied:
      cov = d * (d + 1) / 2;
      break;
    case CovarianceType::kDiag:
      cov = k * d;
      break;
    case CovarianceType::kSpherical:
      cov = k;
      break;
  }
  return cov + k * d + k - 1;
}

absl::StatusOr<double> GaussianMixture::Bic(const Eigen::MatrixXd& x) const {
  LOGSTAR_ASSIGN_OR_RETURN(const double score, Score(x));
  const double n = static_cast<double>(x.rows());
  return -2.0 * score * n + NumFreeParameters() * std::log(n);
}

}  // namespace logstar
