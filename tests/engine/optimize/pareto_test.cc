#include "engine/optimize/pareto.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "absl/status/statusor.h"
#include "engine/base/random.h"

namespace logstar {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

bool Dominates(const Objectives2& a, const Objectives2& b) {
  return a[0] <= b[0] && a[1] <= b[1] && (a[0] < b[0] || a[1] < b[1]);
}

// O(n²) reference: not dominated and not a later copy of an equal point.
std::vector<int> BruteForceFront(const std::vector<Objectives2>& p) {
  std::vector<int> front;
  for (size_t i = 0; i < p.size(); ++i) {
    bool keep = true;
    for (size_t j = 0; j < p.size() && keep; ++j) {
      if (Dominates(p[j], p[i]) || (j < i && p[j] == p[i])) keep = false;
    }
    if (keep) front.push_back(static_cast<int>(i));
  }
  return front;
}

// Standard normal by Box–Muller on the deterministic generator.
double Gaussian(SplitMix64& rng) {
  const double u = 1.0 - rng.Uniform();
  return std::sqrt(-2.0 * std::log(u)) * std::cos(2.0 * M_PI * rng.Uniform());
}

std::vector<Objectives2> RandomPoints(SplitMix64& rng, int n, double grid) {
  std::vector<Objectives2> p(n);
  for (Objectives2& q : p) {
    q = {rng.Uniform(), rng.Uniform()};
    // Anti-correlated so fronts are long; a coarse grid makes ties and copies.
    q[1] = std::max(0.0, 1.0 - q[0] + 0.3 * (q[1] - 0.5));
    if (grid > 0) q = {std::round(q[0] / grid) * grid, std::round(q[1] / grid) * grid};
  }
  return p;
}

TEST(ParetoFrontTest, MatchesBruteForce) {
  SplitMix64 rng(1);
  for (int trial = 0; trial < 200; ++trial) {
    const int n = 1 + trial % 60;
    const std::vector<Objectives2> p = RandomPoints(rng, n, trial % 3 == 0 ? 0.1 : 0.0);
    absl::StatusOr<std::vector<int>> front = ParetoFront(p);
    ASSERT_TRUE(front.ok());
    std::vector<int> sorted = *front;
    std::sort(sorted.begin(), sorted.end());
    ASSERT_EQ(sorted, BruteForceFront(p)) << "trial " << trial;
    for (size_t i = 1; i < front->size(); ++i) {
      EXPECT_LT(p[(*front)[i - 1]][0], p[(*front)[i]][0]);
      EXPECT_GT(p[(*front)[i - 1]][1], p[(*front)[i]][1]);
    }
  }
}

TEST(ParetoFrontTest, DuplicatesKeepTheLowestIndex) {
  const std::vector<Objectives2> p = {{2, 2}, {1, 3}, {2, 2}, {3, 1}, {1, 3}, {3, 3}};
  EXPECT_THAT(*ParetoFront(p), ElementsAre(1, 0, 3));
  EXPECT_TRUE(ParetoFront({})->empty());
  EXPECT_THAT(ParetoFront({{std::nan(""), 1.0}}).status().message(), HasSubstr("point 0"));
}

TEST(HypervolumeTest, ClosedFormExamples) {
  EXPECT_DOUBLE_EQ(*Hypervolume({{1, 1}}, {3, 3}), 4.0);
  EXPECT_DOUBLE_EQ(*Hypervolume({{1, 2}, {2, 1}}, {3, 3}), 3.0);
  // Dominated points and copies add nothing.
  EXPECT_DOUBLE_EQ(*Hypervolume({{1, 2}, {2, 1}, {2, 2}, {1, 2}}, {3, 3}), 3.0);
  // Points not strictly better than the reference in both objectives count for nothing.
  EXPECT_DOUBLE_EQ(*Hypervolume({{4, 0}, {3, 1}, {0, 3}}, {3, 3}), 0.0);
  EXPECT_DOUBLE_EQ(*Hypervolume({{4, 0}, {2, 2}}, {3, 3}), 1.0);
  EXPECT_DOUBLE_EQ(*Hypervolume({}, {3, 3}), 0.0);
  // Staircase 0..k: HV = Σ unit steps.
  std::vector<Objectives2> stairs;
  for (int i = 0; i < 5; ++i) stairs.push_back({double(i), double(4 - i)});
  EXPECT_DOUBLE_EQ(*Hypervolume(stairs, {5, 5}), 15.0);
  EXPECT_FALSE(Hypervolume({{1, 1}}, {std::nan(""), 3}).ok());
}

TEST(HypervolumeTest, MatchesMonteCarlo) {
  SplitMix64 rng(2);
  constexpr int kSamples = 100000;
  for (int trial = 0; trial < 5; ++trial) {
    const std::vector<Objectives2> p = RandomPoints(rng, 5 + 10 * trial, 0.0);
    const Objectives2 ref = {1.1, 1.2};
    const double hv = *Hypervolume(p, ref);
    int hits = 0;
    for (int s = 0; s < kSamples; ++s) {
      const Objectives2 z = {rng.Uniform(0.0, ref[0]), rng.Uniform(0.0, ref[1])};
      for (const Objectives2& q : p) {
        if (q[0] <= z[0] && q[1] <= z[1]) {
          ++hits;
          break;
        }
      }
    }
    const double area = ref[0] * ref[1];
    const double share = double(hits) / kSamples;
    const double mc_error = area * std::sqrt(share * (1 - share) / kSamples);
    EXPECT_NEAR(hv, area * share, 4 * mc_error) << "trial " << trial;
  }
}

TEST(HypervolumeFrontTest, ImprovementIsTheHypervolumeDifference) {
  SplitMix64 rng(3);
  const std::vector<Objectives2> p = RandomPoints(rng, 20, 0.0);
  const Objectives2 ref = {1.2, 1.5};
  const HypervolumeFront front = *HypervolumeFront::Create(p, ref);
  for (int s = 0; s < 200; ++s) {
    const Objectives2 y = {rng.Uniform(-0.2, 1.4), rng.Uniform(-0.2, 1.6)};
    std::vector<Objectives2> with = p;
    with.push_back(y);
    EXPECT_NEAR(front.Improvement(y), *Hypervolume(with, ref) - front.hypervolume(), 1e-12);
  }
}

TEST(HypervolumeFrontTest, ExpectedImprovementMatchesMonteCarlo) {
  SplitMix64 rng(4);
  const std::vector<Objectives2> p = {{0.1, 0.9}, {0.3, 0.6}, {0.5, 0.45}, {0.8, 0.2}};
  const Objectives2 ref = {1.0, 1.0};
  const HypervolumeFront front = *HypervolumeFront::Create(p, ref);
  struct Query {
    Objectives2 mean, stddev;
  };
  const std::vector<Query> queries = {
      {{0.4, 0.4}, {0.1, 0.1}},  {{0.2, 0.3}, {0.3, 0.05}}, {{0.9, 0.9}, {0.2, 0.2}},
      {{1.5, 1.5}, {0.3, 0.4}},  {{0.0, 0.0}, {0.5, 0.5}},  {{0.35, 0.5}, {0.0, 0.1}},
      {{0.35, 0.5}, {0.1, 0.0}}, {{-1.0, 0.3}, {1.0, 2.0}}, {{0.6, 0.6}, {1e-3, 1e-3}},
  };
  constexpr int kSamples = 100000;
  for (const Query& q : queries) {
    const double ehvi = front.ExpectedImprovement(q.mean, q.stddev);
    double sum = 0.0, sum2 = 0.0;
    for (int s = 0; s < kSamples; ++s) {
      const Objectives2 y = {q.mean[0] + q.stddev[0] * Gaussian(rng),
                             q.mean[1] + q.stddev[1] * Gaussian(rng)};
      const double hvi = front.Improvement(y);
      sum += hvi;
      sum2 += hvi * hvi;
    }
    const double mc = sum / kSamples;
    const double mc_error = std::sqrt(std::max(0.0, sum2 / kSamples - mc * mc) / kSamples);
    EXPECT_NEAR(ehvi, mc, 4 * mc_error + 1e-12)
        << "mean (" << q.mean[0] << ", " << q.mean[1] << "), stddev (" << q.stddev[0] << ", "
        << q.stddev[1] << ")";
    const absl::StatusOr<double> once = ExpectedHypervolumeImprovement(p, ref, q.mean, q.stddev);
    ASSERT_TRUE(once.ok());
    EXPECT_EQ(*once, ehvi);
  }
}

TEST(HypervolumeFrontTest, ZeroStddevIsTheImprovement) {
  SplitMix64 rng(5);
  const std::vector<Objectives2> p = RandomPoints(rng, 15, 0.0);
  const HypervolumeFront front = *HypervolumeFront::Create(p, {1.1, 1.3});
  for (int s = 0; s < 500; ++s) {
    const Objectives2 y = {rng.Uniform(-0.1, 1.2), rng.Uniform(-0.1, 1.4)};
    const double hvi = front.Improvement(y);
    EXPECT_NEAR(front.ExpectedImprovement(y, {0.0, 0.0}), hvi, 1e-12);
    // And continuously so as the deviation shrinks.
    EXPECT_NEAR(front.ExpectedImprovement(y, {1e-9, 1e-9}), hvi, 1e-8);
    EXPECT_NEAR(front.ExpectedImprovement(y, {0.0, 1e-7}), hvi, 1e-6);
  }
  // Dominated mean, no uncertainty: nothing to gain.
  EXPECT_EQ(front.ExpectedImprovement({2.0, 2.0}, {0.0, 0.0}), 0.0);
}

TEST(HypervolumeFrontTest, EmptyFrontAndBadQueries) {
  const HypervolumeFront empty = *HypervolumeFront::Create({{5, 5}}, {1, 1});
  EXPECT_TRUE(empty.front().empty());
  EXPECT_EQ(empty.hypervolume(), 0.0);
  EXPECT_DOUBLE_EQ(empty.Improvement({0, 0.5}), 0.5);
  EXPECT_DOUBLE_EQ(empty.ExpectedImprovement({0, 0.5}, {0, 0}), 0.5);
  EXPECT_TRUE(std::isnan(empty.ExpectedImprovement({0, 0}, {-1, 0})));
  EXPECT_TRUE(std::isnan(empty.Improvement({std::nan(""), 0})));
  EXPECT_THAT(ExpectedHypervolumeImprovement({}, {1, 1}, {0, 0}, {-1, 0}).status().message(),
              HasSubstr("stddev"));
}

// Front (0,10) (1,4) (3,3) (6,1) (10,0): normalised over the front
// (0,1) (.1,.4) (.3,.3) (.6,.1) (1,0).
TEST(ChooseOnFrontTest, RulesOnAHandMadeFront) {
  const std::vector<Objectives2> f = {{0, 10}, {1, 4}, {3, 3}, {6, 1}, {10, 0}, {7, 7}};
  const std::vector<int> front = *ParetoFront(f);
  ASSERT_EQ(front.size(), 5u);
  EXPECT_EQ(*ChooseOnFront(f, front, FrontChoiceRule::kEuclidean), 1);
  EXPECT_EQ(*ChooseOnFront(f, front, FrontChoiceRule::kChebyshev), 2);
  EXPECT_EQ(*ChooseOnFront(f, front, FrontChoiceRule::kWeights, {1, 0}), 0);
  EXPECT_EQ(*ChooseOnFront(f, front, FrontChoiceRule::kWeights, {0, 1}), 4);
  EXPECT_EQ(*ChooseOnFront(f, front, FrontChoiceRule::kWeights, {1, 3}), 3);
  // Scaling an objective changes nothing after normalisation.
  std::vector<Objectives2> scaled = f;
  for (Objectives2& p : scaled) p[1] = 1000 * p[1] + 5;
  EXPECT_EQ(*ChooseOnFront(scaled, front, FrontChoiceRule::kEuclidean), 1);
  EXPECT_EQ(*ChooseOnFront(scaled, front, FrontChoiceRule::kChebyshev), 2);
  // Unnormalised, the scale decides: the second objective, now 5 to 10005,
  // outweighs the first (0 to 10) everywhere but at its own minimum.
  EXPECT_EQ(*ChooseOnFront(scaled, front, FrontChoiceRule::kEuclidean, {1, 1}, false), 4);
  EXPECT_EQ(*ChooseOnFront(scaled, front, FrontChoiceRule::kChebyshev, {1, 1}, false), 4);
  std::vector<Objectives2> small = f;
  for (Objectives2& p : small) p[1] = 0.1 * p[1] + 1;
  // Raw sums 2, 2.4, 4.3, 7.1, 11: the first; normalised it is the second.
  EXPECT_EQ(*ChooseOnFront(small, front, FrontChoiceRule::kWeights, {1, 1}, false), 0);
  EXPECT_EQ(*ChooseOnFront(small, front, FrontChoiceRule::kWeights, {1, 1}), 1);
}

TEST(ChooseOnFrontTest, TiesGoToTheLowestIndex) {
  const std::vector<Objectives2> f = {{3, 0}, {1, 2}, {0, 3}, {2, 1}};
  const std::vector<int> reversed = {3, 2, 1, 0};
  // (1,2) and (2,1) tie for both distance rules.
  EXPECT_EQ(*ChooseOnFront(f, reversed, FrontChoiceRule::kEuclidean), 1);
  EXPECT_EQ(*ChooseOnFront(f, reversed, FrontChoiceRule::kChebyshev), 1);
  EXPECT_EQ(*ChooseOnFront(f, reversed, FrontChoiceRule::kWeights, {1, 1}), 0);
  // A single point; a front constant in one objective normalises it to 0.
  EXPECT_EQ(*ChooseOnFront(f, {2}, FrontChoiceRule::kChebyshev), 2);
  EXPECT_EQ(*ChooseOnFront({{1, 5}, {2, 5}}, {1, 0}, FrontChoiceRule::kEuclidean), 0);
}

TEST(ChooseOnFrontTest, InvalidArguments) {
  const std::vector<Objectives2> f = {{0, 1}, {1, 0}};
  EXPECT_THAT(ChooseOnFront(f, {}, FrontChoiceRule::kEuclidean).status().message(),
              HasSubstr("empty"));
  EXPECT_THAT(ChooseOnFront(f, {2}, FrontChoiceRule::kEuclidean).status().message(),
              HasSubstr("front index 2"));
  EXPECT_THAT(ChooseOnFront(f, {0, 1}, FrontChoiceRule::kWeights, {0, 0}).status().message(),
              HasSubstr("weights"));
  EXPECT_FALSE(ChooseOnFront(f, {0, 1}, FrontChoiceRule::kWeights, {-1, 1}).ok());
  // Weights are only checked for kWeights.
  EXPECT_TRUE(ChooseOnFront(f, {0, 1}, FrontChoiceRule::kEuclidean, {0, 0}).ok());
  EXPECT_FALSE(ChooseOnFront({{std::nan(""), 0}}, {0}, FrontChoiceRule::kEuclidean).ok());
}

}  // namespace
}  // namespace logstar
