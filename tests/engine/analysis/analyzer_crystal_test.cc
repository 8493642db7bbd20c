// Expected counts over the crystalline area (issue 15, item 2), through
// LogStarAnalyzer as `logstar analyze` runs it, against the generator's
// truth: nanoparticles in vacuum, crystal edges and particles on a support
// film; windows without crystal, their cache, and frames without lattice.
#include <cmath>
#include <cstdio>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <opencv2/core.hpp>

#include "absl/status/statusor.h"
#include "engine/analysis/analyzer.h"
#include "engine/base/context.h"
#include "engine/image/synth.h"
#include "engine/physics/accuracy.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/engine/real_images.h"

namespace logstar {
namespace {

using ::testing::HasSubstr;

SynthFrame Make(SynthScene scene, SynthLattice lattice, double noise, uint64_t seed,
                double fraction = 0.4) {
  SynthOptions o;
  o.width = o.height = 512;
  o.scene = scene;
  o.lattice = lattice;
  o.noise = noise;
  o.seed = seed;
  o.crystal_fraction = fraction;
  absl::StatusOr<SynthFrame> f = Synthesize(o);
  EXPECT_TRUE(f.ok()) << f.status();
  return *std::move(f);
}

// Against the columns (atoms.csv): a support film's single light atoms are
// no columns (synth lists them apart, in support_atoms); a detection of one
// is a false one.
Accuracy Score(const SynthFrame& f, const FrameAnalysis& a) {
  std::vector<PointXY> det, truth;
  for (const Atom& x : a.atoms) det.push_back({x.x, x.y});
  for (const SynthAtom& t : f.atoms) truth.push_back({t.x, t.y});
  absl::StatusOr<Accuracy> acc = MatchToTruth(det, truth, 0.3 * f.prior.NearestNeighborPx());
  EXPECT_TRUE(acc.ok()) << acc.status();
  return *acc;
}

FrameAnalysis MustAnalyze(LogStarAnalyzer& analyzer, const cv::Mat& image) {
  absl::StatusOr<FrameAnalysis> a = analyzer.Analyze(image, ExecutionContext::Default());
  EXPECT_TRUE(a.ok()) << a.status();
  return *std::move(a);
}

// One held-back seed per scene, default settings (256 px windows, 50
// evaluations), both objective pairs: F1 >= 0.9 (before, the published
// pair gave 0.57 on these scenes: about twice as many detections as columns).
TEST(AnalyzerCrystalTest, ScenesReachTheIssuesF1) {
  struct Case {
    SynthScene scene;
    SynthLattice lattice;
    double noise;
    uint64_t seed;
  };
  for (const Case& c : {Case{SynthScene::kNanoparticle, SynthLattice::kPerovskite, 0.2, 31},
                        Case{SynthScene::kEdge, SynthLattice::kYbco, 0.3, 32},
                        Case{SynthScene::kSupport, SynthLattice::kHex, 0.1, 33},
                        Case{SynthScene::kSupport, SynthLattice::kPerovskite, 0.0, 34}}) {
    const SynthFrame f = Make(c.scene, c.lattice, c.noise, c.seed);
    for (ObjectivePair pair : {ObjectivePair::kPublished, ObjectivePair::kLattice}) {
      AnalyzerOptions o;
      o.logstar.objectives = pair;
      auto analyzer = LogStarAnalyzer::Create(o, f.prior);
      ASSERT_TRUE(analyzer.ok()) << analyzer.status();
      const FrameAnalysis a = MustAnalyze(**analyzer, f.image);
      const Accuracy acc = Score(f, a);
      const double truth = cv::mean(f.crystalline_mask)[0];
      std::printf("%s %s noise %.1f %s: F1 %.3f (P %.3f R %.3f), crystalline %.3f (truth %.3f)\n",
                  SynthSceneName(c.scene), SynthLatticeName(c.lattice), c.noise,
                  pair == ObjectivePair::kLattice ? "lattice" : "published", acc.f1, acc.precision,
                  acc.recall, a.crystalline_fraction, truth);
      EXPECT_GE(acc.f1, 0.9) << SynthSceneName(c.scene);
      EXPECT_TRUE(a.crystal_note.empty()) << a.crystal_note;
      EXPECT_NEAR(a.crystalline_fraction, truth, 0.06);
    }
  }
}

// An edge with vacuum over most of the frame: the windows without crystal
// are not tuned; they detect with the nearest tuned window's parameters,
// say so, and find next to nothing on the vacuum. The next frame hits the
// cache everywhere, the lent windows included.
TEST(AnalyzerCrystalTest, WindowsWithoutCrystalBorrowAndTheCacheHolds) {
  // Seed 37: MeasureLattice returns a cell of nine times the area here, which
  // the crystalline map reduces first (engine/physics/crystallinity.h).
  const SynthFrame f = Make(SynthScene::kEdge, SynthLattice::kPerovskite, 0.3, 37, 0.35);
  AnalyzerOptions o;
  auto analyzer = LogStarAnalyzer::Create(o, f.prior);
  ASSERT_TRUE(analyzer.ok()) << analyzer.status();
  const FrameAnalysis a = MustAnalyze(**analyzer, f.image);
  int lent = 0;
  for (const WindowResult& w : a.windows) {
    if (w.crystalline_fraction >= o.min_crystal_share) {
      EXPECT_TRUE(w.crystal_note.empty()) << w.crystal_note;
      EXPECT_GT(w.evaluations, 0);
      continue;
    }
    ++lent;
    EXPECT_THAT(w.crystal_note, HasSubstr("parameters of window"));
    EXPECT_EQ(w.evaluations, 0);
    EXPECT_TRUE(w.front.empty());
    // The lender is the tuned window whose tile centre is nearest.
    const WindowResult* lender = nullptr;
    double best = 1e300;
    for (const WindowResult& t : a.windows) {
      if (t.crystalline_fraction < o.min_crystal_share) continue;
      const double d = std::hypot(t.window.tile.col0 - w.window.tile.col0,
                                  t.window.tile.row0 - w.window.tile.row0);
      if (d < best) best = d, lender = &t;
    }
    ASSERT_NE(lender, nullptr);
    EXPECT_EQ(w.parameters.threshold, lender->parameters.threshold);
    EXPECT_EQ(w.parameters.min_sigma, lender->parameters.min_sigma);
    // Vacuum: no columns in the truth, so every atom it reports is false.
    int truth_in_core = 0;
    for (const SynthAtom& t : f.atoms) {
      const PixelRegion& c = w.window.core;
      truth_in_core += t.x >= c.col0 - 0.5 && t.x < c.col0 + c.cols - 0.5 && t.y >= c.row0 - 0.5 &&
                       t.y < c.row0 + c.rows - 0.5;
    }
    EXPECT_LE(w.num_atoms, truth_in_core + 2) << "window " << w.window.index;
  }
  EXPECT_GE(lent, 1);
  EXPECT_GE(Score(f, a).f1, 0.9);

  // Cached parameters detect in a context cut to their own sigmas, which can
  // move an atom at a window's edge: the counts agree within a few.
  const FrameAnalysis b = MustAnalyze(**analyzer, f.image);
  EXPECT_EQ(b.hits, static_cast<int>(b.windows.size()));
  for (const WindowResult& w : b.windows) EXPECT_EQ(w.evaluations, 0);
  EXPECT_NEAR(b.atoms.size(), a.atoms.size(), 3);

  // A restored cache, lent windows included, makes the next frame all hits.
  auto restored = LogStarAnalyzer::Create(o, f.prior);
  ASSERT_TRUE(restored.ok());
  ASSERT_TRUE((*restored)->RestoreCache((*analyzer)->Snapshot()).ok());
  const FrameAnalysis c = MustAnalyze(**restored, f.image);
  EXPECT_EQ(c.hits, static_cast<int>(c.windows.size()));
  EXPECT_EQ(c.atoms.size(), b.atoms.size());
}

// Without a lattice (noise only) the whole frame counts, as in the
// published method, and the result says why.
TEST(AnalyzerCrystalTest, AFrameWithoutLatticeCountsOverTheWholeFrame) {
  cv::Mat noise(256, 256, CV_32F);
  cv::randn(noise, 0.0, 1.0);
  const SynthFrame f = Make(SynthScene::kCrystal, SynthLattice::kPerovskite, 0.1, 1);
  AnalyzerOptions o;
  o.logstar.optimizer.num_evaluations = 12;
  auto analyzer = LogStarAnalyzer::Create(o, f.prior);
  ASSERT_TRUE(analyzer.ok());
  const FrameAnalysis a = MustAnalyze(**analyzer, noise);
  ASSERT_TRUE(a.lattice.has_value());
  EXPECT_FALSE(a.lattice->found);
  EXPECT_THAT(a.crystal_note, HasSubstr("no lattice"));
  EXPECT_DOUBLE_EQ(a.crystalline_fraction, 1.0);
  EXPECT_NEAR(a.rewards.num_expected, f.prior.ColumnDensityPerPx2() * 256 * 256, 1e-6);
  for (const WindowResult& w : a.windows) {
    EXPECT_TRUE(w.crystal_note.empty());
    EXPECT_DOUBLE_EQ(w.crystalline_fraction, 1.0);
  }
}

// The Pb nanoparticle of ../shared/data/real (README there), as
// tests/bench/trust_benchmark.py scores it: the prior from its sidecar
// (0.22 A/px, nearest neighbour 3.25 A) and the central particle's
// reference columns (9.01 columns/nm^2 over their closed Voronoi cells); the
// 217 reference columns inside the frame (the particle's 212 and five of
// its neighbours') as the truth, matched within 0.3 x the spacing. The
// particle thins toward its rim; while its crystal map kept the thick
// centre only, the lattice pair found 143 columns (F1 0.794) against the
// published pair's 160 (0.822). Following the contrast, 0.852 against
// 0.840.
TEST(AnalyzerCrystalTest, RealPbParticleLatticePairAtLeastThePublished) {
  const absl::StatusOr<std::optional<cv::Mat>> raw = testing::LoadRealFrame("pb_nanoparticle_adf");
  ASSERT_TRUE(raw.ok()) << raw.status();
  if (!raw->has_value()) GTEST_SKIP() << "shared images not found in " << testing::RealDir();
  cv::Mat image;
  (*raw)->convertTo(image, CV_32F);
  const absl::StatusOr<std::vector<PointXY>> columns =
      testing::LoadRealPositions("pb_nanoparticle_adf");
  ASSERT_TRUE(columns.ok()) << columns.status();
  std::vector<PointXY> truth;
  for (const PointXY& p : *columns) {
    if (p.x >= -0.5 && p.x <= image.cols - 0.5 && p.y >= -0.5 && p.y <= image.rows - 0.5) {
      truth.push_back(p);
    }
  }
  ASSERT_EQ(truth.size(), 217u);
  PhysicsPrior prior;
  prior.pixel_size_angstrom = 0.22;
  prior.nearest_neighbor_angstrom = 3.25;
  prior.column_density_per_nm2 = 9.01;
  double f1[2] = {0.0, 0.0};
  for (ObjectivePair pair : {ObjectivePair::kPublished, ObjectivePair::kLattice}) {
    AnalyzerOptions o;
    o.logstar.objectives = pair;
    auto analyzer = LogStarAnalyzer::Create(o, prior);
    ASSERT_TRUE(analyzer.ok()) << analyzer.status();
    const FrameAnalysis a = MustAnalyze(**analyzer, image);
    std::vector<PointXY> det;
    for (const Atom& x : a.atoms) det.push_back({x.x, x.y});
    absl::StatusOr<Accuracy> acc = MatchToTruth(det, truth, 0.3 * prior.NearestNeighborPx());
    ASSERT_TRUE(acc.ok()) << acc.status();
    const bool lattice = pair == ObjectivePair::kLattice;
    f1[lattice ? 1 : 0] = acc->f1;
    std::printf(
        "[ real     ] pb_nanoparticle_adf %s: F1 %.3f (P %.3f R %.3f, %zu found), "
        "crystalline %.3f\n",
        lattice ? "lattice" : "published", acc->f1, acc->precision, acc->recall, det.size(),
        a.crystalline_fraction);
  }
  EXPECT_GE(f1[1], 0.83);
  EXPECT_GE(f1[1], f1[0]);
}

}  // namespace
}  // namespace logstar
