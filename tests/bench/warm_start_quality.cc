// Warm starts against independent tuning (issue 21, item 1), on generated
// frames scored against the generator's truth.
//
//   warm_start_quality [--lattices=ybco,perovskite,hex] [--noises=0.3,0.6,0.9]
//                      [--seeds=11,12,13] [--size=1024] [--window=256]
//                      [--pairs=published,lattice] [--threads=T] [--seed-windows=N]
//                      [--verbose]
//
// Each frame (engine/image/synth.h, whole-frame crystal) is analysed by two
// fresh analyzers with the engine's default options but for the objective
// pair: warm starts off (every window tuned from nothing) and on
// (AnalyzerOptions::warm_start), and a third time independently with another
// search seed, which shows how far two searches from nothing differ. Per
// window, the atoms it reports are matched to the true columns in its core
// (tests/engine/analysis/window_accuracy.h). One tab-separated line per
// (lattice, noise, seed, pair): mean F1 of the windows independent, warm and
// again, the largest drop of a window's F1 (warm below independent) and how
// many windows dropped by more than 0.01, the same for the second independent
// run, the share
// of windows whose front has >= 3 points each way, the evaluations and the
// windows' milliseconds each way, and how many warm windows were widened to
// the whole space, and how many adopted their nearest seed's choice without
// a search (WarmStartOptions::adopt). A last line sums it up. --verbose
// prints every window.

#include <algorithm>
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"
#include "engine/analysis/analyzer.h"
#include "engine/base/context.h"
#include "engine/image/synth.h"
#include "tests/bench/bench_util.h"
#include "tests/engine/analysis/window_accuracy.h"

namespace logstar {
namespace {

using bench::Die;
using bench::Must;

std::vector<double> Numbers(absl::string_view list) {
  std::vector<double> out;
  for (absl::string_view f : absl::StrSplit(list, ',')) {
    double v;
    if (!absl::SimpleAtod(f, &v)) Die("bad number list: " + std::string(list));
    out.push_back(v);
  }
  return out;
}

struct Side {
  FrameAnalysis analysis;
  std::vector<Accuracy> accuracy;
  double mean_f1 = 0.0;
  double front3 = 0.0;
  int evaluations = 0;
  int widened = 0;
  int adopted = 0;
};

Side Analyze(const SynthFrame& frame, AnalyzerOptions options, bool warm, uint64_t search_seed,
             ExecutionContext* context) {
  options.warm_start.enabled = warm;
  options.logstar.optimizer.seed = search_seed;
  auto analyzer = Must(LogStarAnalyzer::Create(options, frame.prior), "analyzer");
  Side s;
  s.analysis = Must(analyzer->Analyze(frame.image, context), "analyze");
  s.accuracy = Must(testing::WindowAccuracy(s.analysis, frame), "accuracy");
  for (size_t i = 0; i < s.accuracy.size(); ++i) {
    const WindowResult& w = s.analysis.windows[i];
    s.mean_f1 += s.accuracy[i].f1 / s.accuracy.size();
    s.front3 += (w.front.size() >= 3 ? 1.0 : 0.0) / s.accuracy.size();
    s.evaluations += w.evaluations;
    s.widened += w.widened;
    s.adopted += w.adopted;
  }
  return s;
}

int Run(int argc, char** argv) {
  std::vector<std::string> lattices = {"ybco", "perovskite", "hex"};
  std::vector<std::string> pairs = {"published", "lattice"};
  std::vector<double> noises = {0.3, 0.6, 0.9}, seeds = {11, 12, 13};
  int size = 1024, window = 256, threads = 0;
  int seed_windows = AnalyzerOptions{}.warm_start.seed_windows;
  bool verbose = false;
  for (int i = 1; i < argc; ++i) {
    absl::string_view a = argv[i];
    if (absl::ConsumePrefix(&a, "--lattices=")) {
      lattices = absl::StrSplit(a, ',');
    } else if (absl::ConsumePrefix(&a, "--pairs=")) {
      pairs = absl::StrSplit(a, ',');
    } else if (absl::ConsumePrefix(&a, "--noises=")) {
      noises = Numbers(a);
    } else if (absl::ConsumePrefix(&a, "--seeds=")) {
      seeds = Numbers(a);
    } else if (!bench::ParseFlag(argv[i], "--size=", &size) &&
               !bench::ParseFlag(argv[i], "--window=", &window) &&
               !bench::ParseFlag(argv[i], "--threads=", &threads) &&
               !bench::ParseFlag(argv[i], "--seed-windows=", &seed_windows)) {
      if (a != "--verbose") Die(std::string("unknown argument: ") + argv[i]);
      verbose = true;
    }
  }
  std::unique_ptr<ExecutionContext> context =
      Must(ExecutionContext::Create({.num_threads = threads}), "context");
  std::printf(
      "lattice\tnoise\tseed\tpair\tF1_indep\tF1_warm\tF1_again\tworst_drop\tdrops>0.01\t"
      "again_worst\tagain_drops\tfront3_indep\t"
      "front3_warm\tevals_indep\tevals_warm\tms_indep\tms_warm\twidened\tadopted\n");
  int frames = 0, windows = 0, drops = 0, again_drops_all = 0;
  double worst = 0.0, again_worst_all = 0.0, f1_again = 0.0, f1_indep = 0.0, f1_warm = 0.0,
         front3_indep = 0.0, front3_warm = 0.0;
  double ms_indep = 0.0, ms_warm = 0.0;
  for (const std::string& name : lattices) {
    for (double noise : noises) {
      for (double seed : seeds) {
        const SynthFrame frame = bench::SweepFrame(name, size, noise, seed);
        for (const std::string& pair : pairs) {
          AnalyzerOptions o;
          o.window = window;
          o.warm_start.seed_windows = seed_windows;
          if (pair == "lattice") {
            o.logstar.objectives = ObjectivePair::kLattice;
          } else if (pair == "published") {
            o.logstar.objectives = ObjectivePair::kPublished;
          } else {
            Die("--pairs takes published and lattice, got " + pair);
          }
          const Side indep = Analyze(frame, o, false, 0, context.get());
          const Side warm = Analyze(frame, o, true, 0, context.get());
          // Independent tuning again with another search seed: how far a
          // window's F1 moves between two searches from nothing.
          const Side again = Analyze(frame, o, false, 1, context.get());
          double frame_worst = 0.0, again_worst = 0.0;
          int frame_drops = 0, again_drops = 0;
          for (size_t i = 0; i < indep.accuracy.size(); ++i) {
            const double drop = indep.accuracy[i].f1 - warm.accuracy[i].f1;
            frame_worst = std::max(frame_worst, drop);
            frame_drops += drop > 0.01;
            const double moved = indep.accuracy[i].f1 - again.accuracy[i].f1;
            again_worst = std::max(again_worst, moved);
            again_drops += moved > 0.01;
            if (verbose) {
              const WindowResult& wi = indep.analysis.windows[i];
              const WindowResult& ww = warm.analysis.windows[i];
              std::fprintf(stderr,
                           "  w%zu F1 %.3f -> %.3f front %zu -> %zu evals %d -> %d warm %d%s "
                           "thr %.4f -> %.4f%s (again F1 %.3f)\n",
                           i, indep.accuracy[i].f1, warm.accuracy[i].f1, wi.front.size(),
                           ww.front.size(), wi.evaluations, ww.evaluations, ww.warm_points,
                           ww.widened ? " widened" : "", wi.parameters.threshold,
                           ww.parameters.threshold, ww.adopted ? " adopted" : "",
                           again.accuracy[i].f1);
            }
          }
          std::printf(
              "%s\t%.1f\t%d\t%s\t%.4f\t%.4f\t%.4f\t%.4f\t%d\t%.4f\t%d\t%.2f\t%.2f\t%d\t%d\t%.0f\t%."
              "0f\t%d\t%d\n",
              name.c_str(), noise, static_cast<int>(seed), pair.c_str(), indep.mean_f1,
              warm.mean_f1, again.mean_f1, frame_worst, frame_drops, again_worst, again_drops,
              indep.front3, warm.front3, indep.evaluations, warm.evaluations,
              indep.analysis.windows_ms, warm.analysis.windows_ms, warm.widened, warm.adopted);
          std::fflush(stdout);
          ++frames;
          windows += static_cast<int>(indep.accuracy.size());
          drops += frame_drops;
          again_drops_all += again_drops;
          again_worst_all = std::max(again_worst_all, again_worst);
          f1_again += again.mean_f1;
          worst = std::max(worst, frame_worst);
          f1_indep += indep.mean_f1, f1_warm += warm.mean_f1;
          front3_indep += indep.front3, front3_warm += warm.front3;
          ms_indep += indep.analysis.windows_ms, ms_warm += warm.analysis.windows_ms;
        }
      }
    }
  }
  if (frames > 0) {
    std::printf(
        "# %d frames, %d windows: mean F1 %.4f independent, %.4f warm (%.4f independent with "
        "another search seed); worst window drop %.4f, %d windows dropped > 0.01 (another seed: "
        "%.4f, %d); front >= 3 points %.3f / %.3f; windows time %.0f / %.0f ms (ratio %.2f)\n",
        frames, windows, f1_indep / frames, f1_warm / frames, f1_again / frames, worst, drops,
        again_worst_all, again_drops_all, front3_indep / frames, front3_warm / frames, ms_indep,
        ms_warm, ms_warm / ms_indep);
  }
  return 0;
}

}  // namespace
}  // namespace logstar

int main(int argc, char** argv) { return logstar::Run(argc, argv); }
