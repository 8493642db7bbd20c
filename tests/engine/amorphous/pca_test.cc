// Pca against scikit-learn's PCA (goldens from
// tests/conformance/make_gmm_goldens.py), both eigen routes.
#include "engine/amorphous/pca.h"

#include <fstream>
#include <sstream>
#include <string>

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

namespace logstar {
namespace {

Eigen::MatrixXd ToMatrix(const nlohmann::json& j) {
  Eigen::MatrixXd m(j.size(), j[0].size());
  for (size_t r = 0; r < j.size(); ++r) {
    for (size_t c = 0; c < j[r].size(); ++c) m(r, c) = j[r][c].get<double>();
  }
  return m;
}

TEST(PcaTest, MatchesScikitLearnUpToSign) {
  std::ifstream in(std::string(LOGSTAR_TEST_DATA_DIR) + "/gmm/pca_goldens.json");
  std::stringstream text;
  text << in.rdbuf();
  const nlohmann::json golden = nlohmann::json::parse(text.str(), nullptr, false);
  ASSERT_FALSE(golden.is_discarded()) << "tests/data/gmm/pca_goldens.json missing or invalid";
  ASSERT_EQ(golden["cases"].size(), 2u);  // d <= n (covariance) and d > n (Gram)
  for (const nlohmann::json& c : golden["cases"]) {
    const Eigen::MatrixXd x = ToMatrix(c["x"]);
    absl::StatusOr<Pca> p = Pca::Fit(x, {.num_components = c["num_components"].get<int>()});
    ASSERT_TRUE(p.ok()) << p.status();
    const Eigen::MatrixXd comps = ToMatrix(c["components"]);
    const Eigen::MatrixXd head = ToMatrix(c["transformed_head"]);
    const Eigen::MatrixXd mine = p->Transform(x.topRows(4)).value();
    for (Eigen::Index k = 0; k < comps.rows(); ++k) {
      EXPECT_NEAR(p->explained_variance()(k), c["explained_variance"][k].get<double>(),
                  1e-9 * c["explained_variance"][0].get<double>());
      EXPECT_NEAR(p->explained_variance_ratio()(k), c["explained_variance_ratio"][k].get<double>(),
                  1e-9);
      const double sign = comps.row(k).dot(p->components().row(k)) < 0 ? -1.0 : 1.0;
      EXPECT_LT((sign * p->components().row(k) - comps.row(k)).cwiseAbs().maxCoeff(), 1e-8);
      EXPECT_LT((sign * mine.col(k) - head.col(k)).cwiseAbs().maxCoeff(), 1e-8);
    }
  }
}

TEST(PcaTest, BadInputNamesTheProblem) {
  Eigen::MatrixXd one(1, 3);
  one << 1, 2, 3;
  EXPECT_THAT(std::string(Pca::Fit(one, {}).status().message()), testing::HasSubstr("2 samples"));
  Eigen::MatrixXd x = Eigen::MatrixXd::Random(5, 3);
  EXPECT_THAT(std::string(Pca::Fit(x, {.num_components = 4}).status().message()),
              testing::HasSubstr("exceeds"));
  x(2, 1) = std::nan("");
  EXPECT_THAT(std::string(Pca::Fit(x, {}).status().message()), testing::HasSubstr("finite"));
}

}  // namespace
}  // namespace logstar
