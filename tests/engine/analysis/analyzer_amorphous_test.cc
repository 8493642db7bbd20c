// The amorphous stage inside LogStarAnalyzer: per-window GMM parameters
// cached over a stream and re-tuned on drift, checked against the ground
// truth of generated frames (engine/image/synth.h).
#include <cmath>
#include <random>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "engine/analysis/analyzer.h"
#include "engine/image/synth.h"
#include "tests/engine/amorphous/mask_iou.h"

namespace logstar {
namespace {

using ::logstar::testing::MaskIou;

// A stream as `logstar synth --frames` makes it: crops of one clean field
// moved by a stage drift, each with its own white noise.
struct Stream {
  SynthFrame field;
  int size = 0;
  double noise = 0.0;
  std::mt19937_64 rng{7};

  Stream(double amorphous, uint64_t seed, int size_px, double noise_level, int frames)
      : size(size_px), noise(noise_level) {
    SynthOptions o;
    o.width = o.height = size_px + 2 * frames + 2;
    o.noise = 0.0;
    o.amorphous_fraction = amorphous;
    o.seed = seed;
    field = Synthesize(o).value();
  }
  // Frame i: the crop at (i + 1, i + 1) with noise, and the truth mask there.
  std::pair<cv::Mat, cv::Mat> Frame(int i) {
    const cv::Rect r(i + 1, i + 1, size, size);
    cv::Mat image = field.image(r).clone();
    double lo, hi;
    cv::minMaxLoc(image, &lo, &hi);
    std::normal_distribution<float> gauss(0.0f, static_cast<float>(noise * (hi - lo)));
    for (int y = 0; y < size; ++y) {
      for (int x = 0; x < size; ++x) image.at<float>(y, x) += gauss(rng);
    }
    return {image, field.amorphous_mask(r).clone()};
  }
};

AnalyzerOptions Options() {
  AnalyzerOptions o;
  o.window = 0;
  o.logstar.optimizer.num_evaluations = 30;
  o.amorphous.enabled = true;
  o.amorphous.options.optimizer.num_evaluations = 24;
  return o;
}

struct Seen {
  FrameAnalysis analysis;
  double iou = 0.0;
};

Seen RunFrame(LogStarAnalyzer& analyzer, const std::pair<cv::Mat, cv::Mat>& frame,
              const char* what) {
  Seen s{analyzer.Analyze(frame.first, ExecutionContext::Default()).value()};
  const FrameAmorphous& m = s.analysis.amorphous.value();
  s.iou = MaskIou(m.regions.mask, frame.second);
  std::printf("%s: %s; IoU %.3f, stage %.1f ms\n", what, s.analysis.Summary().c_str(), s.iou, m.ms);
  return s;
}

// The issue: GMM parameters cached per window and re-tuned on drift. Over a
// drifting stream of one field the first frame tunes, the next reuse the
// cached parameters (no evaluation) and still find the truth's region.
TEST(AnalyzerAmorphousTest, CachedParametersKeepFindingTheRegion) {
  constexpr int kFrames = 6;
  Stream stream(0.2, 1, 384, 0.2, kFrames);
  auto analyzer = LogStarAnalyzer::Create(Options(), stream.field.prior).value();
  int hits = 0;
  double iou_sum = 0.0, iou_min = 1.0;
  for (int i = 0; i < kFrames; ++i) {
    const Seen s = RunFrame(*analyzer, stream.Frame(i), "frame");
    const FrameAmorphous& m = *s.analysis.amorphous;
    ASSERT_EQ(m.atoms.size(), s.analysis.atoms.size());
    ASSERT_EQ(m.windows.size(), 1u);
    const AmorphousWindowResult& w = m.windows[0];
    EXPECT_TRUE(w.skipped.empty()) << w.skipped;
    if (i == 0) {
      EXPECT_EQ(w.state, CacheState::kMiss);
      EXPECT_EQ(w.evaluations, 24);
    }
    if (i > 0 && w.state == CacheState::kHit) {
      ++hits;
      EXPECT_EQ(w.evaluations, 0);
    }
    int amorphous = 0;
    for (const AtomClass& c : m.atoms) amorphous += c.amorphous;
    EXPECT_EQ(amorphous, w.num_amorphous);
    iou_sum += s.iou;
    iou_min = std::min(iou_min, s.iou);
  }
  // Tuning itself varies from frame to frame (IoU 0.65-0.85 when every frame
  // is tuned); a cached frame must do as well on average.
  EXPECT_GE(hits, kFrames / 2);
  EXPECT_GE(iou_sum / kFrames, 0.6);
  EXPECT_GE(iou_min, 0.5);
}

// A dose change: the noise floor of the lattice differences moves far
// beyond floor_drift_ratio, so the cached basis no longer describes the
// frame and the window is re-tuned; a crystal of the same lattice then
// shows no region, cached or re-tuned.
TEST(AnalyzerAmorphousTest, RetunesWhenTheFrameChanges) {
  Stream quiet(0.2, 3, 384, 0.05, 1);
  auto analyzer = LogStarAnalyzer::Create(Options(), quiet.field.prior).value();
  const Seen first = RunFrame(*analyzer, quiet.Frame(0), "noise 0.05");
  EXPECT_EQ(first.analysis.amorphous->windows[0].state, CacheState::kMiss);
  Stream noisy(0.2, 3, 384, 0.3, 1);
  const Seen second = RunFrame(*analyzer, noisy.Frame(0), "noise 0.3");
  EXPECT_EQ(second.analysis.amorphous->windows[0].state, CacheState::kRetuned);
  EXPECT_GT(second.analysis.amorphous->windows[0].evaluations, 0);
  EXPECT_GE(second.iou, 0.6);
  Stream crystal(0.0, 2, 384, 0.3, 1);
  const Seen third = RunFrame(*analyzer, crystal.Frame(0), "crystal");
  EXPECT_LT(third.analysis.amorphous->regions.area_fraction, 0.02);
}

// The cache survives a snapshot and restore (the daemon's --state_dir): a
// new analyzer restored from it serves the next frame from the cache.
TEST(AnalyzerAmorphousTest, SnapshotRestoresTheAmorphousCache) {
  Stream stream(0.2, 1, 256, 0.1, 2);
  auto a = LogStarAnalyzer::Create(Options(), stream.field.prior).value();
  RunFrame(*a, stream.Frame(0), "tune");
  const LogStarAnalyzer::CacheSnapshot snap = a->Snapshot();
  ASSERT_EQ(snap.amorphous.size(), 1u);
  ASSERT_TRUE(snap.amorphous[0].has_value());
  auto b = LogStarAnalyzer::Create(Options(), stream.field.prior).value();
  ASSERT_TRUE(b->RestoreCache(snap).ok());
  const Seen next = RunFrame(*b, stream.Frame(1), "restored");
  EXPECT_EQ(next.analysis.amorphous->windows[0].state, CacheState::kHit);

  // A broken entry is refused with the reason.
  LogStarAnalyzer::CacheSnapshot bad = snap;
  bad.amorphous[0]->projection.mean.resize(3);
  EXPECT_THAT(std::string(b->RestoreCache(bad).message()),
              ::testing::HasSubstr("cached amorphous window 0: the PCA basis"));
  bad = snap;
  bad.amorphous[0]->parameters.threshold = 1.5;
  EXPECT_THAT(std::string(b->RestoreCache(bad).message()), ::testing::HasSubstr("threshold"));
}

// A window without atoms to classify (a blank frame) is skipped with the
// reason, not failed, and its cache is kept for the next frame.
TEST(AnalyzerAmorphousTest, BlankFrameSkipsTheStage) {
  Stream stream(0.2, 1, 256, 0.1, 2);
  auto a = LogStarAnalyzer::Create(Options(), stream.field.prior).value();
  RunFrame(*a, stream.Frame(0), "tune");
  const cv::Mat blank(256, 256, CV_32F, cv::Scalar(0.5f));
  const FrameAnalysis b = a->Analyze(blank, ExecutionContext::Default()).value();
  ASSERT_TRUE(b.amorphous.has_value());
  EXPECT_EQ(b.amorphous->skipped, 1);
  EXPECT_THAT(b.amorphous->windows[0].skipped, ::testing::HasSubstr("no atoms"));
  EXPECT_TRUE(a->Snapshot().amorphous[0].has_value());
}

}  // namespace
}  // namespace logstar
