#include "engine/analysis/logstar.h"

#include <memory>
#include <vector>

#include <opencv2/core.hpp>

#include "absl/status/status.h"
#include "engine/base/context.h"
#include "engine/image/normalize.h"
#include "engine/image/synth.h"
#include "engine/physics/accuracy.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace logstar {
namespace {

using ::testing::HasSubstr;

struct Scene {
  SynthFrame synth;
  cv::Mat image;  // normalised
};

Scene MakeScene(SynthLattice lattice, int size, double noise, uint64_t seed,
                double amorphous = 0.0) {
  SynthOptions o;
  o.lattice = lattice;
  o.width = o.height = size;
  o.noise = noise;
  o.amorphous_fraction = amorphous;
  o.seed = seed;
  absl::StatusOr<SynthFrame> f = Synthesize(o);
  EXPECT_TRUE(f.ok()) << f.status();
  absl::StatusOr<cv::Mat> n = NormalizeFrame(f->image, NormalizeOptions{});
  EXPECT_TRUE(n.ok()) << n.status();
  return {*std::move(f), *n};
}

Accuracy Score(const Scene& scene, const std::vector<Blob>& blobs) {
  std::vector<PointXY> det, truth;
  for (const Blob& b : blobs) det.push_back({b.x, b.y});
  for (const SynthAtom& a : scene.synth.atoms) truth.push_back({a.x, a.y});
  absl::StatusOr<Accuracy> acc =
      MatchToTruth(det, truth, 0.3 * scene.synth.prior.NearestNeighborPx());
  EXPECT_TRUE(acc.ok()) << acc.status();
  return *acc;
}

PixelRegion Whole(const cv::Mat& m) { return {0, 0, m.cols, m.rows}; }

TEST(LogStarTest, FindsTheColumnsOfAGeneratedFrame) {
  for (double noise : {0.0, 0.3}) {
    const Scene scene = MakeScene(SynthLattice::kYbco, 256, noise, 3);
    absl::StatusOr<LogStarResult> r = RunLogStar(scene.image, Whole(scene.image), scene.synth.prior,
                                                 LogStarOptions{}, ExecutionContext::Default());
    ASSERT_TRUE(r.ok()) << r.status();
    const Accuracy acc = Score(scene, r->blobs);
    std::printf("noise %.1f: %s F1 %.3f (P %.3f R %.3f, %d/%d), rms %.3f px\n", noise,
                r->Summary().c_str(), acc.f1, acc.precision, acc.recall, acc.num_detected,
                acc.num_true, acc.rms_px);
    // Polishing stops once the count is the expected one.
    EXPECT_LE(r->num_evaluations, 50);
    EXPECT_GE(r->num_evaluations, 45);
    EXPECT_GE(r->front.size(), 1u);
    EXPECT_GE(acc.f1, 0.9);
  }
}

// The front reported is exact: each point's rewards are those of a fresh
// blob_log detection with its parameters (the search itself ran on a sigma
// grid whose sigmas differ by up to 2 %).
TEST(LogStarTest, ReportedFrontIsExact) {
  for (uint64_t seed : {1, 2, 3}) {
    const Scene scene = MakeScene(SynthLattice::kYbco, 192, 0.3, seed);
    LogStarOptions o;
    o.optimizer.seed = seed;
    // The published pair, whose fronts fit the polish budget (the lattice
    // pair's can outnumber it).
    o.objectives = ObjectivePair::kPublished;
    absl::StatusOr<LogStarResult> r = RunLogStar(scene.image, Whole(scene.image), scene.synth.prior,
                                                 o, ExecutionContext::Default());
    ASSERT_TRUE(r.ok()) << r.status();
    ASSERT_LE(r->front.size(), 4u) << "more front points than the polish budget";
    double hv_exact = 1.0;
    for (const FrontPoint& p : r->front) {
      absl::StatusOr<std::vector<Blob>> blobs =
          DetectBlobsLog(scene.image, p.parameters.ToLogOptions(), ExecutionContext::Default());
      ASSERT_TRUE(blobs.ok()) << blobs.status();
      std::vector<PointXY> points;
      for (const Blob& b : *blobs) points.push_back({b.x, b.y});
      absl::StatusOr<Rewards> rw =
          ComputeRewards(points, Whole(scene.image), scene.synth.prior, RewardOptions{});
      ASSERT_TRUE(rw.ok()) << rw.status();
      EXPECT_DOUBLE_EQ(p.qc, std::min(rw->qc, o.objective_cap)) << "seed " << seed;
      EXPECT_DOUBLE_EQ(p.er, std::min(rw->er, o.objective_cap)) << "seed " << seed;
      if (r->front.size() == 1) hv_exact = (1 - rw->qc) * (1 - rw->er);
    }
    if (r->front.size() == 1) {
      EXPECT_DOUBLE_EQ(r->hypervolume, hv_exact);
    }
  }
}

TEST(LogStarTest, BadInputNamesTheProblem) {
  const Scene scene = MakeScene(SynthLattice::kYbco, 64, 0.1, 1);
  LogStarOptions o;
  o.num_sigma = 0;
  EXPECT_THAT(
      RunLogStar(scene.image, Whole(scene.image), scene.synth.prior, o, ExecutionContext::Default())
          .status()
          .message(),
      HasSubstr("num_sigma"));
  EXPECT_THAT(RunLogStar(scene.image, {0, 0, 65, 64}, scene.synth.prior, LogStarOptions{},
                         ExecutionContext::Default())
                  .status()
                  .message(),
              HasSubstr("outside"));
  PhysicsPrior bad = scene.synth.prior;
  bad.pixel_size_angstrom = -1;
  EXPECT_THAT(RunLogStar(scene.image, Whole(scene.image), bad, LogStarOptions{},
                         ExecutionContext::Default())
                  .status()
                  .message(),
              HasSubstr("pixel_size_angstrom"));
}

}  // namespace
}  // namespace logstar
