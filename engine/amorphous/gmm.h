// Gaussian mixture models fitted by expectation–maximisation (Eigen), with
// the semantics of scikit-learn's GaussianMixture (1.2), so that results can
// be checked against it number for number.
//
// Covariance types (d = dimensions, K = components):
//  * kFull: one d × d covariance per component;
//  * kTied: one d × d covariance shared by all components;
//  * kDiag: one diagonal covariance per component;
//  * kSpherical: one variance per component (σ² I).
// Every covariance gets reg_covar added to its diagonal after each M-step, as
// sklearn does, so that a component collapsing on a few points stays
// invertible.
//
// EM, as sklearn: per initialisation, repeat E-step (log-responsibilities and
// the mean log-likelihood of the current parameters, the "lower bound") then
// M-step, until the lower bound changes by less than `tol` or after
// `max_iter` iterations. Of `n_init` initialisations the one with the largest
// final lower bound is kept. lower_bound() is the mean log-likelihood under
// the parameters *before* the last M-step (sklearn's lower_bound_); Score()
// evaluates the fitted parameters.
//
// Initialisation: k-means++ seeding (D² sampling) followed by Lloyd
// iterations, then one M-step from the hard assignment — sklearn's default
// "kmeans" initialisation. Or, for reproducing a run, explicit weights,
// means and precisions (GmmInit, sklearn's weights_init / means_init /
// precisions_init).
//
// Determinism: a fixed seed gives the same fit on one platform; nothing runs
// in parallel. Thread-safety: a fitted GaussianMixture is immutable and safe
// to share.
#ifndef LOGSTAR_ENGINE_AMORPHOUS_GMM_H_
#define LOGSTAR_ENGINE_AMORPHOUS_GMM_H_

#include <cstdint>
#include <string>
#include <vector>

#include <Eigen/Dense>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace logstar {

enum class CovarianceType { kFull, kTied, kDiag, kSpherical };

// "full", "tied", "diag", "spherical".
const char* CovarianceTypeName(CovarianceType type);
absl::StatusOr<CovarianceType> ParseCovarianceType(const std::string& name);

struct GmmOptions {
  int num_components = 2;  // >= 1
  CovarianceType covariance_type = CovarianceType::kFull;
  double reg_covar = 1e-6;  // >= 0, added to covariance diagonals
  double tol = 1e-3;        // >= 0, on the change of the mean log-likelihood
  int max_iter = 100;       // >= 1
  int n_init = 1;           // >= 1
  int kmeans_iter = 20;     // >= 0, Lloyd iterations after k-means++ seeding
  uint64_t seed = 0;

  absl::Status Validate() const;
};

// Explicit starting point. precisions are inverse covariances, one d × d
// matrix per component whatever the type (for kTied all equal, for kDiag
// diagonal, for kSpherical a multiple of I); weights sum to 1.
struct GmmInit {
  Eigen::VectorXd weights;                  // K
  Eigen::MatrixXd means;                    // K × d
  std::vector<Eigen::MatrixXd> precisions;  // K of d × d, symmetric positive definite
};

class GaussianMixture {
 public:
  // Fits to the rows of `x` (n samples × d features, finite, n >= K).
  // InvalidArgument names the problem (empty data, too few samples for K
  // components, a non-finite value, an inconsistent init); FailedPrecondition
  // when a covariance is not positive definite (increase reg_covar).
  static absl::StatusOr<GaussianMixture> Fit(const Eigen::MatrixXd& x, const GmmOptions& options,
                                             const GmmInit* init = nullptr);

  int num_components() const { return static_cast<int>(weights_.size()); }
  int dimensions() const { return static_cast<int>(means_.cols()); }
  CovarianceType covariance_type() const { return type_; }
  const Eigen::VectorXd& weights() const { return weights_; }
  const Eigen::MatrixXd& means() const { return means_; }  // K × d
  // One d × d matrix per component, in every type (tied: K equal copies).
  const std::vector<Eigen::MatrixXd>& covariances() const { return covariances_; }
  double lower_bound() const { return lower_bound_; }
  int num_iterations() const { return num_iterations_; }
  bool converged() const { return converged_; }

  // Per-sample log density log p(x_i) (n). InvalidArgument on a dimension
  // mismatch or non-finite data.
  absl::StatusOr<Eigen::VectorXd> ScoreSamples(const Eigen::MatrixXd& x) const;
  // Mean of ScoreSamples.
  absl::StatusOr<double> Score(const Eigen::MatrixXd& x) const;
  // Posterior probabilities of the components (n × K), rows sum to 1.
  absl::StatusOr<Eigen::MatrixXd> PredictProba(const Eigen::MatrixXd& x) const;
  // Bayesian information criterion, -2 n Score + p log n (lower is better).
  absl::StatusOr<double> Bic(const Eigen::MatrixXd& x) const;
  // Free parameters p of the model (weights, means, covariances).
  int NumFreeParameters() const;

 private:
  GaussianMixture() = default;

  // log w_k + log N(x_i | k), n × K.
  Eigen::MatrixXd WeightedLogProb(const Eigen::MatrixXd& x) const;
  absl::Status CheckData(const Eigen::MatrixXd& x) const;

  CovarianceType type_ = CovarianceType::kFull;
  Eigen::VectorXd weights_;
  Eigen::MatrixXd means_;
  std::vector<Eigen::MatrixXd> covariances_;
  // Lower Cholesky factors of the covariances and their log-determinants / 2.
  std::vector<Eigen::MatrixXd> chol_;
  Eigen::VectorXd half_log_det_;
  double lower_bound_ = 0.0;
  int num_iterations_ = 0;
  bool converged_ = false;

  friend class GmmFitter;
};

}  // namespace logstar

#endif  // LOGSTAR_ENGINE_AMORPHOUS_GMM_H_
