#include "engine/physics/accuracy.h"

#include <algorithm>
#include <cmath>
#include <random>
#include <tuple>
#include <vector>

#include "gtest/gtest.h"

namespace logstar {
namespace {

// Independent reference: every pair, sorted, taken greedily.
int BruteForceTruePositives(const std::vector<PointXY>& det, const std::vector<PointXY>& truth,
                            double r) {
  std::vector<std::tuple<double, int, int>> pairs;
  for (size_t i = 0; i < det.size(); ++i) {
    for (size_t j = 0; j < truth.size(); ++j) {
      const double d = std::hypot(det[i].x - truth[j].x, det[i].y - truth[j].y);
      if (d <= r) pairs.emplace_back(d, i, j);
    }
  }
  std::sort(pairs.begin(), pairs.end());
  std::vector<bool> ud(det.size()), ut(truth.size());
  int tp = 0;
  for (auto [d, i, j] : pairs) {
    if (ud[i] || ut[j]) continue;
    ud[i] = ut[j] = true;
    ++tp;
  }
  return tp;
}

std::vector<PointXY> Grid(int n, double spacing, double dx = 0, double dy = 0) {
  std::vector<PointXY> out;
  for (int i = 0; i < n; ++i) {
    for (int j = 0; j < n; ++j) out.push_back({i * spacing + dx, j * spacing + dy});
  }
  return out;
}

TEST(AccuracyTest, PerfectDetectionScoresOne) {
  const std::vector<PointXY> truth = Grid(10, 20);
  const Accuracy a = MatchToTruth(truth, truth, 6).value();
  EXPECT_EQ(a.true_positives, 100);
  EXPECT_DOUBLE_EQ(a.precision, 1.0);
  EXPECT_DOUBLE_EQ(a.recall, 1.0);
  EXPECT_DOUBLE_EQ(a.f1, 1.0);
  EXPECT_DOUBLE_EQ(a.rms_px, 0.0);
}

TEST(AccuracyTest, ShiftedDetectionsHaveThatRmsError) {
  const Accuracy a = MatchToTruth(Grid(10, 20, 0.3, 0.4), Grid(10, 20), 6).value();
  EXPECT_EQ(a.true_positives, 100);
  EXPECT_NEAR(a.rms_px, 0.5, 1e-12);
}

TEST(AccuracyTest, FalsePositivesAndMissesCountExactly) {
  std::vector<PointXY> det = Grid(10, 20);
  det.resize(90);                                                       // 10 missed
  for (int k = 0; k < 15; ++k) det.push_back({500.0 + 30 * k, 500.0});  // 15 far away
  const Accuracy a = MatchToTruth(det, Grid(10, 20), 6).value();
  EXPECT_EQ(a.true_positives, 90);
  EXPECT_DOUBLE_EQ(a.precision, 90.0 / 105.0);
  EXPECT_DOUBLE_EQ(a.recall, 0.9);
  EXPECT_NEAR(a.f1, 2 * (90.0 / 105) * 0.9 / (90.0 / 105 + 0.9), 1e-12);
}

TEST(AccuracyTest, EachTruePointMatchesOnce) {
  // Two detections on one true point: one true positive, one false.
  const Accuracy a = MatchToTruth({{0, 0}, {0.5, 0}}, {{0.1, 0}}, 3).value();
  EXPECT_EQ(a.true_positives, 1);
  EXPECT_NEAR(a.rms_px, 0.1, 1e-12);
}

TEST(AccuracyTest, RadiusIsInclusive) {
  EXPECT_EQ(MatchToTruth({{3, 4}}, {{0, 0}}, 5).value().true_positives, 1);
  EXPECT_EQ(MatchToTruth({{3, 4}}, {{0, 0}}, 4.999).value().true_positives, 0);
}

TEST(AccuracyTest, EmptySets) {
  const Accuracy none = MatchToTruth({}, Grid(3, 10), 2).value();
  EXPECT_EQ(none.true_positives, 0);
  EXPECT_EQ(none.f1, 0.0);
  EXPECT_EQ(MatchToTruth(Grid(3, 10), {}, 2).value().precision, 0.0);
}

TEST(AccuracyTest, AgreesWithBruteForceOnRandomClutter) {
  std::mt19937 rng(5);
  std::uniform_real_distribution<double> u(0, 200);
  for (int trial = 0; trial < 20; ++trial) {
    std::vector<PointXY> det(300), truth(250);
    for (auto& p : det) p = {u(rng), u(rng)};
    for (auto& p : truth) p = {u(rng), u(rng)};
    for (double r : {1.0, 4.0, 9.0}) {
      EXPECT_EQ(MatchToTruth(det, truth, r).value().true_positives,
                BruteForceTruePositives(det, truth, r))
          << "trial " << trial << " r " << r;
    }
  }
}

TEST(AccuracyTest, BadInputNamesTheProblem) {
  EXPECT_NE(MatchToTruth({}, {}, 0).status().message().find("radius_px"), std::string::npos);
  EXPECT_NE(MatchToTruth({{NAN, 1}}, {}, 1).status().message().find("detected point 0"),
            std::string::npos);
}

}  // namespace
}  // namespace logstar
