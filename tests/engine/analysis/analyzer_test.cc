#include "engine/analysis/analyzer.h"

#include <algorithm>
#include <cmath>
#include <memory>
#include <numbers>
#include <set>
#include <vector>

#include <opencv2/core.hpp>

#include "absl/status/status.h"
#include "engine/base/context.h"
#include "engine/image/synth.h"
#include "engine/physics/accuracy.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace logstar {
namespace {

using ::testing::HasSubstr;

SynthFrame Make(int size, double noise, uint64_t seed, double drift = 0.0) {
  SynthOptions o;
  o.width = o.height = size;
  o.noise = noise;
  o.seed = seed;
  o.drift_px = drift;
  absl::StatusOr<SynthFrame> f = Synthesize(o);
  EXPECT_TRUE(f.ok()) << f.status();
  return *std::move(f);
}

Accuracy Score(const SynthFrame& f, const FrameAnalysis& a) {
  std::vector<PointXY> det, truth;
  for (const Atom& x : a.atoms) det.push_back({x.x, x.y});
  for (const SynthAtom& t : f.atoms) truth.push_back({t.x, t.y});
  return *MatchToTruth(det, truth, 0.3 * f.prior.NearestNeighborPx());
}

TEST(LayoutWindowsTest, CoresTileTheFrameAndTilesCoverIt) {
  for (auto [w, h, window, stride] : std::vector<std::array<int, 4>>{{1024, 1024, 256, 256},
                                                                     {1000, 700, 256, 200},
                                                                     {300, 200, 256, 128},
                                                                     {100, 80, 256, 256}}) {
    absl::StatusOr<std::vector<Window>> layout = LayoutWindows(w, h, window, stride);
    ASSERT_TRUE(layout.ok()) << layout.status();
    std::vector<int> core_count(w * h, 0), tile_count(w * h, 0);
    for (const Window& win : *layout) {
      EXPECT_LE(win.tile.cols, window);
      for (int y = win.core.row0; y < win.core.row0 + win.core.rows; ++y)
        for (int x = win.core.col0; x < win.core.col0 + win.core.cols; ++x) ++core_count[y * w + x];
      for (int y = win.tile.row0; y < win.tile.row0 + win.tile.rows; ++y)
        for (int x = win.tile.col0; x < win.tile.col0 + win.tile.cols; ++x) ++tile_count[y * w + x];
      // The core lies inside the tile.
      EXPECT_GE(win.core.col0, win.tile.col0);
      EXPECT_LE(win.core.col0 + win.core.cols, win.tile.col0 + win.tile.cols);
    }
    for (int i = 0; i < w * h; ++i) {
      ASSERT_EQ(core_count[i], 1) << "pixel " << i % w << "," << i / w;
      ASSERT_GE(tile_count[i], 1);
    }
  }
  absl::StatusOr<std::vector<Window>> sixteen = LayoutWindows(1024, 1024, 256, 256);
  EXPECT_EQ(sixteen->size(), 16u);
  EXPECT_THAT(LayoutWindows(100, 100, 64, 65).status().message(), HasSubstr("stride"));
  EXPECT_THAT(LayoutWindows(100, 100, 8, 8).status().message(), HasSubstr("window"));
}

AnalyzerOptions Options(int window, int evals) {
  AnalyzerOptions o;
  o.window = window;
  o.logstar.optimizer.num_evaluations = evals;
  return o;
}

TEST(AnalyzerTest, SecondFrameHitsTheCacheAndKeepsAccuracy) {
  const SynthFrame first = Make(512, 0.2, 1), second = Make(512, 0.2, 2);
  auto analyzer = LogStarAnalyzer::Create(Options(256, 30), first.prior);
  ASSERT_TRUE(analyzer.ok()) << analyzer.status();
  absl::StatusOr<FrameAnalysis> a = (*analyzer)->Analyze(first.image, ExecutionContext::Default());
  ASSERT_TRUE(a.ok()) << a.status();
  EXPECT_EQ(a->misses, 4);
  EXPECT_EQ(a->hits, 0);
  const Accuracy acc1 = Score(first, *a);
  absl::StatusOr<FrameAnalysis> b = (*analyzer)->Analyze(second.image, ExecutionContext::Default());
  ASSERT_TRUE(b.ok()) << b.status();
  EXPECT_EQ(b->hits, 4);
  EXPECT_EQ(b->misses, 0);
  const Accuracy acc2 = Score(second, *b);
  std::printf("%s F1 %.3f\n%s F1 %.3f\n", a->Summary().c_str(), acc1.f1, b->Summary().c_str(),
              acc2.f1);
  EXPECT_GE(acc1.f1, 0.93);
  EXPECT_GE(acc2.f1, 0.93);
  for (const WindowResult& w : b->windows) EXPECT_EQ(w.evaluations, 0);
}

// Each atom is reported once: no two atoms closer than half the spacing.
TEST(AnalyzerTest, NoDuplicatesAcrossSeams) {
  const SynthFrame f = Make(384, 0.1, 4);
  for (int stride : {128, 96}) {
    auto analyzer = LogStarAnalyzer::Create(Options(128, 20), f.prior);
    ASSERT_TRUE(analyzer.ok());
    absl::StatusOr<FrameAnalysis> a = (*analyzer)->Analyze(f.image, ExecutionContext::Default());
    ASSERT_TRUE(a.ok()) << a.status();
    const double r = 0.5 * f.prior.NearestNeighborPx();
    for (size_t i = 0; i < a->atoms.size(); ++i) {
      for (size_t j = i + 1; j < a->atoms.size(); ++j) {
        ASSERT_GE(std::hypot(a->atoms[i].x - a->atoms[j].x, a->atoms[i].y - a->atoms[j].y), r)
            << "stride " << stride;
      }
    }
    EXPECT_GE(Score(f, *a).f1, 0.93) << "stride " << stride;
  }
}

// `f` analysed by a fresh analyzer with `options` on 1, then 2 threads.
std::vector<FrameAnalysis> OnOneAndTwoThreads(const SynthFrame& f, const AnalyzerOptions& options) {
  std::vector<FrameAnalysis> runs;
  for (int threads : {1, 2}) {
    auto context = ExecutionContext::Create({.num_threads = threads});
    auto analyzer = LogStarAnalyzer::Create(options, f.prior);
    EXPECT_TRUE(analyzer.ok() && context.ok());
    if (!analyzer.ok() || !context.ok()) return {};
    absl::StatusOr<FrameAnalysis> a = (*analyzer)->Analyze(f.image, context->get());
    EXPECT_TRUE(a.ok()) << a.status();
    if (!a.ok()) return {};
    runs.push_back(*std::move(a));
  }
  return runs;
}

TEST(AnalyzerTest, SameResultWithOneAndTwoThreads) {
  const SynthFrame f = Make(256, 0.3, 5);
  const std::vector<FrameAnalysis> runs = OnOneAndTwoThreads(f, Options(128, 20));
  ASSERT_EQ(runs.size(), 2u);
  ASSERT_EQ(runs[0].atoms.size(), runs[1].atoms.size());
  for (size_t i = 0; i < runs[0].atoms.size(); ++i) {
    EXPECT_EQ(runs[0].atoms[i].x, runs[1].atoms[i].x);
    EXPECT_EQ(runs[0].atoms[i].y, runs[1].atoms[i].y);
  }
  for (size_t w = 0; w < runs[0].windows.size(); ++w) {
    EXPECT_EQ(runs[0].windows[w].parameters.threshold, runs[1].windows[w].parameters.threshold);
  }
}

// The generator's column nearest `atom` closer than *distance (which it
// then holds), or null.
const SynthAtom* NearestTruth(const SynthFrame& f, const Atom& atom, double* distance) {
  const SynthAtom* best = nullptr;
  for (const SynthAtom& t : f.atoms) {
    const double d = std::hypot(atom.x - t.x, atom.y - t.y);
    if (d < *distance) *distance = d, best = &t;
  }
  return best;
}

// RefineMode::kGaussian through the analyzer: every atom carries a fit,
// its uncertainties are calibrated against the generator's true positions
// (about 95 % of coordinates within 2σ for a calibrated Gaussian error) and
// its positions are no worse than the paraboloid's on the same detection.
TEST(AnalyzerTest, GaussianRefinementReportsCalibratedUncertainties) {
  const SynthFrame f = Make(384, 0.2, 9);
  std::vector<FrameAnalysis> runs;
  for (RefineMode mode : {RefineMode::kParaboloid, RefineMode::kGaussian}) {
    AnalyzerOptions o = Options(192, 20);
    o.logstar.refine_mode = mode;
    auto analyzer = LogStarAnalyzer::Create(o, f.prior);
    ASSERT_TRUE(analyzer.ok()) << analyzer.status();
    absl::StatusOr<FrameAnalysis> a = (*analyzer)->Analyze(f.image, ExecutionContext::Default());
    ASSERT_TRUE(a.ok()) << a.status();
    runs.push_back(*std::move(a));
  }
  // The true column nearest each atom, within a third of the spacing.
  const double radius = 0.3 * f.prior.NearestNeighborPx();
  auto errors = [&](const FrameAnalysis& a, int* within, int* coordinates) {
    std::vector<double> distances;
    for (const Atom& atom : a.atoms) {
      double best_d = radius;
      const SynthAtom* best = NearestTruth(f, atom, &best_d);
      if (best == nullptr) continue;
      distances.push_back(best_d);
      if (atom.fit.has_value() && atom.fit->status == ColumnFitStatus::kOk) {
        *within += std::abs(atom.x - best->x) <= 2.0 * atom.fit->x_err;
        *within += std::abs(atom.y - best->y) <= 2.0 * atom.fit->y_err;
        *coordinates += 2;
      }
    }
    std::sort(distances.begin(), distances.end());
    return distances.empty() ? 1e9 : distances[distances.size() / 2];
  };
  int para_within = 0, para_coordinates = 0, within = 0, coordinates = 0;
  const double para_median = errors(runs[0], &para_within, &para_coordinates);
  const double gauss_median = errors(runs[1], &within, &coordinates);
  EXPECT_EQ(para_coordinates, 0);  // the paraboloid fits no Gaussian
  for (const Atom& a : runs[0].atoms) EXPECT_FALSE(a.fit.has_value());
  ASSERT_EQ(runs[1].atoms.size(), runs[0].atoms.size());
  int failed = 0;
  for (const Atom& a : runs[1].atoms) {
    ASSERT_TRUE(a.fit.has_value());
    EXPECT_EQ(a.fit->x, a.x);
    EXPECT_EQ(a.fit->y, a.y);
    EXPECT_TRUE(std::isfinite(a.fit->x_err) && a.fit->x_err > 0.0);
    EXPECT_TRUE(std::isfinite(a.fit->y_err) && a.fit->y_err > 0.0);
    if (a.fit->status != ColumnFitStatus::kOk) {
      ++failed;
      continue;
    }
    EXPECT_GT(a.fit->amplitude, 0.0);
    EXPECT_NEAR(a.fit->intensity,
                2.0 * std::numbers::pi * a.fit->amplitude * a.fit->sigma_x * a.fit->sigma_y,
                1e-9 * a.fit->intensity);
  }
  EXPECT_LE(failed, static_cast<int>(runs[1].atoms.size()) / 10);
  ASSERT_GT(coordinates, 200);
  const double share = static_cast<double>(within) / coordinates;
  EXPECT_GE(share, 0.85);
  EXPECT_LE(share, 0.99);
  EXPECT_LE(gauss_median, para_median);
}

// The fits, like the positions, do not depend on the thread count, also
// across window seams.
TEST(AnalyzerTest, GaussianFitsAreTheSameWithOneAndTwoThreads) {
  const SynthFrame f = Make(256, 0.3, 5);
  AnalyzerOptions o = Options(128, 12);
  o.logstar.refine_mode = RefineMode::kGaussian;
  const std::vector<FrameAnalysis> runs = OnOneAndTwoThreads(f, o);
  ASSERT_EQ(runs.size(), 2u);
  ASSERT_EQ(runs[0].atoms.size(), runs[1].atoms.size());
  for (size_t i = 0; i < runs[0].atoms.size(); ++i) {
    ASSERT_TRUE(runs[0].atoms[i].fit.has_value() && runs[1].atoms[i].fit.has_value());
    EXPECT_EQ(runs[0].atoms[i].x, runs[1].atoms[i].x);
    EXPECT_EQ(runs[0].atoms[i].fit->x_err, runs[1].atoms[i].fit->x_err);
    EXPECT_EQ(runs[0].atoms[i].fit->intensity, runs[1].atoms[i].fit->intensity);
    EXPECT_EQ(runs[0].atoms[i].fit->status, runs[1].atoms[i].fit->status);
  }
}

// A stream with the Gaussian refinement: the columns are fitted once per
// frame after the seams are merged, the second frame's fits starting from
// the first's. Its fits are as calibrated against the generator's truth,
// and every atom carries one.
TEST(AnalyzerTest, GaussianFitsOfAStreamsSecondFrameStayCalibrated) {
  const SynthFrame f = Make(384, 0.2, 9);
  AnalyzerOptions o = Options(192, 20);
  o.logstar.refine_mode = RefineMode::kGaussian;
  auto analyzer = LogStarAnalyzer::Create(o, f.prior);
  ASSERT_TRUE(analyzer.ok()) << analyzer.status();
  ASSERT_TRUE((*analyzer)->Analyze(f.image, ExecutionContext::Default()).ok());
  // The same columns under a new noise draw.
  double lo = 0.0, hi = 0.0;
  cv::minMaxLoc(f.image, &lo, &hi);
  cv::Mat noise(f.image.size(), CV_32F);
  cv::RNG rng(3);
  rng.fill(noise, cv::RNG::NORMAL, 0.0, 0.1 * (hi - lo));
  cv::Mat second;
  f.image.convertTo(second, CV_32F);
  second += noise;
  absl::StatusOr<FrameAnalysis> a = (*analyzer)->Analyze(second, ExecutionContext::Default());
  ASSERT_TRUE(a.ok()) << a.status();
  const double radius = 0.3 * f.prior.NearestNeighborPx();
  int within = 0, coordinates = 0, failed = 0;
  for (const Atom& atom : a->atoms) {
    ASSERT_TRUE(atom.fit.has_value());
    EXPECT_EQ(atom.fit->x, atom.x);
    if (atom.fit->status != ColumnFitStatus::kOk) {
      ++failed;
      continue;
    }
    double best_d = radius;
    const SynthAtom* best = NearestTruth(f, atom, &best_d);
    if (best == nullptr) continue;
    within += std::abs(atom.x - best->x) <= 2.0 * atom.fit->x_err;
    within += std::abs(atom.y - best->y) <= 2.0 * atom.fit->y_err;
    coordinates += 2;
  }
  EXPECT_LE(failed, static_cast<int>(a->atoms.size()) / 10);
  ASSERT_GT(coordinates, 200);
  const double share = static_cast<double>(within) / coordinates;
  EXPECT_GE(share, 0.85);
  EXPECT_LE(share, 0.99);
}

TEST(AnalyzerTest, GeometryOrPriorChangeEmptiesTheCache) {
  const SynthFrame f = Make(256, 0.1, 6), small = Make(200, 0.1, 6);
  auto analyzer = LogStarAnalyzer::Create(Options(128, 12), f.prior);
  ASSERT_TRUE(analyzer.ok());
  ASSERT_TRUE((*analyzer)->Analyze(f.image, ExecutionContext::Default()).ok());
  absl::StatusOr<FrameAnalysis> b = (*analyzer)->Analyze(small.image, ExecutionContext::Default());
  ASSERT_TRUE(b.ok());
  EXPECT_EQ(b->hits, 0);
  EXPECT_EQ(b->misses, static_cast<int>(b->windows.size()));
  ASSERT_TRUE((*analyzer)->SetPrior(f.prior).ok());
  absl::StatusOr<FrameAnalysis> c = (*analyzer)->Analyze(small.image, ExecutionContext::Default());
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(c->hits, 0);
}

TEST(AnalyzerTest, DriftTriggersARetune) {
  const SynthFrame clean = Make(256, 0.05, 7);
  // The same sample at a tenth of the dose: far noisier, so cached
  // parameters let noise through and QC moves well past the tolerance.
  const SynthFrame noisy = Make(256, 0.9, 7);
  auto analyzer = LogStarAnalyzer::Create(Options(256, 20), clean.prior);
  ASSERT_TRUE(analyzer.ok());
  ASSERT_TRUE((*analyzer)->Analyze(clean.image, ExecutionContext::Default()).ok());
  absl::StatusOr<FrameAnalysis> b = (*analyzer)->Analyze(noisy.image, ExecutionContext::Default());
  ASSERT_TRUE(b.ok()) << b.status();
  EXPECT_EQ(b->retunes, 1) << b->Summary();
  EXPECT_GT(b->windows[0].evaluations, 0);
}

TEST(AnalyzerTest, BadFramesAreRejectedAndTheCacheSurvives) {
  const SynthFrame f = Make(256, 0.1, 8);
  auto analyzer = LogStarAnalyzer::Create(Options(128, 12), f.prior);
  ASSERT_TRUE(analyzer.ok());
  ASSERT_TRUE((*analyzer)->Analyze(f.image, ExecutionContext::Default()).ok());
  cv::Mat bad = f.image.clone();
  bad.at<float>(10, 10) = std::nanf("");
  EXPECT_FALSE((*analyzer)->Analyze(bad, ExecutionContext::Default()).ok());
  EXPECT_FALSE((*analyzer)->Analyze(cv::Mat(), ExecutionContext::Default()).ok());
  absl::StatusOr<FrameAnalysis> again = (*analyzer)->Analyze(f.image, ExecutionContext::Default());
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(again->hits, 4);
}

}  // namespace
}  // namespace logstar
