// The amorphous stage inside LogStarAnalyzer: per-window GMM parameters
// cached over a stream and re-tuned on drift, checked against the ground
// truth of generated frames (engine/image/synth.h).
#include <algorithm>
#include <cmath>
#include <random>
#include <string>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <opencv2/imgproc.hpp>
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
  int step = 1;  // drift, px per frame along x and y
  std::mt19937_64 rng{7};

  Stream(double amorphous, uint64_t seed, int size_px, double noise_level, int frames,
         int step_px = 1)
      : size(size_px), noise(noise_level), step(step_px) {
    SynthOptions o;
    o.width = o.height = size_px + 2 * step_px * frames + 2;
    o.noise = 0.0;
    o.amorphous_fraction = amorphous;
    o.seed = seed;
    field = Synthesize(o).value();
  }
  // Frame i: the crop at (step i + 1, step i + 1) with noise, and the truth
  // mask there.
  std::pair<cv::Mat, cv::Mat> Frame(int i) {
    const cv::Rect r(step * i + 1, step * i + 1, size, size);
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

// A region's pixels, from its outline (independent of the tracker's own
// rasterisation: drawn here with cv::drawContours on a full frame).
cv::Mat RegionMask(const Region& r, cv::Size size) {
  cv::Mat m = cv::Mat::zeros(size, CV_8U);
  std::vector<cv::Point> c;
  for (const PointXY& p : r.contour)
    c.emplace_back(static_cast<int>(std::lround(p.x)), static_cast<int>(std::lround(p.y)));
  cv::drawContours(m, std::vector<std::vector<cv::Point>>{c}, 0, cv::Scalar(255), cv::FILLED);
  return m;
}

// Issue 15: regions keep their id across frames while they overlap their
// predecessor. A 24-frame stream drifting 3 px per frame along x and y over
// a fixed amorphous field (noise 0.25): a pair of frames is stable when
// every region of the later frame (of at least min_share of the area) whose
// predecessor is clear — a region of the earlier frame covering at least
// half of the smaller of the two once the known drift is undone — carries
// that predecessor's id. Stable on >= 90 % of the 23 pairs.
TEST(AnalyzerAmorphousTest, RegionIdsAreStableOverADriftingStream) {
  constexpr int kFrames = 24, kStep = 3;
  Stream stream(0.2, 1, 320, 0.25, kFrames, kStep);
  auto analyzer = LogStarAnalyzer::Create(Options(), stream.field.prior).value();
  std::vector<std::vector<Region>> seen;
  std::vector<int> counts;
  double iou_sum = 0.0;
  for (int i = 0; i < kFrames; ++i) {
    const Seen s = RunFrame(*analyzer, stream.Frame(i), "frame");
    seen.push_back(s.analysis.amorphous->regions.regions);
    counts.push_back(static_cast<int>(seen.back().size()));
    iou_sum += s.iou;
    for (const Region& r : seen.back()) EXPECT_GE(r.id, 1);
  }
  const cv::Size size(320, 320);
  const double min_area = Options().amorphous.options.min_share * size.area();
  int stable = 0, count_changes = 0;
  for (int i = 0; i + 1 < kFrames; ++i) {
    bool ok = true;
    count_changes += counts[i] != counts[i + 1];
    for (const Region& now : seen[i + 1]) {
      if (now.area_px2 < min_area) continue;
      // Frame i + 1 sees the field kStep px further: undo the drift.
      cv::Mat back;
      const cv::Mat shift = (cv::Mat_<double>(2, 3) << 1, 0, kStep, 0, 1, kStep);
      cv::warpAffine(RegionMask(now, size), back, shift, size, cv::INTER_NEAREST);
      for (const Region& before : seen[i]) {
        const double overlap = cv::countNonZero(back & RegionMask(before, size));
        const double smaller = std::min<double>(cv::countNonZero(back), before.area_px2);
        if (overlap >= 0.5 * smaller && now.id != before.id) ok = false;
      }
    }
    stable += ok;
  }
  std::string list;
  for (int c : counts) list += std::to_string(c) + " ";
  std::printf("region counts: %s; stable pairs %d / %d, count changes %d, mean IoU %.3f\n",
              list.c_str(), stable, kFrames - 1, count_changes, iou_sum / kFrames);
  EXPECT_GE(stable, 0.9 * (kFrames - 1));
  EXPECT_GE(iou_sum / kFrames, 0.6);
  // Single amorphous atoms flickering in the noise changed the count on 12
  // of the 23 pairs before the hysteresis on min_share (5 with it).
  EXPECT_LE(count_changes, (kFrames - 1) / 3);
}

// The tracks survive a snapshot and restore: the restored analyzer gives
// the next frame's region the id it had.
TEST(AnalyzerAmorphousTest, SnapshotKeepsRegionIds) {
  Stream stream(0.2, 1, 256, 0.1, 3);
  auto a = LogStarAnalyzer::Create(Options(), stream.field.prior).value();
  RunFrame(*a, stream.Frame(0), "first");
  const Seen second = RunFrame(*a, stream.Frame(1), "second");
  const LogStarAnalyzer::CacheSnapshot snap = a->Snapshot();
  ASSERT_FALSE(snap.amorphous_tracks.tracks.empty());
  auto b = LogStarAnalyzer::Create(Options(), stream.field.prior).value();
  ASSERT_TRUE(b->RestoreCache(snap).ok());
  const auto frame = stream.Frame(2);
  const Seen from_a = RunFrame(*a, frame, "original");
  const Seen from_b = RunFrame(*b, frame, "restored");
  ASSERT_EQ(from_a.analysis.amorphous->regions.regions.size(),
            from_b.analysis.amorphous->regions.regions.size());
  for (size_t k = 0; k < from_a.analysis.amorphous->regions.regions.size(); ++k) {
    EXPECT_EQ(from_a.analysis.amorphous->regions.regions[k].id,
              from_b.analysis.amorphous->regions.regions[k].id);
  }
  // The largest region of the second frame keeps its id in the third.
  const auto largest = [](const std::vector<Region>& r) {
    return *std::max_element(r.begin(), r.end(), [](const Region& x, const Region& y) {
      return x.area_px2 < y.area_px2;
    });
  };
  ASSERT_FALSE(second.analysis.amorphous->regions.regions.empty());
  EXPECT_EQ(largest(from_b.analysis.amorphous->regions.regions).id,
            largest(second.analysis.amorphous->regions.regions).id);
  LogStarAnalyzer::CacheSnapshot bad = snap;
  bad.amorphous_tracks.next_id = 0;
  EXPECT_THAT(std::string(b->RestoreCache(bad).message()), ::testing::HasSubstr("region tracks"));
}

// The verdict on a stream: a clear region is confident on every frame,
// cached or tuned; a blank frame is uncertain (the stage could not run).
TEST(AnalyzerAmorphousTest, VerdictOnAStream) {
  Stream stream(0.2, 2, 384, 0.1, 3);
  auto a = LogStarAnalyzer::Create(Options(), stream.field.prior).value();
  for (int i = 0; i < 3; ++i) {
    const Seen s = RunFrame(*a, stream.Frame(i), "clear");
    EXPECT_FALSE(s.analysis.amorphous->verdict.uncertain()) << s.analysis.amorphous->verdict.reason;
    EXPECT_FALSE(s.analysis.amorphous->windows[0].verdict.uncertain());
  }
  const cv::Mat blank(384, 384, CV_32F, cv::Scalar(0.5f));
  const FrameAnalysis b = a->Analyze(blank, ExecutionContext::Default()).value();
  EXPECT_EQ(b.amorphous->verdict.code, AmorphousVerdict::Code::kNotRun);
  EXPECT_THAT(b.amorphous->verdict.reason, ::testing::HasSubstr("no atoms"));
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
