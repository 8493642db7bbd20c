// GaussianMixture against scikit-learn's GaussianMixture (goldens from
// tests/conformance/make_gmm_goldens.py) and against closed forms.
#include "engine/amorphous/gmm.h"

#include <cmath>
#include <fstream>
#include <numbers>
#include <sstream>
#include <string>

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

namespace logstar {
namespace {

using ::testing::HasSubstr;

Eigen::MatrixXd ToMatrix(const nlohmann::json& j) {
  Eigen::MatrixXd m(j.size(), j[0].size());
  for (size_t r = 0; r < j.size(); ++r) {
    for (size_t c = 0; c < j[r].size(); ++c) m(r, c) = j[r][c].get<double>();
  }
  return m;
}

Eigen::VectorXd ToVector(const nlohmann::json& j) {
  Eigen::VectorXd v(j.size());
  for (size_t i = 0; i < j.size(); ++i) v(i) = j[i].get<double>();
  return v;
}

nlohmann::json ReadJson(const std::string& path) {
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  return nlohmann::json::parse(text.str(), nullptr, /*allow_exceptions=*/false);
}

TEST(GmmTest, MatchesScikitLearnFromTheSameStart) {
  const nlohmann::json golden =
      ReadJson(std::string(LOGSTAR_TEST_DATA_DIR) + "/gmm/gmm_goldens.json");
  ASSERT_FALSE(golden.is_discarded()) << "tests/data/gmm/gmm_goldens.json missing or invalid";
  int types_seen = 0;
  for (const nlohmann::json& c : golden["cases"]) {
    const std::string type_name = c["covariance_type"].get<std::string>();
    SCOPED_TRACE(type_name + " tol " + std::to_string(c["tol"].get<double>()));
    const Eigen::MatrixXd x = ToMatrix(c["x"]);
    GmmInit init;
    init.weights = ToVector(c["weights_init"]);
    init.means = ToMatrix(c["means_init"]);
    for (const nlohmann::json& p : c["precisions_init"]) init.precisions.push_back(ToMatrix(p));
    GmmOptions o;
    o.num_components = static_cast<int>(init.weights.size());
    o.covariance_type = ParseCovarianceType(type_name).value();
    o.tol = c["tol"].get<double>();
    o.max_iter = c["max_iter"].get<int>();
    o.reg_covar = c["reg_covar"].get<double>();
    absl::StatusOr<GaussianMixture> g = GaussianMixture::Fit(x, o, &init);
    ASSERT_TRUE(g.ok()) << g.status();
    EXPECT_EQ(g->num_iterations(), c["n_iter"].get<int>());
    EXPECT_EQ(g->converged(), c["converged"].get<bool>());
    const Eigen::VectorXd w = ToVector(c["weights"]);
    const Eigen::MatrixXd m = ToMatrix(c["means"]);
    EXPECT_LT((g->weights() - w).cwiseAbs().maxCoeff(), 1e-4);
    EXPECT_LT((g->means() - m).cwiseAbs().maxCoeff(), 1e-4);
    for (int k = 0; k < o.num_components; ++k) {
      EXPECT_LT((g->covariances()[k] - ToMatrix(c["covariances"][k])).cwiseAbs().maxCoeff(), 1e-4)
          << "component " << k;
    }
    const double lb = c["lower_bound"].get<double>();
    EXPECT_NEAR(g->lower_bound(), lb, 1e-6 * std::abs(lb));
    const double score = c["score"].get<double>();
    EXPECT_NEAR(g->Score(x).value(), score, 1e-6 * std::abs(score));
    const double bic = c["bic"].get<double>();
    EXPECT_NEAR(g->Bic(x).value(), bic, 1e-6 * std::abs(bic));
    const Eigen::MatrixXd proba = g->PredictProba(x.topRows(5)).value();
    EXPECT_LT((proba - ToMatrix(c["proba_head"])).cwiseAbs().maxCoeff(), 1e-4);
    ++types_seen;
  }
  EXPECT_EQ(types_seen, 8);
}

// One component is the sample mean and (biased) covariance plus reg_covar,
// and the log-likelihood is the Gaussian's in closed form.
TEST(GmmTest, OneComponentIsTheSampleGaussian) {
  Eigen::MatrixXd x(6, 2);
  x << 0, 0, 1, 0, 0, 2, 3, 1, 2, 2, 1, 3;
  const Eigen::RowVector2d mean = x.colwise().mean();
  const Eigen::MatrixXd diff = x.rowwise() - mean;
  const Eigen::Matrix2d cov = diff.transpose() * diff / 6.0 + 1e-6 * Eigen::Matrix2d::Identity();
  const double expected = -0.5 * (2 * std::log(2 * std::numbers::pi) + std::log(cov.determinant()) +
                                  (diff * cov.inverse()).cwiseProduct(diff).sum() / 6.0);
  for (CovarianceType t : {CovarianceType::kFull, CovarianceType::kTied}) {
    absl::StatusOr<GaussianMixture> g =
        GaussianMixture::Fit(x, {.num_components = 1, .covariance_type = t});
    ASSERT_TRUE(g.ok()) << g.status();
    EXPECT_LT((g->means() - mean).cwiseAbs().maxCoeff(), 1e-12);
    EXPECT_LT((g->covariances()[0] - cov).cwiseAbs().maxCoeff(), 1e-9);
    EXPECT_NEAR(g->Score(x).value(), expected, 1e-9);
    // p = 3 covariance + 2 mean parameters.
    EXPECT_NEAR(g->Bic(x).value(), -2 * 6 * expected + 5 * std::log(6.0), 1e-8);
  }
}

// k-means++ initialisation finds two well separated clusters whatever the seed.
TEST(GmmTest, KMeansInitialisationSeparatesClusters) {
  Eigen::MatrixXd x(40, 2);
  for (int i = 0; i < 40; ++i) {
    const double c = i < 25 ? -10.0 : 10.0;
    x(i, 0) = c + std::sin(1.3 * i);
    x(i, 1) = std::cos(0.7 * i);
  }
  for (uint64_t seed : {0, 1, 2, 3}) {
    for (CovarianceType t : {CovarianceType::kFull, CovarianceType::kTied, CovarianceType::kDiag,
                             CovarianceType::kSpherical}) {
      absl::StatusOr<GaussianMixture> g =
          GaussianMixture::Fit(x, {.covariance_type = t, .n_init = 2, .seed = seed});
      ASSERT_TRUE(g.ok()) << g.status();
      const double w_small = std::min(g->weights()(0), g->weights()(1));
      EXPECT_NEAR(w_small, 15.0 / 40.0, 1e-6) << CovarianceTypeName(t);
      const Eigen::MatrixXd p = g->PredictProba(x).value();
      EXPECT_LT((p.rowwise().sum().array() - 1.0).abs().maxCoeff(), 1e-12);
    }
  }
}

TEST(GmmTest, BadInputNamesTheProblem) {
  Eigen::MatrixXd empty(0, 2);
  EXPECT_THAT(std::string(GaussianMixture::Fit(empty, {}).status().message()), HasSubstr("empty"));
  Eigen::MatrixXd two(2, 2);
  two << 0, 0, 1, 1;
  EXPECT_THAT(std::string(GaussianMixture::Fit(two, {.num_components = 3}).status().message()),
              HasSubstr("at least 3 samples"));
  two(1, 1) = std::nan("");
  EXPECT_THAT(std::string(GaussianMixture::Fit(two, {.num_components = 1}).status().message()),
              HasSubstr("finite"));
  EXPECT_THAT(std::string(GmmOptions{.reg_covar = -1}.Validate().message()),
              HasSubstr("reg_covar"));
  EXPECT_FALSE(ParseCovarianceType("banana").ok());
}

}  // namespace
}  // namespace logstar
