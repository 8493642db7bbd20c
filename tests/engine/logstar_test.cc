#include "engine/logstar.h"

#include <memory>
#include <vector>

#include <opencv2/core.hpp>

#include "absl/status/status.h"
#include "engine/accuracy.h"
#include "engine/context.h"
#include "engine/normalize.h"
#include "engine/synth.h"
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
    EXPECT_EQ(r->num_evaluations, 50);
    EXPECT_GE(r->front.size(), 1u);
    EXPECT_GE(acc.f1, 0.9);
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
