#include "engine/optimize/sobol.h"

#include <cstdint>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <Eigen/Core>
#include <nlohmann/json.hpp>

#include "absl/status/statusor.h"
#include "engine/base/random.h"

namespace logstar {
namespace {

using ::testing::HasSubstr;

SobolSequence Make(int dimensions, bool scramble, uint64_t seed = 0) {
  absl::StatusOr<SobolSequence> s =
      SobolSequence::Create({.dimensions = dimensions, .scramble = scramble, .seed = seed});
  EXPECT_TRUE(s.ok()) << s.status();
  return *std::move(s);
}

Eigen::MatrixXd Points(const SobolSequence& s, int64_t first, int count) {
  Eigen::MatrixXd points;
  EXPECT_TRUE(s.Generate(first, count, &points).ok());
  return points;
}

// The golden is scipy.stats.qmc.Sobol(16, scramble=False).random(256)
// (tests/conformance/make_gp_goldens.py).
TEST(SobolTest, UnscrambledEqualsScipy) {
  std::ifstream in(std::string(LOGSTAR_TEST_DATA_DIR) + "/gp/sobol.json");
  ASSERT_TRUE(in) << "run tests/conformance/make_gp_goldens.py";
  std::stringstream text;
  text << in.rdbuf();
  const nlohmann::json golden = nlohmann::json::parse(text.str(), nullptr, false);
  ASSERT_FALSE(golden.is_discarded());
  const int d = golden["dimensions"];
  const nlohmann::json& rows = golden["points"];
  ASSERT_EQ(d, 16);
  ASSERT_EQ(rows.size(), 256u);
  const Eigen::MatrixXd points = Points(Make(d, false), 0, 256);
  for (int i = 0; i < 256; ++i) {
    for (int j = 0; j < d; ++j) {
      ASSERT_EQ(points(i, j), rows[i][j].get<double>()) << "point " << i << ", dimension " << j;
    }
  }
}

TEST(SobolTest, KnownFirstPoints) {
  const Eigen::MatrixXd p = Points(Make(3, false), 0, 4);
  Eigen::MatrixXd expected(4, 3);
  expected << 0, 0, 0, 0.5, 0.5, 0.5, 0.75, 0.25, 0.25, 0.25, 0.75, 0.75;
  EXPECT_EQ(p, expected);
}

TEST(SobolTest, GenerateFromAnOffsetContinuesTheSequence) {
  for (bool scramble : {false, true}) {
    const SobolSequence s = Make(128, scramble, 99);
    const Eigen::MatrixXd all = Points(s, 0, 300);
    EXPECT_EQ(Points(s, 123, 177), all.bottomRows(177));
    EXPECT_EQ(Points(s, 7, 1), all.row(7));
  }
}

// Every 1-D projection of the first 2^k points hits each of the 2^k equal
// bins exactly once, scrambled or not.
TEST(SobolTest, OneDimensionalProjectionsAreStratified) {
  for (bool scramble : {false, true}) {
    const SobolSequence s = Make(SobolSequence::kMaxDimensions, scramble, 2024);
    for (int k = 0; k <= 10; ++k) {
      const int n = 1 << k;
      const Eigen::MatrixXd p = Points(s, 0, n);
      for (int j = 0; j < s.dimensions(); ++j) {
        std::vector<int> bins(n, 0);
        for (int i = 0; i < n; ++i) {
          ASSERT_GE(p(i, j), 0.0);
          ASSERT_LT(p(i, j), 1.0);
          ++bins[static_cast<int>(p(i, j) * n)];
        }
        for (int b = 0; b < n; ++b) {
          ASSERT_EQ(bins[b], 1) << "k " << k << ", dimension " << j << ", bin " << b
                                << (scramble ? " (scrambled)" : "");
        }
      }
    }
  }
}

// Joe–Kuo's construction also makes 2-D projections of 2^k points fair
// (each quadrant of [0,1)^2 holds a quarter of the points).
TEST(SobolTest, TwoDimensionalQuadrantsAreBalanced) {
  const Eigen::MatrixXd p = Points(Make(16, false), 0, 1024);
  for (int a = 0; a < 16; ++a) {
    for (int b = a + 1; b < 16; ++b) {
      int counts[4] = {0, 0, 0, 0};
      for (int i = 0; i < 1024; ++i) ++counts[(p(i, a) >= 0.5) * 2 + (p(i, b) >= 0.5)];
      for (int q = 0; q < 4; ++q) EXPECT_EQ(counts[q], 256) << a << "," << b;
    }
  }
}

TEST(SobolTest, ScrambleIsDeterministicAndSeedDependent) {
  EXPECT_EQ(Points(Make(5, true, 1), 0, 64), Points(Make(5, true, 1), 0, 64));
  EXPECT_NE(Points(Make(5, true, 1), 0, 64), Points(Make(5, true, 2), 0, 64));
  // The origin is no longer the first point.
  EXPECT_NE(Points(Make(5, true, 1), 0, 1), Eigen::MatrixXd::Zero(1, 5));
}

TEST(SobolTest, InvalidArguments) {
  EXPECT_THAT(SobolSequence::Create({.dimensions = 0}).status().message(),
              HasSubstr("dimensions must be in [1, 128]"));
  EXPECT_FALSE(SobolSequence::Create({.dimensions = 129}).ok());
  const SobolSequence s = Make(2, false);
  Eigen::MatrixXd points;
  EXPECT_FALSE(s.Generate(-1, 3, &points).ok());
  EXPECT_FALSE(s.Generate(0, -3, &points).ok());
  EXPECT_FALSE(s.Generate(SobolSequence::kMaxPoints - 1, 2, &points).ok());
  EXPECT_TRUE(s.Generate(SobolSequence::kMaxPoints - 1, 1, &points).ok());
  EXPECT_FALSE(s.Generate(0, 1, nullptr).ok());
}

TEST(SplitMix64Test, ReferenceOutputs) {
  // The reference implementation's first outputs for seed 0.
  SplitMix64 rng(0);
  EXPECT_EQ(rng.Next(), 0xe220a8397b1dcdafULL);
  EXPECT_EQ(rng.Next(), 0x6e789e6aa1b965f4ULL);
  SplitMix64 u(5);
  for (int i = 0; i < 1000; ++i) {
    const double v = u.Uniform(2.0, 3.0);
    ASSERT_GE(v, 2.0);
    ASSERT_LT(v, 3.0);
  }
  EXPECT_NE(DeriveSeed(1, 2), DeriveSeed(1, 3));
  EXPECT_NE(DeriveSeed(1, 2), DeriveSeed(2, 2));
}

}  // namespace
}  // namespace logstar
