// The amorphous stage against ground truth from engine/image/synth.h, with the
// atoms found by LoG* (LogStarAnalyzer) as in production.
#include "engine/amorphous/amorphous.h"

#include <cmath>

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <opencv2/imgproc.hpp>

#include "absl/strings/str_format.h"
#include "engine/analysis/analyzer.h"
#include "engine/image/normalize.h"
#include "engine/image/synth.h"
#include "tests/engine/amorphous/mask_iou.h"

namespace logstar {
namespace {

struct Case {
  double fraction;
  double noise;
  uint64_t seed;
};

using ::logstar::testing::MaskIou;

struct Run {
  double iou = 0.0;
  double mask_fraction = 0.0;
  AmorphousResult result;
};

struct Prepared {
  SynthFrame frame;
  std::vector<PointXY> atoms;  // found by LoG*
  cv::Mat image;               // normalised
};

Prepared Prepare(const Case& c, int size = 384) {
  SynthOptions so;
  so.width = so.height = size;
  so.noise = c.noise;
  so.amorphous_fraction = c.fraction;
  so.seed = c.seed;
  SynthFrame frame = Synthesize(so).value();
  AnalyzerOptions ao;
  ao.logstar.optimizer.num_evaluations = 30;
  auto analyzer = LogStarAnalyzer::Create(ao, frame.prior).value();
  const FrameAnalysis a = analyzer->Analyze(frame.image, ExecutionContext::Default()).value();
  std::vector<PointXY> atoms;
  for (const Atom& atom : a.atoms) atoms.push_back({atom.x, atom.y});
  const cv::Mat image = NormalizeFrame(frame.image, {}).value();
  return {std::move(frame), std::move(atoms), image};
}

Run RunOn(const Case& c) {
  const Prepared p = Prepare(c);
  const SynthFrame& frame = p.frame;
  AmorphousOptions options;
  options.optimizer.num_evaluations = 24;
  Run run;
  run.result =
      RunAmorphous(p.image, p.atoms, frame.prior, options, ExecutionContext::Default()).value();
  run.iou = MaskIou(run.result.chosen.regions.mask, frame.amorphous_mask);
  run.mask_fraction = run.result.chosen.regions.area_fraction;
  std::printf("fraction %.2f noise %.2f seed %d: IoU %.3f, mask %.3f; %s\n", c.fraction, c.noise,
              static_cast<int>(c.seed), run.iou, run.mask_fraction, run.result.Summary().c_str());
  return run;
}

// The target: IoU >= 0.6 with synth's truth mask at 10-30 % amorphous
// area and noise <= 0.3, atoms from LoG*.
TEST(AmorphousTest, MaskMatchesTheTruthOnAmorphousFrames) {
  for (const Case& c :
       {Case{0.1, 0.3, 1}, Case{0.2, 0.3, 1}, Case{0.3, 0.3, 1}, Case{0.2, 0.1, 2}}) {
    EXPECT_GE(RunOn(c).iou, 0.6) << c.fraction << " " << c.noise;
  }
}

// The target: on a crystal the stage paints less than 2 % of the frame.
TEST(AmorphousTest, CrystallineFramesHaveNoRegion) {
  for (const Case& c : {Case{0.0, 0.3, 1}, Case{0.0, 0.1, 3}, Case{0.0, 0.3, 4}}) {
    EXPECT_LT(RunOn(c).mask_fraction, 0.02) << c.noise << " " << c.seed;
  }
}

// The gaming the issue warns about: against synth's truth mask, neither
// "no region" nor "one tiny disk" may dominate or tie it.
TEST(AmorphousTest, EmptyMaskAndTinyDiskScoreWorseThanTheTruth) {
  const Prepared p = Prepare({0.2, 0.3, 1});
  const AmorphousScene scene = AmorphousScene::Create(p.image, p.atoms, p.frame.prior, {}).value();
  EXPECT_GT(scene.evidence().share, 0.0);
  // The tiny disk: one atom's disk, as the stage would paint it, inside the truth.
  cv::Mat none = cv::Mat::zeros(p.image.size(), CV_8U), tiny = none.clone();
  for (const PointXY& a : p.atoms) {
    const cv::Point c(static_cast<int>(std::lround(a.x)), static_cast<int>(std::lround(a.y)));
    if (p.frame.amorphous_mask.at<uint8_t>(c) != 0) {
      cv::circle(tiny, c, static_cast<int>(scene.nearest_neighbor_px()), cv::Scalar(255),
                 cv::FILLED);
      break;
    }
  }
  ASSERT_GT(cv::countNonZero(tiny), 0);
  const Objectives2 t = scene.ScoreMask(p.frame.amorphous_mask).value();
  for (const auto& [name, mask] :
       {std::pair<const char*, cv::Mat>{"empty", none}, {"tiny disk", tiny}}) {
    const Objectives2 o = scene.ScoreMask(mask).value();
    std::printf("%s (%.3f, %.3f) vs truth (%.3f, %.3f)\n", name, o[0], o[1], t[0], t[1]);
    EXPECT_GT(o[0], t[0]) << name;
    EXPECT_GT(o[1], t[1]) << name;
  }
}

// The rule looks at dispersions only: flipping the sign of any feature axis
// (what an SVD may do to a principal component) changes nothing.
TEST(AmorphousTest, AxisSignsDoNotChangeTheClassification) {
  Eigen::MatrixXd f(60, 2);
  for (int i = 0; i < 60; ++i) {
    const double s = i < 45 ? 0.1 : 2.0;  // a tight crystal and a dispersed minority
    f(i, 0) = s * std::sin(2.1 * i) + (i < 45 ? 0.0 : 0.5);
    f(i, 1) = s * std::cos(1.7 * i);
  }
  const AmorphousParameters p{.covariance_type = CovarianceType::kFull, .num_components = 2};
  const FeatureClassification a = ClassifyFeatures(f, p, {}).value();
  for (const Eigen::Vector2d& sign :
       {Eigen::Vector2d(-1, 1), Eigen::Vector2d(1, -1), Eigen::Vector2d(-1, -1)}) {
    const Eigen::MatrixXd flipped = f * sign.asDiagonal();
    const FeatureClassification b = ClassifyFeatures(flipped, p, {}).value();
    EXPECT_LT((a.posterior - b.posterior).cwiseAbs().maxCoeff(), 1e-9);
  }
}

// Evenly spread points of a disk of radius `r` (a sunflower), one per row.
Eigen::MatrixXd Sunflower(int n, double r) {
  Eigen::MatrixXd f(n, 2);
  for (int j = 0; j < n; ++j) {
    const double rho = r * std::sqrt((j + 0.5) / n), angle = 2.399963 * j;
    f.row(j) << rho * std::cos(angle), rho * std::sin(angle);
  }
  return f;
}

// The noise floor is the tightest sizeable component, not a median that a
// broad component can drag up: the tight majority is crystal, the dispersed
// minority amorphous. scikit-learn's GaussianMixture (random_state=0) on the
// same points finds the same split for full, diag and spherical
// (posteriors of the broad component >= 0.99 on the 15 dispersed points,
// <= 0.011 on the 45 tight ones).
TEST(AmorphousTest, DispersedMinorityIsTheAmorphousOne) {
  Eigen::MatrixXd f(60, 2);
  f << Sunflower(45, 0.2), Sunflower(15, 3.0);
  // Several starts: from some k-means++ seeds EM settles in the poorer
  // optimum that lumps the inner dispersed points with the tight cluster (as
  // scikit-learn does from other seeds); the rule is about the best fit.
  AmorphousOptions options;
  options.n_init = 20;
  for (CovarianceType type :
       {CovarianceType::kFull, CovarianceType::kDiag, CovarianceType::kSpherical}) {
    const FeatureClassification a =
        ClassifyFeatures(f, {.covariance_type = type, .num_components = 2}, options).value();
    EXPECT_GT(a.posterior.tail(15).minCoeff(), 0.5) << CovarianceTypeName(type);
    EXPECT_LT(a.posterior.head(45).maxCoeff(), 0.5) << CovarianceTypeName(type);
  }
}

TEST(AmorphousTest, BadInputNamesTheProblem) {
  SynthFrame frame = Synthesize({.width = 128, .height = 128}).value();
  const cv::Mat image = NormalizeFrame(frame.image, {}).value();
  EXPECT_THAT(std::string(AmorphousScene::Create(image, {}, frame.prior, {}).status().message()),
              ::testing::HasSubstr("empty atom list"));
  EXPECT_THAT(std::string(AmorphousScene::Create(image, std::vector<PointXY>{{60, 60}, {61, 70}},
                                                 frame.prior, {})
                              .status()
                              .message()),
              ::testing::HasSubstr("needs at least"));
  EXPECT_THAT(std::string(AmorphousScene::Create(image, std::vector<PointXY>{{std::nan(""), 1}},
                                                 frame.prior, {})
                              .status()
                              .message()),
              ::testing::HasSubstr("non-finite"));
  AmorphousOptions bad;
  bad.dispersion_ratio = 1.0;
  EXPECT_THAT(std::string(bad.Validate().message()), ::testing::HasSubstr("dispersion_ratio"));
}

}  // namespace
}  // namespace logstar
