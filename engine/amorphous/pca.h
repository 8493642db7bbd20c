// Principal component analysis (Eigen), as scikit-learn's PCA with the full
// solver: centred data, components = leading eigenvectors of the sample
// covariance (n - 1 in the denominator), explained variances = their
// eigenvalues.
//
// The eigenproblem is solved on the smaller of the d × d covariance and the
// n × n Gram matrix, so many-pixel patches of few atoms stay cheap.
// Sign: an eigenvector's sign is arbitrary; here each component's entry of
// largest magnitude is made positive (sklearn flips by another rule), so
// callers must not give the sign meaning (see engine/amorphous/amorphous.h).
//
// Immutable after Fit(); safe to share between threads.
#ifndef LOGSTAR_ENGINE_AMORPHOUS_PCA_H_
#define LOGSTAR_ENGINE_AMORPHOUS_PCA_H_

#include <Eigen/Dense>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace logstar {

struct PcaOptions {
  int num_components = 2;  // >= 1 and <= min(n, d) of the data

  absl::Status Validate() const;
};

class Pca {
 public:
  // Fits to the rows of `x` (n samples × d features, finite, n >= 2).
  static absl::StatusOr<Pca> Fit(const Eigen::MatrixXd& x, const PcaOptions& options);

  const Eigen::RowVectorXd& mean() const { return mean_; }
  const Eigen::MatrixXd& components() const { return components_; }  // k × d, orthonormal rows
  const Eigen::VectorXd& explained_variance() const { return explained_variance_; }
  const Eigen::VectorXd& explained_variance_ratio() const { return explained_variance_ratio_; }

  // (x - mean) · componentsᵀ, n × k.
  absl::StatusOr<Eigen::MatrixXd> Transform(const Eigen::MatrixXd& x) const;

 private:
  Pca() = default;
  Eigen::RowVectorXd mean_;
  Eigen::MatrixXd components_;
  Eigen::VectorXd explained_variance_;
  Eigen::VectorXd explained_variance_ratio_;
};

}  // namespace logstar

#endif  // LOGSTAR_ENGINE_AMORPHOUS_PCA_H_
