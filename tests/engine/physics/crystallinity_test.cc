#include "engine/physics/crystallinity.h"

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include <opencv2/core.hpp>
#include <opencv2/imgcodecs.hpp>

#include "absl/status/statusor.h"
#include "engine/base/context.h"
#include "engine/image/normalize.h"
#include "engine/image/synth.h"
#include "engine/physics/lattice.h"
#include "gtest/gtest.h"
#include "tests/engine/amorphous/mask_iou.h"

namespace logstar {
namespace {

using ::logstar::testing::MaskIou;

struct Measured {
  double iou = 0.0;
  double fraction = 0.0;
  double truth_fraction = 0.0;
  bool found = false;
};

Measured Measure(const SynthOptions& o) {
  absl::StatusOr<SynthFrame> f = Synthesize(o);
  EXPECT_TRUE(f.ok()) << f.status();
  absl::StatusOr<cv::Mat> image = NormalizeFrame(f->image, NormalizeOptions{});
  EXPECT_TRUE(image.ok()) << image.status();
  absl::StatusOr<LatticeMeasurement> lattice = MeasureLattice(*image);
  EXPECT_TRUE(lattice.ok()) << lattice.status();
  Measured m;
  m.truth_fraction = cv::mean(f->crystalline_mask)[0];
  m.found = lattice->found;
  if (!lattice->found) {
    std::printf("  no lattice: %s\n", lattice->reason.c_str());
    return m;
  }
  CrystallinityOptions co;
  if (const char* v = std::getenv("CW")) co.window_cells = std::atof(v);
  if (const char* v = std::getenv("CT")) co.threshold_fraction = std::atof(v);
  absl::StatusOr<Crystallinity> c = MeasureCrystallinity(*image, *lattice, co);
  EXPECT_TRUE(c.ok()) << c.status();
  if (!c.ok()) return m;
  m.iou = MaskIou(c->mask.frame_mask(), f->crystalline_mask);
  m.fraction = c->fraction;
  if (const char* dump = std::getenv("SWEEP_DUMP")) {
    cv::Mat both;
    std::vector<cv::Mat> ch = {f->crystalline_mask * 255, c->mask.frame_mask() * 255,
                               cv::Mat::zeros(f->crystalline_mask.size(), CV_8U)};
    cv::merge(ch, both);
    cv::Mat img;
    image->convertTo(img, CV_8U, 255);
    cv::imwrite(std::string(dump) + "/" + SynthSceneName(o.scene) + "_" +
                    SynthLatticeName(o.lattice) + "_" + std::to_string(o.noise) + "_" +
                    std::to_string(o.seed) + ".png",
                both);
    cv::imwrite(std::string(dump) + "/" + SynthSceneName(o.scene) + "_" +
                    SynthLatticeName(o.lattice) + "_" + std::to_string(o.noise) + "_" +
                    std::to_string(o.seed) + "_img.png",
                img);
  }
  if (std::getenv("SWEEP_VERBOSE")) {
    std::printf("  a (%.2f, %.2f) b (%.2f, %.2f) nn %.2f cols %d\n", lattice->a.x, lattice->a.y,
                lattice->b.x, lattice->b.y, lattice->nearest_neighbor_px, lattice->columns_per_cell);
    std::printf("  level %.4g noise %.4g threshold %.4g\n", c->level, c->noise, c->threshold);
  }
  return m;
}

// Prints IoU against synth's crystalline_mask over scenes, lattices, noise
// levels and seeds (run with --gtest_also_run_disabled_tests).
TEST(CrystallinitySweep, DISABLED_Table) {
  const char* seeds_env = std::getenv("SWEEP_SEEDS");
  const int num_seeds = seeds_env ? std::atoi(seeds_env) : 2;
  struct Scene {
    SynthScene scene;
    double fraction;
    double amorphous;
  };
  const std::vector<Scene> scenes = {{SynthScene::kNanoparticle, 0.2, 0},
                                     {SynthScene::kNanoparticle, 0.6, 0},
                                     {SynthScene::kEdge, 0.4, 0},
                                     {SynthScene::kSupport, 0.4, 0},
                                     {SynthScene::kCrystal, 0.4, 0.3},
                                     {SynthScene::kInterface, 0.5, 0}};
  for (const Scene& s : scenes) {
    for (SynthLattice lattice : {SynthLattice::kPerovskite, SynthLattice::kYbco, SynthLattice::kHex}) {
      for (double noise : {0.0, 0.3, 0.6}) {
        double sum = 0, worst = 1;
        std::string line;
        for (int seed = 100; seed < 100 + num_seeds; ++seed) {
          SynthOptions o;
          o.width = o.height = 512;
          o.lattice = lattice;
          o.noise = noise;
          o.seed = seed;
          o.scene = s.scene;
          o.crystal_fraction = s.fraction;
          o.amorphous_fraction = s.amorphous;
          const Measured m = Measure(o);
          sum += m.iou, worst = std::min(worst, m.iou);
          char buf[64];
          std::snprintf(buf, sizeof buf, " %.3f(%.2f/%.2f)", m.iou, m.fraction, m.truth_fraction);
          line += buf;
        }
        std::printf("%-12s f%.1f am%.1f %-10s noise %.1f  mean %.3f min %.3f |%s\n",
                    SynthSceneName(s.scene), s.fraction, s.amorphous, SynthLatticeName(lattice),
                    noise, sum / num_seeds, worst, line.c_str());
      }
    }
  }
}

}  // namespace
}  // namespace logstar
namespace logstar {
namespace {
TEST(CrystallinitySweep, DISABLED_One) {
  SynthOptions o;
  o.width = o.height = 512;
  o.lattice = *ParseSynthLattice(std::getenv("L"));
  if (std::getenv("SIZE")) o.width = o.height = std::atoi(std::getenv("SIZE"));
  o.scene = *ParseSynthScene(std::getenv("S"));
  o.noise = std::atof(std::getenv("N"));
  o.seed = std::atoi(std::getenv("SEED"));
  if (std::getenv("F")) o.crystal_fraction = std::atof(std::getenv("F"));
  if (std::getenv("AM")) o.amorphous_fraction = std::atof(std::getenv("AM"));
  const Measured m = Measure(o);
  std::printf("iou %.3f fraction %.3f truth %.3f\n", m.iou, m.fraction, m.truth_fraction);
}
}  // namespace
}  // namespace logstar
namespace logstar {
namespace {
TEST(CrystallinitySweep, DISABLED_Time) {
  for (int size : {512, 1024, 2048}) {
    SynthOptions o;
    o.width = o.height = size;
    o.lattice = SynthLattice::kPerovskite;
    o.scene = SynthScene::kNanoparticle;
    o.noise = 0.3;
    absl::StatusOr<SynthFrame> f = Synthesize(o);
    absl::StatusOr<cv::Mat> image = NormalizeFrame(f->image, NormalizeOptions{});
    auto t0 = std::chrono::steady_clock::now();
    absl::StatusOr<LatticeMeasurement> lattice = MeasureLattice(*image);
    auto t1 = std::chrono::steady_clock::now();
    absl::StatusOr<Crystallinity> c;
    for (int i = 0; i < 5; ++i) c = MeasureCrystallinity(*image, *lattice);
    auto t2 = std::chrono::steady_clock::now();
    for (int i = 0; i < 5; ++i) c = MeasureCrystallinity(*image, *lattice, {}, ExecutionContext::Default());
    auto t3 = std::chrono::steady_clock::now();
    std::printf("%d: lattice %.1f ms, crystallinity %.2f ms (1 thread) %.2f ms (context), iou %.3f\n", size,
                std::chrono::duration<double, std::milli>(t1 - t0).count(),
                std::chrono::duration<double, std::milli>(t2 - t1).count() / 5,
                std::chrono::duration<double, std::milli>(t3 - t2).count() / 5,
                MaskIou(c->mask.frame_mask(), f->crystalline_mask));
  }
}
}  // namespace
}  // namespace logstar
namespace logstar {
namespace {
TEST(CrystallinitySweep, DISABLED_Loop) {
  SynthOptions o;
  o.width = o.height = 1024;
  o.lattice = SynthLattice::kPerovskite;
  o.scene = SynthScene::kNanoparticle;
  o.noise = 0.3;
  absl::StatusOr<SynthFrame> f = Synthesize(o);
  absl::StatusOr<cv::Mat> image = NormalizeFrame(f->image, NormalizeOptions{});
  absl::StatusOr<LatticeMeasurement> lattice = MeasureLattice(*image);
  auto t1 = std::chrono::steady_clock::now();
  absl::StatusOr<Crystallinity> c;
  for (int i = 0; i < 40; ++i) c = MeasureCrystallinity(*image, *lattice);
  auto t2 = std::chrono::steady_clock::now();
  std::printf("%.2f ms\n", std::chrono::duration<double, std::milli>(t2 - t1).count() / 40);
}
}  // namespace
}  // namespace logstar
