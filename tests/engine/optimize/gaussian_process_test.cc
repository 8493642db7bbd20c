// GaussianProcess against scikit-learn 1.2's GaussianProcessRegressor on the
// goldens of tests/conformance/make_gp_goldens.py (tests/data/gp/), and its
// vector kernels (gp_kernels.h), every variant the CPU runs, against Eigen's
// dense routines and the closed forms with std::exp.
#include "engine/optimize/gaussian_process.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <Eigen/Cholesky>
#include <Eigen/Core>
#include <Eigen/LU>
#include <nlohmann/json.hpp>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "engine/base/random.h"
#include "engine/optimize/gp_kernels.h"

namespace logstar {
namespace {

using ::testing::HasSubstr;

constexpr double kPredictionTolerance = 1e-6;  // relative to max(1, |value|)
constexpr double kLmlRelTolerance = 0.01;      // fitted LML vs sklearn's

struct FittedGolden {
  int n_restarts = 0;
  double lml = 0.0;
  std::vector<double> theta;
};

struct GpCase {
  std::string name;
  Eigen::MatrixXd x;
  Eigen::VectorXd y;
  Eigen::MatrixXd x_test;
  GpHyperparameters fixed;
  Eigen::VectorXd mean;
  Eigen::VectorXd std;
  double lml = 0.0;
  Eigen::VectorXd gradient;
  std::vector<FittedGolden> fitted;
};

Eigen::MatrixXd ToMatrix(const nlohmann::json& j) {
  Eigen::MatrixXd m(j.size(), j.at(0).size());
  for (size_t r = 0; r < j.size(); ++r) {
    for (size_t c = 0; c < j[r].size(); ++c) m(r, c) = j[r][c].get<double>();
  }
  return m;
}

Eigen::VectorXd ToVector(const nlohmann::json& j) {
  Eigen::VectorXd v(j.size());
  for (size_t i = 0; i < j.size(); ++i) v[i] = j[i].get<double>();
  return v;
}

nlohmann::json ReadJson(const std::string& path) {
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  return nlohmann::json::parse(text.str(), nullptr, /*allow_exceptions=*/false);
}

std::vector<GpCase> LoadCases() {
  const std::string dir = std::string(LOGSTAR_TEST_DATA_DIR) + "/gp/";
  const nlohmann::json index = ReadJson(dir + "index.json");
  std::vector<GpCase> cases;
  if (index.is_discarded() || !index.contains("cases")) return cases;
  for (const nlohmann::json& name : index["cases"]) {
    const nlohmann::json j = ReadJson(dir + name.get<std::string>() + ".json");
    if (j.is_discarded()) continue;
    GpCase c;
    c.name = j["name"];
    c.x = ToMatrix(j["x"]);
    c.y = ToVector(j["y"]);
    c.x_test = ToMatrix(j["x_test"]);
    const nlohmann::json& f = j["fixed"];
    c.fixed.signal_variance = f["signal_variance"];
    c.fixed.length_scales = f["length_scales"].get<std::vector<double>>();
    c.fixed.noise_variance = f["noise_variance"];
    c.mean = ToVector(f["mean"]);
    c.std = ToVector(f["std"]);
    c.lml = f["log_marginal_likelihood"];
    c.gradient = ToVector(f["lml_gradient"]);
    for (const nlohmann::json& r : j["fitted"]) {
      c.fitted.push_back({r["n_restarts"].get<int>(), r["log_marginal_likelihood"].get<double>(),
                          r["theta"].get<std::vector<double>>()});
    }
    cases.push_back(std::move(c));
  }
  return cases;
}

const std::vector<GpCase>& Cases() {
  static const std::vector<GpCase>* const cases = new std::vector<GpCase>(LoadCases());
  return *cases;
}

double Tolerance(double value) { return kPredictionTolerance * std::max(1.0, std::abs(value)); }

// sklearn's standardisation, for calling LogMarginalLikelihood directly.
Eigen::VectorXd Standardise(const Eigen::VectorXd& y) {
  const double mean = y.mean();
  double std = std::sqrt((y.array() - mean).square().mean());
  if (y.maxCoeff() == y.minCoeff()) std = 0.0;
  return (y.array() - (std == 0.0 ? y[0] : mean)) / (std == 0.0 ? 1.0 : std);
}

TEST(GaussianProcessTest, GoldensArePresent) {
  ASSERT_GE(Cases().size(), 5u) << "run tests/conformance/make_gp_goldens.py";
  int dims_seen = 0;
  for (const GpCase& c : Cases()) dims_seen |= 1 << c.x.cols();
  EXPECT_EQ(dims_seen & 0b10110, 0b10110) << "want d = 1, 2 and 4";
}

TEST(GaussianProcessTest, FixedHyperparametersMatchSklearnPredictions) {
  for (const GpCase& c : Cases()) {
    SCOPED_TRACE(c.name);
    GaussianProcessOptions options;
    options.optimize = false;
    absl::StatusOr<GaussianProcess> gp = GaussianProcess::Fit(c.x, c.y, options, &c.fixed);
    ASSERT_TRUE(gp.ok()) << gp.status();
    Eigen::VectorXd mean, std;
    ASSERT_TRUE(gp->Predict(c.x_test, &mean, &std).ok());
    ASSERT_EQ(mean.size(), c.mean.size());
    for (Eigen::Index i = 0; i < mean.size(); ++i) {
      EXPECT_NEAR(mean[i], c.mean[i], Tolerance(c.mean[i])) << "mean at test point " << i;
      EXPECT_NEAR(std[i], c.std[i], Tolerance(c.std[i])) << "std at test point " << i;
    }
    EXPECT_NEAR(gp->log_marginal_likelihood(), c.lml, Tolerance(c.lml));
    EXPECT_EQ(gp->jitter(), 1e-10);
  }
}

TEST(GaussianProcessTest, LmlAndGradientMatchSklearn) {
  for (const GpCase& c : Cases()) {
    SCOPED_TRACE(c.name);
    Eigen::VectorXd gradient;
    absl::StatusOr<double> lml =
        LogMarginalLikelihood(c.x, Standardise(c.y), c.fixed, 1e-10, &gradient);
    ASSERT_TRUE(lml.ok()) << lml.status();
    EXPECT_NEAR(*lml, c.lml, Tolerance(c.lml));
    ASSERT_EQ(gradient.size(), c.gradient.size());
    for (Eigen::Index i = 0; i < gradient.size(); ++i) {
      EXPECT_NEAR(gradient[i], c.gradient[i], Tolerance(c.gradient[i])) << "component " << i;
    }
  }
}

TEST(GaussianProcessTest, FittedLmlMatchesSklearn) {
  int compared = 0;
  for (const GpCase& c : Cases()) {
    for (const FittedGolden& golden : c.fitted) {
      SCOPED_TRACE(c.name + " restarts " + std::to_string(golden.n_restarts));
      GaussianProcessOptions options;
      options.num_restarts = golden.n_restarts;
      options.seed = golden.n_restarts;
      absl::StatusOr<GaussianProcess> gp = GaussianProcess::Fit(c.x, c.y, options);
      ASSERT_TRUE(gp.ok()) << gp.status();
      const double ours = gp->log_marginal_likelihood();
      std::printf("%-16s restarts %d: LML sklearn %.9g, logstar %.9g\n", c.name.c_str(),
                  golden.n_restarts, golden.lml, ours);
      const double tolerance = kLmlRelTolerance * std::max(1.0, std::abs(golden.lml));
      // Never much worse; better (another local optimum) is fine.
      EXPECT_GE(ours, golden.lml - tolerance) << "sklearn " << golden.lml << ", ours " << ours;
      EXPECT_LE(ours, golden.lml + 10 * tolerance) << "suspiciously better than sklearn";
      const GpHyperparameters& h = gp->hyperparameters();
      EXPECT_GE(h.signal_variance, 1e-3);
      EXPECT_LE(h.signal_variance, 1e3);
      EXPECT_GE(h.noise_variance, 1e-6);
      EXPECT_LE(h.noise_variance, 1.0);
      for (double l : h.length_scales) {
        EXPECT_GE(l, 1e-2);
        EXPECT_LE(l, 1e2);
      }
      ++compared;
    }
  }
  EXPECT_GE(compared, 8);
}

TEST(GaussianProcessTest, FitIsDeterministicForASeed) {
  const GpCase& c = Cases().at(2);
  GaussianProcessOptions options;
  options.seed = 7;
  absl::StatusOr<GaussianProcess> a = GaussianProcess::Fit(c.x, c.y, options);
  absl::StatusOr<GaussianProcess> b = GaussianProcess::Fit(c.x, c.y, options);
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_EQ(a->log_marginal_likelihood(), b->log_marginal_likelihood());
  EXPECT_EQ(a->hyperparameters().length_scales, b->hyperparameters().length_scales);
}

TEST(GaussianProcessTest, WarmStartAtOptimumStaysThere) {
  const GpCase& c = Cases().at(0);
  GaussianProcessOptions options;
  absl::StatusOr<GaussianProcess> first = GaussianProcess::Fit(c.x, c.y, options);
  ASSERT_TRUE(first.ok());
  options.num_restarts = 0;
  absl::StatusOr<GaussianProcess> second =
      GaussianProcess::Fit(c.x, c.y, options, &first->hyperparameters());
  ASSERT_TRUE(second.ok());
  EXPECT_NEAR(second->log_marginal_likelihood(), first->log_marginal_likelihood(), 1e-6);
}

// A raised cancel flag stops the hyperparameter search before its first
// step: the model is the warm start's (one factorisation), not the optimum.
TEST(GaussianProcessTest, CancelledFitKeepsItsStart) {
  const GpCase& c = Cases().at(2);
  GaussianProcessOptions options;
  options.num_restarts = 0;
  absl::StatusOr<GaussianProcess> fitted = GaussianProcess::Fit(c.x, c.y, options);
  ASSERT_TRUE(fitted.ok());
  GpHyperparameters start = fitted->hyperparameters();
  for (double& l : start.length_scales) l *= 3.0;
  std::atomic<bool> cancel{true};
  options.cancel = &cancel;
  absl::StatusOr<GaussianProcess> cut = GaussianProcess::Fit(c.x, c.y, options, &start);
  ASSERT_TRUE(cut.ok()) << cut.status();
  for (size_t j = 0; j < start.length_scales.size(); ++j) {
    EXPECT_NEAR(cut->hyperparameters().length_scales[j], start.length_scales[j],
                1e-9 * start.length_scales[j]);
  }
  EXPECT_LT(cut->log_marginal_likelihood(), fitted->log_marginal_likelihood());
}

TEST(GaussianProcessTest, GradientMatchesFiniteDifferences) {
  SplitMix64 rng(42);
  for (int d : {1, 2, 3, 5}) {
    const int n = 6 + 5 * d;
    Eigen::MatrixXd x(n, d);
    Eigen::VectorXd y(n);
    for (int i = 0; i < n; ++i) {
      for (int j = 0; j < d; ++j) x(i, j) = rng.Uniform();
      y[i] = std::sin(3 * x(i, 0)) + 0.1 * rng.Uniform();
    }
    GpHyperparameters h;
    h.signal_variance = rng.Uniform(0.3, 3.0);
    for (int j = 0; j < d; ++j) h.length_scales.push_back(rng.Uniform(0.1, 2.0));
    h.noise_variance = rng.Uniform(1e-3, 0.1);
    Eigen::VectorXd gradient;
    absl::StatusOr<double> lml = LogMarginalLikelihood(x, y, h, 1e-10, &gradient);
    ASSERT_TRUE(lml.ok());
    ASSERT_EQ(gradient.size(), d + 2);
    // Central differences in θ = (log s², log ℓ, log noise²).
    auto at = [&](int p, double delta) {
      GpHyperparameters g = h;
      if (p == 0) g.signal_variance *= std::exp(delta);
      if (p >= 1 && p <= d) g.length_scales[p - 1] *= std::exp(delta);
      if (p == d + 1) g.noise_variance *= std::exp(delta);
      return *LogMarginalLikelihood(x, y, g, 1e-10);
    };
    constexpr double kStep = 1e-5;
    for (int p = 0; p < d + 2; ++p) {
      const double numeric = (at(p, kStep) - at(p, -kStep)) / (2 * kStep);
      EXPECT_NEAR(gradient[p], numeric, 1e-5 * std::max(1.0, std::abs(numeric)))
          << "d " << d << ", component " << p;
    }
  }
}

TEST(GaussianProcessTest, LatentStddevExcludesNoise) {
  const GpCase& c = Cases().at(1);
  GaussianProcessOptions options;
  options.optimize = false;
  absl::StatusOr<GaussianProcess> gp = GaussianProcess::Fit(c.x, c.y, options, &c.fixed);
  ASSERT_TRUE(gp.ok());
  Eigen::VectorXd mean_noisy, noisy, mean_latent, latent;
  ASSERT_TRUE(gp->Predict(c.x_test, &mean_noisy, &noisy, /*with_noise=*/true).ok());
  ASSERT_TRUE(gp->Predict(c.x_test, &mean_latent, &latent, /*with_noise=*/false).ok());
  const double noise = c.fixed.noise_variance * gp->target_scale() * gp->target_scale();
  for (Eigen::Index i = 0; i < noisy.size(); ++i) {
    EXPECT_EQ(mean_noisy[i], mean_latent[i]);
    EXPECT_NEAR(noisy[i] * noisy[i], latent[i] * latent[i] + noise, 1e-9);
  }
  Eigen::VectorXd mean_only;
  EXPECT_TRUE(gp->Predict(c.x_test, &mean_only, nullptr).ok());
  EXPECT_EQ(mean_only, mean_noisy);
}

TEST(GaussianProcessTest, JitterEscalatesOnASingularCovariance) {
  Eigen::MatrixXd x(4, 1);
  x << 0.1, 0.5, 0.5, 0.9;  // a repeated input and (almost) no noise
  Eigen::VectorXd y(4);
  y << 0.0, 1.0, 1.0, 0.5;
  GaussianProcessOptions options;
  options.optimize = false;
  options.jitter = 0.0;
  GpHyperparameters h{1.0, {0.3}, 1e-300};
  absl::StatusOr<GaussianProcess> gp = GaussianProcess::Fit(x, y, options, &h);
  ASSERT_TRUE(gp.ok()) << gp.status();
  EXPECT_GT(gp->jitter(), 0.0);
  EXPECT_LE(gp->jitter(), 1e-2);
  Eigen::VectorXd mean, std;
  ASSERT_TRUE(gp->Predict(x, &mean, &std).ok());
  EXPECT_NEAR(mean[1], 1.0, 1e-3);
}

TEST(GaussianProcessTest, BadInputIsInvalidArgumentNamingTheProblem) {
  Eigen::MatrixXd x(3, 2);
  x << 0.1, 0.2, 0.3, 0.4, 0.5, 0.6;
  Eigen::VectorXd y(3);
  y << 1, 2, 3;
  const GaussianProcessOptions options;
  auto expect = [&](const Eigen::MatrixXd& xs, const Eigen::VectorXd& ys, const char* text) {
    absl::StatusOr<GaussianProcess> gp = GaussianProcess::Fit(xs, ys, options);
    ASSERT_FALSE(gp.ok()) << text;
    EXPECT_EQ(gp.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(gp.status().message(), HasSubstr(text));
  };
  Eigen::MatrixXd bad = x;
  bad(1, 1) = std::nan("");
  expect(bad, y, "x(1, 1) is not finite");
  Eigen::VectorXd bad_y = y;
  bad_y[2] = std::numeric_limits<double>::infinity();
  expect(x, bad_y, "y(2) is not finite");
  expect(x, Eigen::VectorXd(2), "2 values but x has 3 rows");
  expect(Eigen::MatrixXd(0, 2), Eigen::VectorXd(0), "empty");
  expect(Eigen::MatrixXd(3, 0), y, "no dimensions");
  bad = x;
  bad(2, 0) = 1.5;
  expect(bad, y, "outside the unit box");
  bad = x;
  bad(0, 1) = -1e-9;
  expect(bad, y, "outside the unit box");

  GpHyperparameters wrong{1.0, {1.0}, 1e-3};
  absl::StatusOr<GaussianProcess> gp = GaussianProcess::Fit(x, y, options, &wrong);
  EXPECT_THAT(gp.status().message(), HasSubstr("1 length scales for 2 input dimensions"));
  wrong.length_scales = {1.0, -2.0};
  gp = GaussianProcess::Fit(x, y, options, &wrong);
  EXPECT_THAT(gp.status().message(), HasSubstr("length_scales[1]"));

  GaussianProcessOptions bad_options;
  bad_options.length_scale_min = 0.0;
  EXPECT_THAT(bad_options.Validate().message(), HasSubstr("length_scale_min/_max"));
  bad_options = {};
  bad_options.num_restarts = -1;
  EXPECT_THAT(bad_options.Validate().message(), HasSubstr("num_restarts"));
  bad_options = {};
  bad_options.jitter = -1;
  EXPECT_THAT(GaussianProcess::Fit(x, y, bad_options).status().message(), HasSubstr("jitter"));
  bad_options = {};
  bad_options.max_iterations = 0;
  EXPECT_THAT(bad_options.Validate().message(), HasSubstr("max_iterations"));

  gp = GaussianProcess::Fit(x, y, options);
  ASSERT_TRUE(gp.ok());
  Eigen::VectorXd mean;
  EXPECT_THAT(gp->Predict(Eigen::MatrixXd(2, 3), &mean, nullptr).message(),
              HasSubstr("3 columns, the model has 2"));
  EXPECT_FALSE(gp->Predict(x, nullptr, nullptr).ok());
  EXPECT_EQ(LogMarginalLikelihood(x, y, {1.0, {1.0, 1.0}, 0.0}, 1e-10).status().code(),
            absl::StatusCode::kInvalidArgument);
}

// The kernel variants this CPU runs: generic first.
std::vector<const internal::GpKernelFns*> KernelVariants() {
  std::vector<const internal::GpKernelFns*> out = {&internal::GenericGpKernels()};
  if (const auto* k = internal::Avx2GpKernelsOrNull()) out.push_back(k);
  return out;
}

// Sizes around the vector widths (2 and 4 lanes; blocks of 2 vectors; groups of 4).
constexpr int kSizes[] = {1, 2, 3, 4, 5, 7, 8, 9, 13, 16, 17, 31, 33};

Eigen::MatrixXd UniformMatrix(SplitMix64& rng, int rows, int cols) {
  Eigen::MatrixXd m(rows, cols);
  for (Eigen::Index i = 0; i < m.size(); ++i) m.data()[i] = rng.Uniform();
  return m;
}

// Symmetric positive definite with condition number well below 1e3.
Eigen::MatrixXd SpdMatrix(SplitMix64& rng, int n) {
  const Eigen::MatrixXd b = UniformMatrix(rng, n, n);
  return b * b.transpose() / n + Eigen::MatrixXd::Identity(n, n);
}

double Matern52(double r2, double signal) {
  const double s = std::sqrt(5.0 * r2);
  return signal * (1.0 + s + s * s / 3.0) * std::exp(-s);
}

TEST(GpKernelsTest, ExpMatchesStdExp) {
  std::vector<double> x;
  for (double v = -745.0; v <= 0.0; v += 0.37) x.push_back(v);
  x.insert(x.end(), {0.0, -0.0, -1e-300, -708.0, -708.5, -800.0, -1e308});
  for (const internal::GpKernelFns* k : KernelVariants()) {
    SCOPED_TRACE(k->lanes);
    for (size_t count : {size_t{1}, size_t{3}, x.size()}) {
      std::vector<double> e(x.begin(), x.begin() + count);
      k->exp_non_positive(e.data(), static_cast<int64_t>(count));
      for (size_t i = 0; i < count; ++i) {
        if (x[i] < -708.0) {
          EXPECT_EQ(e[i], 0.0) << x[i];
        } else {
          EXPECT_NEAR(e[i], std::exp(x[i]), 4e-16 * std::exp(x[i])) << x[i];
        }
      }
    }
  }
}

TEST(GpKernelsTest, MaternMatchesTheClosedForm) {
  SplitMix64 rng(11);
  for (const internal::GpKernelFns* k : KernelVariants()) {
    SCOPED_TRACE(k->lanes);
    for (int d : {1, 3, 9}) {  // 9: more coordinates than the block holds in registers
      for (int m : kSizes) {
        const int n = 7;
        const Eigen::MatrixXd q = 3.0 * UniformMatrix(rng, m, d);
        const Eigen::MatrixXd t = 3.0 * UniformMatrix(rng, n, d);
        Eigen::MatrixXd out(m, n);
        k->matern_cross(q.data(), m, t.data(), n, d, 1.7, out.data());
        for (int i = 0; i < m; ++i) {
          for (int c = 0; c < n; ++c) {
            const double expected = Matern52((q.row(i) - t.row(c)).squaredNorm(), 1.7);
            EXPECT_NEAR(out(i, c), expected, 1e-14 * expected) << i << ", " << c;
          }
        }
        // The packed pairs of the training covariance: squared differences
        // scaled by 1 / ℓ².
        const Eigen::MatrixXd sq = UniformMatrix(rng, m, d);
        const Eigen::VectorXd inv_sq_length = 4.0 * UniformMatrix(rng, d, 1);
        Eigen::VectorXd s(m), decay(m), km(m);
        k->matern_pairs(sq.data(), m, d, inv_sq_length.data(), 0.6, s.data(), decay.data(),
                        km.data());
        for (int p = 0; p < m; ++p) {
          const double r2 = sq.row(p).dot(inv_sq_length);
          EXPECT_NEAR(s[p], std::sqrt(5.0 * r2), 1e-15 * s[p]);
          EXPECT_NEAR(decay[p], std::exp(-std::sqrt(5.0 * r2)), 1e-15 * decay[p]);
          EXPECT_NEAR(km[p], Matern52(r2, 0.6), 1e-14 * km[p]);
        }
      }
    }
  }
}

TEST(GpKernelsTest, CholeskyInverseAndQuadraticFormsMatchEigen) {
  SplitMix64 rng(12);
  for (const internal::GpKernelFns* k : KernelVariants()) {
    SCOPED_TRACE(k->lanes);
    for (int n : kSizes) {
      SCOPED_TRACE(n);
      const Eigen::MatrixXd a = SpdMatrix(rng, n);
      const Eigen::MatrixXd l_eigen = a.llt().matrixL();
      Eigen::MatrixXd l = a;
      l.triangularView<Eigen::StrictlyUpper>().setConstant(std::nan(""));  // must not be read
      ASSERT_TRUE(k->cholesky(l.data(), n));
      l.triangularView<Eigen::StrictlyUpper>().setZero();
      EXPECT_LE((l - l_eigen).cwiseAbs().maxCoeff(), 1e-14 * n);

      Eigen::MatrixXd work(internal::InverseWorkRows(n), n), kinv(n, n);
      k->inverse_from_cholesky(l.data(), n, work.data(), kinv.data());
      const Eigen::MatrixXd inverse = a.inverse();
      for (int c = 0; c < n; ++c) {
        for (int r = c; r < n; ++r) EXPECT_NEAR(kinv(r, c), inverse(r, c), 1e-13 * n);
      }

      const Eigen::MatrixXd linv_t =
          l.triangularView<Eigen::Lower>().solve(Eigen::MatrixXd::Identity(n, n)).transpose();
      for (int m : {1, 5, 8, 17, 33}) {
        const Eigen::MatrixXd cross = UniformMatrix(rng, m, n);
        Eigen::VectorXd out(m);
        k->quadratic_forms(cross.data(), m, linv_t.data(), n, out.data());
        const Eigen::MatrixXd solved =
            l_eigen.triangularView<Eigen::Lower>().solve(cross.transpose());  // L⁻¹ c_r
        for (int r = 0; r < m; ++r) {
          const double expected = solved.col(r).squaredNorm();
          EXPECT_NEAR(out[r], expected, 1e-13 * expected) << m << ", " << r;
        }
      }
    }
  }
}

TEST(GpKernelsTest, CholeskyRejectsWhatIsNotPositiveDefinite) {
  for (const internal::GpKernelFns* k : KernelVariants()) {
    SCOPED_TRACE(k->lanes);
    // The covariance of a repeated input without noise: a pivot of rounding noise.
    Eigen::MatrixXd a(5, 5);
    const double x[5] = {0.1, 0.4, 0.4, 0.7, 0.9};
    for (int r = 0; r < 5; ++r) {
      for (int c = 0; c < 5; ++c) a(r, c) = Matern52(25.0 * (x[r] - x[c]) * (x[r] - x[c]), 1.0);
    }
    Eigen::MatrixXd copy = a;
    EXPECT_FALSE(k->cholesky(copy.data(), 5));
    copy = a;
    copy.diagonal().array() += 1e-6;
    EXPECT_TRUE(k->cholesky(copy.data(), 5));
    copy = -a;
    EXPECT_FALSE(k->cholesky(copy.data(), 5));
    copy = a;
    copy(3, 0) = std::nan("");
    copy.diagonal().array() += 1e-6;
    EXPECT_FALSE(k->cholesky(copy.data(), 5));
  }
}

}  // namespace
}  // namespace logstar
