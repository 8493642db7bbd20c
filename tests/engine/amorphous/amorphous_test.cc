// The amorphous stage against ground truth from engine/image/synth.h, with the
// atoms found by LoG* (LogStarAnalyzer) as in production.
#include "engine/amorphous/amorphous.h"

#include <cmath>
#include <string>

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <opencv2/imgproc.hpp>

#include "absl/strings/str_format.h"
#include "engine/analysis/analyzer.h"
#include "engine/image/image_io.h"
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

// Issue 15: the stage says when it is unsure instead of a silent "0
// regions". At noise 0.5 with 10 % amorphous area the evidence cannot locate
// the disorder (its upper population sits < 2.5 standard deviations above
// the crystal), so the result must be "uncertain" — or find the region.
// Seed 2 of the same case is not tested: there the frame's log energies show
// no second population at all (BIC prefers one by 19), which no verdict read
// from them can tell from a crystal.
TEST(AmorphousTest, NoisyAmorphousFrameIsUncertainNotSilent) {
  for (const Case& c : {Case{0.1, 0.5, 1}, Case{0.1, 0.5, 3}, Case{0.2, 0.5, 1}}) {
    const auto run = RunOn(c);
    const AmorphousVerdict& v = run.result.chosen.verdict;
    EXPECT_TRUE(v.uncertain() || run.iou >= 0.5) << c.fraction << " " << c.seed;
    if (v.uncertain()) {
      EXPECT_FALSE(v.reason.empty());
    }
  }
}

// A perfect crystal at low noise: confidently no region.
TEST(AmorphousTest, CleanCrystalIsConfidentlyEmpty) {
  for (const Case& c : {Case{0.0, 0.05, 1}, Case{0.0, 0.1, 3}}) {
    const auto run = RunOn(c);
    EXPECT_EQ(run.result.chosen.verdict.state, AmorphousVerdict::State::kConfident)
        << run.result.chosen.verdict.reason;
    EXPECT_EQ(run.result.chosen.verdict.code, AmorphousVerdict::Code::kNone);
    EXPECT_TRUE(run.result.chosen.regions.regions.empty());
  }
}

// A clear region: confident, and the region is where the truth has it.
TEST(AmorphousTest, ClearRegionIsConfidentlyFound) {
  const auto run = RunOn({0.2, 0.1, 2});
  EXPECT_EQ(run.result.chosen.verdict.state, AmorphousVerdict::State::kConfident)
      << run.result.chosen.verdict.reason;
  EXPECT_FALSE(run.result.chosen.regions.regions.empty());
  EXPECT_GE(run.iou, 0.6);
}

// The rules on hand-made evidence, at their documented bounds.
TEST(AmorphousTest, VerdictRules) {
  const AmorphousOptions o;  // min_share 0.02, tolerance 0.5, BIC gain 6, separation 2.5
  using Code = AmorphousVerdict::Code;
  AmorphousEvidence crystal{.bic_gain = -15.0, .separation = 1.5, .high_weight = 0.5};
  EXPECT_EQ(JudgeAmorphous(crystal, 0.0, 300, o).code, Code::kNone);
  // 1 / min_share = 50 atoms.
  EXPECT_EQ(JudgeAmorphous(crystal, 0.0, 49, o).code, Code::kTooFewAtoms);
  EXPECT_EQ(JudgeAmorphous(crystal, 0.0, 50, o).code, Code::kNone);
  // No evidence: painting more than 0.5 × min_share = 0.01 of the area disagrees.
  EXPECT_EQ(JudgeAmorphous(crystal, 0.009, 300, o).code, Code::kNone);
  EXPECT_EQ(JudgeAmorphous(crystal, 0.011, 300, o).code, Code::kEvidenceDisagrees);
  // Evidence 0.8 of the area (the real SrTiO3 image): 0 regions disagree,
  // 0.5-1.1 agree (|A - 0.8| <= 0.4).
  const AmorphousEvidence wide{
      .share = 0.44, .area_fraction = 0.8, .bic_gain = 7.0, .separation = 2.9, .high_weight = 0.44};
  const AmorphousVerdict none = JudgeAmorphous(wide, 0.0, 300, o);
  EXPECT_EQ(none.code, Code::kEvidenceDisagrees);
  EXPECT_THAT(none.reason, ::testing::HasSubstr("0.800"));
  EXPECT_EQ(JudgeAmorphous(wide, 0.41, 300, o).code, Code::kNone);
  EXPECT_EQ(JudgeAmorphous(wide, 0.39, 300, o).code, Code::kEvidenceDisagrees);
  // A second population the evidence cannot resolve.
  AmorphousEvidence hidden{.bic_gain = 43.0, .separation = 1.4, .high_weight = 0.11};
  const AmorphousVerdict below = JudgeAmorphous(hidden, 0.0, 300, o);
  EXPECT_EQ(below.code, Code::kBelowResolution);
  EXPECT_EQ(below.state, AmorphousVerdict::State::kUncertain);
  EXPECT_THAT(below.reason, ::testing::HasSubstr("1.40 standard deviations"));
  hidden.bic_gain = 5.9;  // not "strong"
  EXPECT_EQ(JudgeAmorphous(hidden, 0.0, 300, o).code, Code::kNone);
}

// The real SrTiO3 [110] image (../shared/data/real): its evidence marks
// most of the frame, the issue measured 0 regions chosen. Whatever the
// stage chooses, it must not be a confident 0 against that evidence.
TEST(AmorphousTest, RealSrTiO3IsNotASilentZero) {
  const std::string path = std::string(LOGSTAR_SHARED_DIR) + "/data/real/srtio3_110_haadf.npy";
  absl::StatusOr<cv::Mat> raw = LoadFrame(path);
  if (!raw.ok()) GTEST_SKIP() << "shared image not found: " << path << " (" << raw.status() << ")";
  // SrTiO3 along [110] (as tests/bench/logstar_accuracy.py): cation columns
  // a/2 = 1.95 A apart, 2 sqrt(2) / a^2 columns per A^2; 0.09326 A/px.
  PhysicsPrior prior;
  prior.pixel_size_angstrom = 0.09326;
  prior.nearest_neighbor_angstrom = 3.905 / 2;
  prior.column_density_per_nm2 = 100.0 * 2.0 * std::sqrt(2.0) / (3.905 * 3.905);
  AnalyzerOptions ao;
  ao.logstar.optimizer.num_evaluations = 30;
  auto analyzer = LogStarAnalyzer::Create(ao, prior).value();
  const FrameAnalysis a = analyzer->Analyze(*raw, ExecutionContext::Default()).value();
  std::vector<PointXY> atoms;
  for (const Atom& atom : a.atoms) atoms.push_back({atom.x, atom.y});
  const cv::Mat image = NormalizeFrame(*raw, {}).value();
  AmorphousOptions options;
  options.optimizer.num_evaluations = 24;
  const AmorphousResult r =
      RunAmorphous(image, atoms, prior, options, ExecutionContext::Default()).value();
  std::printf("SrTiO3: %s\n", r.Summary().c_str());
  const double gap = std::abs(r.chosen.regions.area_fraction - r.evidence.area_fraction);
  if (gap > 0.5 * std::max(r.evidence.area_fraction, options.min_share)) {
    EXPECT_EQ(r.chosen.verdict.code, AmorphousVerdict::Code::kEvidenceDisagrees);
  }
  EXPECT_FALSE(!r.chosen.verdict.uncertain() && r.chosen.regions.regions.empty() &&
               r.evidence.area_fraction > 0.1);
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
