#include "engine/optimize/mobo.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <ctime>
#include <memory>
#include <string>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "engine/base/context.h"
#include "engine/base/random.h"
#include "engine/optimize/pareto.h"

namespace logstar {
namespace {

using ::testing::HasSubstr;
using Kind = ParameterSpec::Kind;

std::unique_ptr<ExecutionContext> Context(int threads) {
  return *ExecutionContext::Create({.num_threads = threads});
}

SearchSpace UnitCube(int d) {
  SearchSpace space;
  for (int j = 0; j < d; ++j) space.parameters.push_back({.name = absl::StrCat("x", j)});
  return space;
}

// ZDT1 on [0,1]^d: f1 = x0, g = 1 + 9 mean(x1..), f2 = g (1 - sqrt(f1 / g)).
// The front is f2 = 1 - sqrt(f1), f1 in [0, 1] (x1.. = 0).
absl::StatusOr<Objectives2> Zdt1(const ParameterValues& x) {
  double sum = 0.0;
  for (size_t i = 1; i < x.size(); ++i) sum += x[i];
  const double g = 1.0 + 9.0 * sum / (x.size() - 1);
  return Objectives2{x[0], g * (1.0 - std::sqrt(x[0] / g))};
}

// HV of ZDT1's true front w.r.t. (r, r), r >= 1: ∫0^1 (r - 1 + √f) df + (r - 1) r.
double Zdt1TrueHypervolume(double r) { return (r - 1.0) + 2.0 / 3.0 + (r - 1.0) * r; }

// Two squared distances in [0,1]^d to a = 0.2·1 and b = 0.8·1: the front is
// √f1 + √f2 = √D with D = |b - a|², and HV w.r.t. (R, R) is R² - D²/6 (R >= D).
absl::StatusOr<Objectives2> TwoBowls(const ParameterValues& x) {
  double f1 = 0.0, f2 = 0.0;
  for (double v : x) {
    f1 += (v - 0.2) * (v - 0.2);
    f2 += (v - 0.8) * (v - 0.8);
  }
  return Objectives2{f1, f2};
}

// HV of the two bowls' true front in [0,1]^dims w.r.t. (r, r), r >= D.
double TwoBowlsTrueHypervolume(int dims, double r) {
  const double d = dims * 0.36;
  return r * r - d * d / 6;
}

double HypervolumeOf(const std::vector<Evaluation>& evaluations, const Objectives2& reference) {
  std::vector<Objectives2> f;
  for (const Evaluation& e : evaluations) f.push_back(e.objectives);
  return *Hypervolume(f, reference);
}

// Uniform random search with the same budget, for comparison.
double RandomSearchHypervolume(const Objective& objective, int d, int budget, uint64_t seed,
                               const Objectives2& reference) {
  SplitMix64 rng(seed);
  std::vector<Objectives2> f;
  for (int i = 0; i < budget; ++i) {
    ParameterValues x(d);
    for (double& v : x) v = rng.Uniform();
    f.push_back(*objective(x));
  }
  return *Hypervolume(f, reference);
}

TEST(MoboTest, ReachesTheZdt1FrontAndBeatsRandomSearch) {
  auto context = Context(2);
  constexpr int kDims = 3;
  const Objectives2 reference = {1.1, 1.1};
  const double truth = Zdt1TrueHypervolume(1.1);
  double sum_mobo = 0.0, sum_random = 0.0;
  for (uint64_t seed : {0, 1, 2}) {
    MoboOptions options;
    options.seed = seed;
    options.reference_point = reference;
    absl::StatusOr<MoboResult> result =
        MinimizeTwoObjectives(UnitCube(kDims), Zdt1, options, context.get());
    ASSERT_TRUE(result.ok()) << result.status();
    ASSERT_EQ(result->evaluations.size(), 50u);
    EXPECT_EQ(result->num_design, 10);
    EXPECT_DOUBLE_EQ(result->hypervolume, HypervolumeOf(result->evaluations, reference));
    const double random = RandomSearchHypervolume(Zdt1, kDims, 50, seed, reference);
    std::printf("ZDT1 d=%d seed %d: MOBO HV %.4f, random %.4f, true front %.4f\n", kDims,
                static_cast<int>(seed), result->hypervolume, random, truth);
    EXPECT_GE(result->hypervolume, 0.95 * truth) << result->Summary();
    sum_mobo += result->hypervolume;
    sum_random += random;
  }
  EXPECT_GE(sum_mobo / 3, 1.15 * sum_random / 3);
}

TEST(MoboTest, ReachesTheTwoBowlsFront) {
  auto context = Context(2);
  constexpr int kDims = 4;
  const Objectives2 reference = {1.6, 1.6};
  const double truth = TwoBowlsTrueHypervolume(kDims, 1.6);
  double sum_mobo = 0.0, sum_random = 0.0;
  for (uint64_t seed : {0, 1, 2}) {
    MoboOptions options;
    options.seed = seed;
    options.reference_point = reference;
    absl::StatusOr<MoboResult> result =
        MinimizeTwoObjectives(UnitCube(kDims), TwoBowls, options, context.get());
    ASSERT_TRUE(result.ok()) << result.status();
    const double random = RandomSearchHypervolume(TwoBowls, kDims, 50, seed, reference);
    std::printf("two bowls d=%d seed %d: MOBO HV %.4f, random %.4f, true front %.4f\n", kDims,
                static_cast<int>(seed), result->hypervolume, random, truth);
    EXPECT_GE(result->hypervolume, 0.97 * truth) << result->Summary();
    sum_mobo += result->hypervolume;
    sum_random += random;
  }
  EXPECT_GT(sum_mobo, sum_random);
}

// A flag raised from inside the 7th evaluation (as another thread would
// raise it) stops the run before the 8th: no evaluation runs after it.
TEST(MoboTest, CancelStopsBeforeTheNextEvaluation) {
  auto context = Context(2);
  std::atomic<bool> cancel{false};
  int calls = 0;
  const Objective counted = [&](const ParameterValues& v) -> absl::StatusOr<Objectives2> {
    if (++calls == 7) cancel.store(true);
    return TwoBowls(v);
  };
  MoboOptions options;
  options.cancel = &cancel;
  absl::StatusOr<MoboResult> result =
      MinimizeTwoObjectives(UnitCube(2), counted, options, context.get());
  EXPECT_EQ(result.status().code(), absl::StatusCode::kCancelled) << result.status();
  EXPECT_EQ(calls, 7);

  // Raised before the run: nothing is evaluated.
  calls = 0;
  result = MinimizeTwoObjectives(UnitCube(2), counted, options, context.get());
  EXPECT_EQ(result.status().code(), absl::StatusCode::kCancelled);
  EXPECT_EQ(calls, 0);
}

TEST(MoboTest, SameSeedSameRunWithOneOrTwoThreads) {
  auto one = Context(1);
  auto two = Context(2);
  MoboOptions options;
  options.seed = 11;
  options.num_evaluations = 30;
  absl::StatusOr<MoboResult> a = MinimizeTwoObjectives(UnitCube(3), Zdt1, options, one.get());
  absl::StatusOr<MoboResult> b = MinimizeTwoObjectives(UnitCube(3), Zdt1, options, two.get());
  absl::StatusOr<MoboResult> c = MinimizeTwoObjectives(UnitCube(3), Zdt1, options, two.get());
  ASSERT_TRUE(a.ok() && b.ok() && c.ok());
  ASSERT_EQ(a->evaluations.size(), b->evaluations.size());
  for (size_t i = 0; i < a->evaluations.size(); ++i) {
    EXPECT_EQ(a->evaluations[i].parameters, b->evaluations[i].parameters) << "evaluation " << i;
    EXPECT_EQ(a->evaluations[i].parameters, c->evaluations[i].parameters) << "evaluation " << i;
  }
  EXPECT_EQ(a->hypervolume, b->hypervolume);
  options.seed = 12;
  absl::StatusOr<MoboResult> d = MinimizeTwoObjectives(UnitCube(3), Zdt1, options, two.get());
  EXPECT_NE(a->evaluations[0].parameters, d->evaluations[0].parameters);
}

SearchSpace MixedSpace() {
  SearchSpace space;
  space.parameters.push_back({.name = "threshold", .lower = 0.01, .upper = 1.0, .log_scale = true});
  space.parameters.push_back(
      {.name = "num_sigma", .kind = Kind::kInteger, .lower = 1, .upper = 10});
  space.parameters.push_back({.name = "normalize",
                              .kind = Kind::kCategorical,
                              .categories = {"minmax", "percentile", "none"}});
  space.parameters.push_back(
      {.name = "scale", .kind = Kind::kInteger, .lower = 2, .upper = 200, .log_scale = true});
  return space;
}

TEST(MoboTest, MixedParametersDecodeToValidValuesAndFindTheCategory) {
  auto context = Context(2);
  const SearchSpace space = MixedSpace();
  // Only category 2 can reach the front; num_sigma = 7 and scale = 20 are best.
  const Objective objective = [](const ParameterValues& v) -> absl::StatusOr<Objectives2> {
    const double t = std::log10(v[0]);  // in [-2, 0]
    const double penalty =
        (v[2] == 2 ? 0.0 : 1.0) + 0.05 * std::abs(v[1] - 7) + 0.1 * std::abs(std::log(v[3] / 20.0));
    return Objectives2{(t + 2) * (t + 2) + penalty, t * t + penalty};
  };
  MoboOptions options;
  options.num_evaluations = 40;
  absl::StatusOr<MoboResult> result =
      MinimizeTwoObjectives(space, objective, options, context.get());
  ASSERT_TRUE(result.ok()) << result.status();
  for (const Evaluation& e : result->evaluations) {
    ASSERT_TRUE(space.CheckValues(e.parameters).ok()) << space.CheckValues(e.parameters);
  }
  ASSERT_FALSE(result->front.empty());
  for (int i : result->front) {
    EXPECT_EQ(result->evaluations[i].parameters[2], 2) << result->Summary();
  }
  int best_category_proposals = 0;
  for (size_t i = result->num_design; i < result->evaluations.size(); ++i) {
    best_category_proposals += result->evaluations[i].parameters[2] == 2;
  }
  EXPECT_GE(best_category_proposals, 20) << result->Summary();
}

TEST(SearchSpaceTest, EncodeDecodeRoundTrip) {
  const SearchSpace space = MixedSpace();
  ASSERT_TRUE(space.Validate().ok());
  EXPECT_EQ(space.encoded_dimensions(), 1 + 1 + 3 + 1);
  const ParameterValues v = {0.1, 4, 1, 57};
  absl::StatusOr<std::vector<double>> u = space.Encode(v);
  ASSERT_TRUE(u.ok());
  EXPECT_NEAR((*u)[0], 0.5, 1e-12);         // log-scale midpoint of [0.01, 1]
  EXPECT_NEAR((*u)[1], 3.5 / 10.0, 1e-12);  // bin centre of 4 among 1..10
  EXPECT_EQ((*u)[2], 0.0);
  EXPECT_EQ((*u)[3], 1.0);
  EXPECT_EQ((*u)[4], 0.0);
  const ParameterValues back = *space.Decode(*u);
  EXPECT_NEAR(back[0], v[0], 1e-15);
  EXPECT_EQ(std::vector<double>(back.begin() + 1, back.end()),
            std::vector<double>(v.begin() + 1, v.end()));
  // Every unit vector decodes to a valid point, and integers cover their range
  // in equal bins.
  SplitMix64 rng(3);
  std::vector<int> counts(11, 0);
  for (int i = 0; i < 20000; ++i) {
    std::vector<double> w(6);
    for (double& x : w) x = rng.Uniform();
    const ParameterValues p = *space.Decode(w);
    ASSERT_TRUE(space.CheckValues(p).ok());
    ++counts[static_cast<int>(p[1])];
    const ParameterValues again = *space.Decode(*space.Encode(p));
    EXPECT_NEAR(again[0], p[0], 1e-15);
    EXPECT_EQ(again[1], p[1]);
    EXPECT_EQ(again[2], p[2]);
    EXPECT_EQ(again[3], p[3]);
  }
  for (int k = 1; k <= 10; ++k) EXPECT_NEAR(counts[k], 2000, 200) << k;
  EXPECT_EQ((*space.Decode({1.0, 1.0, 0.2, 0.2, 0.2, 1.0}))[2], 0);  // argmax tie: first
  EXPECT_EQ((*space.Decode({-5.0, 7.0, 0, 0, 1, 9.0})), (ParameterValues{0.01, 10, 2, 200}));
  EXPECT_FALSE(space.Decode({0.5}).ok());
}

TEST(MoboTest, WarmStartPointsAreEvaluatedFirst) {
  auto context = Context(2);
  std::vector<ParameterValues> calls;
  const Objective objective = [&](const ParameterValues& x) {
    calls.push_back(x);
    return TwoBowls(x);
  };
  const std::vector<ParameterValues> warm = {{0.5, 0.5}, {0.1, 0.9}, {0.5, 0.5}};
  MoboOptions options;
  options.num_evaluations = 15;
  options.num_initial = 5;
  absl::StatusOr<MoboResult> result =
      MinimizeTwoObjectives(UnitCube(2), objective, options, context.get(), warm);
  ASSERT_TRUE(result.ok()) << result.status();
  ASSERT_EQ(calls.size(), 15u);
  for (size_t i = 0; i < warm.size(); ++i) {
    EXPECT_EQ(calls[i], warm[i]);
    EXPECT_EQ(result->evaluations[i].parameters, warm[i]);
  }
  EXPECT_EQ(result->num_design, 5);
  // Proposals never repeat an evaluated point.
  for (size_t i = 3; i < calls.size(); ++i) {
    for (size_t j = 0; j < i; ++j) EXPECT_NE(calls[i], calls[j]) << i << " vs " << j;
  }
}

// Started on the two bowls' true front (x = t·1, t in [0.2, 0.8]), the model
// expects little more: with min_relative_improvement the run stops early
// (converged) with the front's hypervolume; without, it spends its budget.
TEST(MoboTest, StopsEarlyWhenTheExpectedImprovementIsSmall) {
  auto context = Context(2);
  constexpr int kDims = 2;
  const Objectives2 reference = {1.6, 1.6};
  const double truth = TwoBowlsTrueHypervolume(kDims, 1.6);
  std::vector<ParameterValues> warm;
  for (int k = 0; k <= 12; ++k) {
    const double t = 0.2 + 0.05 * k;
    warm.push_back(ParameterValues(kDims, t));
  }
  MoboOptions options;
  options.num_evaluations = 50;
  options.num_initial = static_cast<int>(warm.size());
  options.reference_point = reference;
  options.min_relative_improvement = 0.01;
  absl::StatusOr<MoboResult> early =
      MinimizeTwoObjectives(UnitCube(kDims), TwoBowls, options, context.get(), warm);
  ASSERT_TRUE(early.ok()) << early.status();
  EXPECT_TRUE(early->converged);
  EXPECT_FALSE(early->exhausted);
  EXPECT_LT(early->evaluations.size(), 25u) << early->Summary();
  EXPECT_GE(early->hypervolume, 0.99 * truth) << early->Summary();

  options.min_relative_improvement = 0.0;
  absl::StatusOr<MoboResult> full =
      MinimizeTwoObjectives(UnitCube(kDims), TwoBowls, options, context.get(), warm);
  ASSERT_TRUE(full.ok()) << full.status();
  EXPECT_FALSE(full->converged);
  EXPECT_EQ(full->evaluations.size(), 50u);
}

TEST(MoboTest, ObjectiveErrorsPropagate) {
  auto context = Context(2);
  int calls = 0;
  const Objective failing = [&](const ParameterValues& x) -> absl::StatusOr<Objectives2> {
    if (++calls == 15) return absl::DataLossError("frame went away");
    return TwoBowls(x);
  };
  absl::StatusOr<MoboResult> result =
      MinimizeTwoObjectives(UnitCube(2), failing, MoboOptions(), context.get());
  EXPECT_EQ(result.status(), absl::DataLossError("frame went away"));
  EXPECT_EQ(calls, 15);

  const Objective nan = [](const ParameterValues&) -> absl::StatusOr<Objectives2> {
    return Objectives2{1.0, std::nan("")};
  };
  result = MinimizeTwoObjectives(UnitCube(2), nan, MoboOptions(), context.get());
  EXPECT_THAT(result.status().message(), HasSubstr("objective 1 of evaluation 0 is not finite"));
  const Objective negative = [](const ParameterValues&) -> absl::StatusOr<Objectives2> {
    return Objectives2{-2.0, 1.0};
  };
  result = MinimizeTwoObjectives(UnitCube(2), negative, MoboOptions(), context.get());
  EXPECT_THAT(result.status().message(), HasSubstr("log1p_objectives"));
  MoboOptions plain;
  plain.log1p_objectives = false;
  plain.num_evaluations = 12;
  EXPECT_TRUE(MinimizeTwoObjectives(UnitCube(2), negative, plain, context.get()).ok());
}

TEST(MoboTest, SmallDiscreteSpaceIsExhausted) {
  auto context = Context(2);
  SearchSpace space;
  space.parameters.push_back(
      {.name = "mode", .kind = Kind::kCategorical, .categories = {"a", "b", "c"}});
  space.parameters.push_back({.name = "k", .kind = Kind::kInteger, .lower = 0, .upper = 1});
  const Objective objective = [](const ParameterValues& v) -> absl::StatusOr<Objectives2> {
    return Objectives2{v[0], 2 - v[0] + v[1]};
  };
  MoboOptions options;
  options.num_initial = 3;
  options.num_evaluations = 20;
  absl::StatusOr<MoboResult> result =
      MinimizeTwoObjectives(space, objective, options, context.get());
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_TRUE(result->exhausted);
  EXPECT_EQ(result->evaluations.size(), 6u);
  EXPECT_THAT(result->Summary(), HasSubstr("exhausted"));
}

TEST(MoboTest, ValidationErrorsNameTheField) {
  auto context = Context(1);
  auto message = [&](const SearchSpace& space, const MoboOptions& options,
                     std::vector<ParameterValues> warm = {}) {
    return std::string(
        MinimizeTwoObjectives(space, TwoBowls, options, context.get(), warm).status().message());
  };
  const SearchSpace cube = UnitCube(2);
  MoboOptions o;
  o.num_candidates = 0;
  EXPECT_THAT(message(cube, o), HasSubstr("MoboOptions.num_candidates"));
  o = {};
  o.num_initial = 60;
  EXPECT_THAT(message(cube, o), HasSubstr("MoboOptions.num_initial"));
  o = {};
  o.num_evaluations = 0;
  EXPECT_THAT(message(cube, o), HasSubstr("MoboOptions.num_evaluations"));
  o = {};
  o.num_refine = -1;
  EXPECT_THAT(message(cube, o), HasSubstr("MoboOptions.num_refine"));
  o = {};
  o.full_refit_every = 0;
  EXPECT_THAT(message(cube, o), HasSubstr("MoboOptions.full_refit_every"));
  o = {};
  o.min_relative_improvement = -0.1;
  EXPECT_THAT(message(cube, o), HasSubstr("MoboOptions.min_relative_improvement"));
  o = {};
  o.gp.noise_variance_max = -1;
  EXPECT_THAT(message(cube, o), HasSubstr("MoboOptions.gp: GaussianProcessOptions.noise_variance"));
  o = {};
  o.reference_point = Objectives2{1.0, INFINITY};
  EXPECT_THAT(message(cube, o), HasSubstr("MoboOptions.reference_point"));

  SearchSpace s = cube;
  s.parameters[1].name = "x0";
  EXPECT_THAT(message(s, {}), HasSubstr("duplicate name \"x0\""));
  s = cube;
  s.parameters[1].lower = 2;
  EXPECT_THAT(message(s, {}), HasSubstr("parameter 1 (\"x1\"): lower and upper"));
  s = cube;
  s.parameters[0].log_scale = true;
  EXPECT_THAT(message(s, {}), HasSubstr("log_scale needs lower > 0"));
  s = cube;
  s.parameters[0].kind = Kind::kCategorical;
  EXPECT_THAT(message(s, {}), HasSubstr("categorical needs categories"));
  s = cube;
  s.parameters[0].kind = Kind::kInteger;
  s.parameters[0].upper = 2.5;
  EXPECT_THAT(message(s, {}), HasSubstr("integral"));
  s = cube;
  s.parameters[0].name = "";
  EXPECT_THAT(message(s, {}), HasSubstr("name is empty"));
  EXPECT_THAT(message(SearchSpace(), {}), HasSubstr("SearchSpace.parameters is empty"));

  EXPECT_THAT(message(cube, {}, {{0.5, 1.5}}),
              HasSubstr("warm-start point 0: value of parameter \"x1\" = 1.5 is outside"));
  EXPECT_THAT(message(cube, {}, {{0.5}}), HasSubstr("1 values for 2 parameters"));
  EXPECT_THAT(message(MixedSpace(), {}, {{0.1, 4.5, 0, 10}}), HasSubstr("must be an integer"));
  EXPECT_THAT(message(MixedSpace(), {}, {{0.1, 4, 3, 10}}), HasSubstr("category index"));
  EXPECT_THAT(MinimizeTwoObjectives(cube, TwoBowls, {}, nullptr).status().message(),
              HasSubstr("context"));
}

// The service budget: a 50-evaluation run on d = 4 with a trivial objective.
// Prints wall and process CPU time (both threads); the best of five runs
// discounts other work on the machine.
TEST(MoboTest, Timing) {
  auto context = Context(2);
  MoboOptions options;
  double best_ms = 1e9, best_cpu_ms = 1e9;
  for (int repeat = 0; repeat < 5; ++repeat) {
    options.seed = repeat;
    const std::clock_t cpu_start = std::clock();
    const auto start = std::chrono::steady_clock::now();
    absl::StatusOr<MoboResult> result =
        MinimizeTwoObjectives(UnitCube(4), TwoBowls, options, context.get());
    const double ms =
        std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
    const double cpu_ms = 1000.0 * static_cast<double>(std::clock() - cpu_start) / CLOCKS_PER_SEC;
    ASSERT_TRUE(result.ok());
    std::printf("50 evaluations, d = 4, 2 threads, seed %d: %.1f ms wall, %.1f ms CPU\n", repeat,
                ms, cpu_ms);
    best_ms = std::min(best_ms, ms);
    best_cpu_ms = std::min(best_cpu_ms, cpu_ms);
  }
  std::printf("best: %.1f ms wall, %.1f ms CPU\n", best_ms, best_cpu_ms);
}

}  // namespace
}  // namespace logstar
