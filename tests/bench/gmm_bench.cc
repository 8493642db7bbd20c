// GMM-stage benchmark: the amorphous stage (engine/amorphous/amorphous.h) on a frame in
// the layout `logstar synth` writes, the frame tests/bench/run_gmm_bench.sh
// also gives the reference workflow (--gmm).
//
//   gmm_bench --dir=D [--repeat=R] [--evals=N] [--threads=T] [--cached_only]
//
// Atoms come from LoG* (LogStarAnalyzer, default options) as in production.
// Then, best of R runs each (a shared machine only ever slows a run down):
//  * scene_ms: AmorphousScene::Create — low-pass, lattice translations,
//    features and PCA for every searched patch size, the evidence;
//  * eval_ms: one AmorphousScene::Evaluate at the default parameters — the
//    mixture fit and the regions, what each tuning step costs;
//  * cold_eval_ms: scene_ms + eval_ms, one evaluation from nothing;
//  * tune_ms and tune_per_eval_ms: RunAmorphous with N evaluations (scene
//    included), and that divided by the evaluations actually made.
// The reference's evaluation builds patches, PCA, the mixture and the mask
// every time, so the comparable figure is tune_per_eval_ms (amortised, as in
// a tuning run); cold_eval_ms is the pessimistic one. Also prints the IoU of
// the tuned mask with amorphous_mask.npy.
//
// The stage in a stream (LogStarAnalyzer with the stage on, whole-frame
// windows for it and the default 256 px LoG windows): the first frame
// tunes both; the same frame again, R times, is served from both caches.
//  * cached_stage_ms: the amorphous stage of such a frame (best of R);
//  * cached_frame_ms: the whole cached frame, LoG* and the stage;
//  * cached_log_ms: its LoG* part (normalisation and windows);
//  * median_parameters: the LoG windows' median parameters, for the
//    like-for-like blob_log call that sets the cached-frame budget.
// --cached_only skips the rest. One JSON object on stdout.

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>
#include <opencv2/core.hpp>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "engine/amorphous/amorphous.h"
#include "engine/analysis/analyzer.h"
#include "engine/base/context.h"
#include "engine/image/image_io.h"
#include "engine/image/normalize.h"
#include "tests/bench/bench_util.h"

namespace logstar {
namespace {

using bench::Die;
using bench::MsSince;
using bench::Must;

using Json = nlohmann::json;
using Clock = std::chrono::steady_clock;

struct Args {
  std::string dir;
  int repeat = 5;
  int evals = 30;
  int threads = 0;
  bool cached_only = false;
};

Args Parse(int argc, char** argv) {
  Args a;
  for (int i = 1; i < argc; ++i) {
    const std::string s = argv[i];
    auto number = [&](const char* flag, int& out) {
      if (!absl::StartsWith(s, flag)) return false;
      if (!absl::SimpleAtoi(s.substr(std::string(flag).size()), &out)) Die("bad value in " + s);
      return true;
    };
    if (absl::StartsWith(s, "--dir=")) {
      a.dir = s.substr(6);
    } else if (s == "--cached_only") {
      a.cached_only = true;
    } else if (!number("--repeat=", a.repeat) && !number("--evals=", a.evals) &&
               !number("--threads=", a.threads)) {
      Die("unknown argument " + s + " (usage: gmm_bench --dir=D [--repeat=R] [--evals=N] " +
          "[--threads=T] [--cached_only])");
    }
  }
  if (a.dir.empty()) Die("--dir is required");
  if (a.repeat < 1 || a.evals < 1) Die("--repeat and --evals must be >= 1");
  return a;
}

double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0.0 : v[v.size() / 2];
}

// The frame in a stream: tuned once, then served from the caches.
Json Cached(const cv::Mat& raw, const PhysicsPrior& prior, int repeat, ExecutionContext* context) {
  AnalyzerOptions o;
  o.amorphous.enabled = true;
  auto analyzer = Must(LogStarAnalyzer::Create(o, prior), "analyzer");
  const FrameAnalysis first = Must(analyzer->Analyze(raw, context), "first frame");
  double stage = 1e300, frame = 1e300, log = 1e300;
  int hits = 0;
  for (int r = 0; r < repeat; ++r) {
    const FrameAnalysis a = Must(analyzer->Analyze(raw, context), "cached frame");
    if (a.misses + a.retunes > 0 || a.amorphous->misses + a.amorphous->retunes > 0) continue;
    ++hits;
    stage = std::min(stage, a.amorphous_ms);
    frame = std::min(frame, a.total_ms);
    log = std::min(log, a.normalize_ms + a.windows_ms);
  }
  if (hits == 0) Die("no cached frame: every repeat re-tuned");
  std::vector<double> lo, hi, th, ov, ns;
  for (const WindowResult& w : first.windows) {
    lo.push_back(w.parameters.min_sigma);
    hi.push_back(w.parameters.max_sigma);
    ns.push_back(w.parameters.num_sigma);
    th.push_back(w.parameters.threshold);
    ov.push_back(w.parameters.overlap);
  }
  return {{"size", {raw.cols, raw.rows}},
          {"cached_hits", hits},
          {"cached_stage_ms", stage},
          {"cached_frame_ms", frame},
          {"cached_log_ms", log},
          {"tuning_frame_ms", first.total_ms},
          {"median_parameters",
           {{"min_sigma", Median(lo)},
            {"max_sigma", Median(hi)},
            {"num_sigma", static_cast<int>(Median(ns))},
            {"threshold", Median(th)},
            {"overlap", Median(ov)}}}};
}

int Main(int argc, char** argv) {
  const Args a = Parse(argc, argv);
  const PhysicsPrior prior = bench::ReadSynthPrior(a.dir);
  const cv::Mat raw = Must(LoadFrame(a.dir + "/image.npy"), "image.npy");
  auto context = Must(ExecutionContext::Create({.num_threads = a.threads}), "context");
  if (a.cached_only) {
    std::printf("%s\n", Cached(raw, prior, a.repeat, context.get()).dump(1).c_str());
    return 0;
  }
  const cv::Mat truth = Must(LoadFrame(a.dir + "/amorphous_mask.npy"), "amorphous_mask.npy");

  auto analyzer = Must(LogStarAnalyzer::Create(AnalyzerOptions{}, prior), "analyzer");
  const FrameAnalysis analysis = Must(analyzer->Analyze(raw, context.get()), "LoG*");
  std::vector<PointXY> atoms;
  for (const Atom& atom : analysis.atoms) atoms.push_back({atom.x, atom.y});
  const cv::Mat image = Must(NormalizeFrame(raw, {}), "normalise");

  const AmorphousOptions options;
  double scene_ms = 1e300, eval_ms = 1e300;
  for (int r = 0; r < a.repeat; ++r) {
    auto t0 = Clock::now();
    const AmorphousScene scene =
        Must(AmorphousScene::Create(image, atoms, prior, options), "scene");
    scene_ms = std::min(scene_ms, MsSince(t0));
    t0 = Clock::now();
    Must(scene.Evaluate(AmorphousParameters{}), "evaluate");
    eval_ms = std::min(eval_ms, MsSince(t0));
  }
  AmorphousOptions tuned = options;
  tuned.optimizer.num_evaluations = a.evals;
  AmorphousResult best;
  best.tuning_ms = 1e300;
  for (int r = 0; r < a.repeat; ++r) {
    AmorphousResult res =
        Must(RunAmorphous(image, atoms, prior, tuned, context.get()), "RunAmorphous");
    if (res.tuning_ms < best.tuning_ms) best = std::move(res);
  }
  const cv::Mat& mask = best.chosen.regions.mask;
  const double inter = cv::countNonZero(mask & (truth != 0));
  const double uni = cv::countNonZero(mask | (truth != 0));
  Json out = {{"frame", a.dir},
              {"size", {image.cols, image.rows}},
              {"atoms", atoms.size()},
              {"scene_ms", scene_ms},
              {"eval_ms", eval_ms},
              {"cold_eval_ms", scene_ms + eval_ms},
              {"tune_ms", best.tuning_ms},
              {"evaluations", best.num_evaluations},
              {"tune_per_eval_ms", best.tuning_ms / std::max(best.num_evaluations, 1)},
              {"iou", uni > 0 ? inter / uni : 1.0},
              {"summary", best.Summary()}};
  out["cached"] = Cached(raw, prior, a.repeat, context.get());
  std::printf("%s\n", out.dump(1).c_str());
  return 0;
}

}  // namespace
}  // namespace logstar

int main(int argc, char** argv) { return logstar::Main(argc, argv); }
