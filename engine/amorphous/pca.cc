#include "engine/amorphous/pca.h"

#include <algorithm>

#include "absl/strings/str_cat.h"

namespace logstar {

absl::Status PcaOptions::Validate() const {
  if (num_components < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("PCA num_components must be >= 1, got ", num_components));
  }
  return absl::OkStatus();
}

absl::StatusOr<Pca> Pca::Fit(const Eigen::MatrixXd& x, const PcaOptions& options) {
  if (absl::Status s = options.Validate(); !s.ok()) return s;
  const Eigen::Index n = x.rows(), d = x.cols();
  if (n < 2 || d < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("PCA needs at least 2 samples with at least 1 feature, got ", n, " x ", d));
  }
  const int k = options.num_components;
  if (k > std::min(n, d)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "PCA num_components = ", k, " exceeds min(samples, features) = ", std::min(n, d)));
  }
  if (!x.allFinite())
    return absl::InvalidArgumentError("PCA: data must be finite (NaN or inf found)");
  Pca p;
  p.mean_ = x.colwise().mean();
  const Eigen::MatrixXd xc = x.rowwise() - p.mean_;
  const double denom = static_cast<double>(n - 1);
  p.components_.resize(k, d);
  p.explained_variance_.resize(k);
  double total = 0.0;
  if (d <= n) {
    const Eigen::MatrixXd cov = xc.transpose() * xc / denom;
    total = cov.trace();
    Eigen::SelfAdjointEigenSolver<Eigen::MatrixXd> eig(cov);
    for (int c = 0; c < k; ++c) {
      p.explained_variance_(c) = std::max(eig.eigenvalues()(d - 1 - c), 0.0);
      p.components_.row(c) = eig.eigenvectors().col(d - 1 - c).transpose();
    }
  } else {
    // Gram route: the eigenvectors u of Xc Xcᵀ map to Xcᵀ u / ‖Xcᵀ u‖.
    const Eigen::MatrixXd gram = xc * xc.transpose() / denom;
    total = gram.trace();
    Eigen::SelfAdjointEigenSolver<Eigen::MatrixXd> eig(gram);
    for (int c = 0; c < k; ++c) {
      p.explained_variance_(c) = std::max(eig.eigenvalues()(n - 1 - c), 0.0);
      Eigen::VectorXd v = xc.transpose() * eig.eigenvectors().col(n - 1 - c);
      const double norm = v.norm();
      if (norm > 0.0) v /= norm;
      p.components_.row(c) = v.transpose();
    }
  }
  for (int c = 0; c < k; ++c) {
    Eigen::Index i = 0;
    p.components_.row(c).cwiseAbs().maxCoeff(&i);
    if (p.components_(c, i) < 0) p.components_.row(c) *= -1.0;
  }
  p.explained_variance_ratio_ =
      total > 0.0 ? Eigen::VectorXd(p.explained_variance_ / total) : Eigen::VectorXd::Zero(k);
  return p;
}

absl::StatusOr<Eigen::MatrixXd> Pca::Transform(const Eigen::MatrixXd& x) const {
  if (x.cols() != mean_.size()) {
    return absl::InvalidArgumentError(
        absl::StrCat("PCA: data has ", x.cols(), " features, the fit ", mean_.size()));
  }
  return (x.rowwise() - mean_) * components_.transpose();
}

}  // namespace logstar
