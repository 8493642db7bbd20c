// Sweep of LoG*'s objective pairs on generated frames (issue 15, item 1):
// for each lattice, noise level and seed, every window of a synthetic frame
// is tuned with the published pair (QC, ER) and with the lattice pair
// (misses, spurious), and scored against the generator's truth.
//
//   rewards_sweep [--lattices=ybco,perovskite,hex] [--noises=0,0.3,0.6,0.9]
//                 [--seeds=11,12,13] [--size=256] [--window=128] [--evals=50]
//                 [--threads=T] [--window-lattice] [--verbose]
//   rewards_sweep --scenes=nanoparticle,edge,support [--fractions=0.4]
//                 [--pairs=published,lattice] [--lattices=...] [--noises=...]
//                 [--seeds=...] [--size=512] [--amorphous=F] [--sigmas=Z]
//                 [--brightness=B] [--density=D] [--noise-sigmas=K] [--threads=T]
//   rewards_sweep --fronts --pairs=lattice --scenes=crystal,nanoparticle,...
//                 [--seeds=100,101,102] [--fractions=0.2,0.4,0.6] ...
//
// Scenes may be "abR": the crystal with A/B brightness ratio R. With
// --fronts (issue 15, item 1): the frames of tests/bench/trust_benchmark.py
// (fractions one per seed in turn, normalised frames), one line per tuned
// window: its crystalline share, front size, true columns, and per front
// point its parameters, (misses, spurious), detections and true positives
// on the window's true crystal; plus how many detections of each end the
// other lacks (see PrintFronts). --noise-sigmas sets
// LogStarOptions::lattice_noise_sigmas (both modes).
//
// With --scenes (issue 15, item 2): each scene frame is analysed as
// `logstar analyze` does by default (LogStarAnalyzer, 256 px windows, 50
// evaluations), once per objective pair, and scored against the generator's
// truth over the whole frame (matching within 0.3 × the prior's
// nearest-neighbour distance). One line per (scene, crystal fraction,
// lattice, noise, seed, pair): P, R and F1 against the columns (atoms.csv),
// F1 against the columns and the support's atoms, the crystalline share
// measured and true, and how many windows were tuned / lent parameters.
// --amorphous adds an amorphous region (scene crystal); --sigmas,
// --brightness and --density set LogStarOptions::off_crystal_sigmas,
// off_crystal_brightness and off_crystal_density.
//
// Prints one tab-separated line per (lattice, noise, seed, pair): the chosen
// point's precision / recall / F1 pooled over the windows (matching within
// 0.3 × the prior's nearest-neighbour distance, truth and detections inside
// each window's core), the share of windows whose front has >= 3 points, the
// precision and recall at the front's two ends (first objective lowest /
// second objective lowest), and how many windows fell back to the published
// pair. Windows: cores of window × window px tiled over the frame, each run
// on its core plus a 16 px halo. The lattice pair checks the lattice measured
// once on the whole frame (as the analyzer does), or with --window-lattice
// on each window's pixels. --verbose prints every front to stderr.

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"
#include "engine/analysis/analyzer.h"
#include "engine/analysis/logstar.h"
#include "engine/base/context.h"
#include "engine/image/normalize.h"
#include "engine/image/synth.h"
#include "engine/physics/accuracy.h"
#include "tests/bench/bench_util.h"

namespace logstar {
namespace {

template <typename T>
T Must(absl::StatusOr<T> v, const char* what) {
  if (!v.ok()) {
    std::fprintf(stderr, "%s: %s\n", what, std::string(v.status().message()).c_str());
    std::exit(1);
  }
  return *std::move(v);
}

struct Pooled {
  int tp = 0, det = 0, truth = 0;
  void Add(const Accuracy& a) {
    tp += a.true_positives, det += a.num_detected, truth += a.num_true;
  }
  double P() const { return det > 0 ? static_cast<double>(tp) / det : 0.0; }
  double R() const { return truth > 0 ? static_cast<double>(tp) / truth : 0.0; }
  double F1() const { return det + truth > 0 ? 2.0 * tp / (det + truth) : 0.0; }
};

std::vector<double> Numbers(absl::string_view list) {
  std::vector<double> out;
  for (absl::string_view f : absl::StrSplit(list, ',')) {
    double v;
    if (!absl::SimpleAtod(f, &v)) std::exit(2);
    out.push_back(v);
  }
  return out;
}

// With --fronts: per tuned window of the lattice pair, its front against the
// truth. Every front point is detected again on the window's tile (plus a
// 16 px halo, no crystal map) and scored on the tile's true crystal (truth
// and detections whose pixel lies on the generator's crystalline mask):
// how many it finds, true positives, and how many of its detections the
// other end lacks (no detection of the other end within the matching
// radius), so near-ties of one detection set show as 0 / 0.
void PrintFronts(const SynthFrame& frame, const cv::Mat& image, const FrameAnalysis& a,
                 const std::string& label, double noise, int seed, double radius,
                 ExecutionContext* context) {
  auto on_crystal = [&](double x, double y) {
    const int c = static_cast<int>(std::lround(x)), r = static_cast<int>(std::lround(y));
    return c >= 0 && r >= 0 && c < frame.crystalline_mask.cols && r < frame.crystalline_mask.rows &&
           frame.crystalline_mask.at<uint8_t>(r, c) != 0;
  };
  for (const WindowResult& w : a.windows) {
    if (w.evaluations == 0 || w.front.empty()) continue;
    const PixelRegion& t = w.window.tile;
    auto in_tile = [&](double x, double y) {
      return x >= t.col0 - 0.5 && x < t.col0 + t.cols - 0.5 && y >= t.row0 - 0.5 &&
             y < t.row0 + t.rows - 0.5 && on_crystal(x, y);
    };
    std::vector<PointXY> truth;
    for (const SynthAtom& at : frame.atoms) {
      if (in_tile(at.x, at.y)) truth.push_back({at.x, at.y});
    }
    constexpr int kHalo = 16;
    const int c0 = std::max(t.col0 - kHalo, 0), r0 = std::max(t.row0 - kHalo, 0);
    const int c1 = std::min(t.col0 + t.cols + kHalo, image.cols);
    const int r1 = std::min(t.row0 + t.rows + kHalo, image.rows);
    const cv::Mat tile = image(cv::Rect(c0, r0, c1 - c0, r1 - r0));
    const PixelRegion local{t.col0 - c0, t.row0 - r0, t.cols, t.rows};
    std::vector<std::vector<PointXY>> sets;
    std::string points;
    for (size_t k = 0; k < w.front.size(); ++k) {
      const FrontPoint& f = w.front[k];
      LogStarOptions o;
      const LogDetection d =
          Must(DetectAndScore(tile, local, frame.prior, f.parameters, o, context), "front");
      std::vector<PointXY> det;
      for (const Blob& b : d.blobs) {
        if (in_tile(b.x + c0, b.y + r0)) det.push_back({b.x + c0, b.y + r0});
      }
      const Accuracy acc = Must(MatchToTruth(det, truth, radius), "match");
      points += absl::StrFormat(" [t%.4f s%.2f-%.2f m%.3f s%.3f n%d tp%d%s]",
                                f.parameters.threshold, f.parameters.min_sigma,
                                f.parameters.max_sigma, f.misses, f.spurious, acc.num_detected,
                                acc.true_positives, static_cast<int>(k) == w.chosen ? "*" : "");
      sets.push_back(std::move(det));
    }
    auto lacking = [&](const std::vector<PointXY>& from, const std::vector<PointXY>& in) {
      int n = 0;
      for (const PointXY& p : from) {
        bool found = false;
        for (const PointXY& q : in) found |= std::hypot(p.x - q.x, p.y - q.y) < radius;
        n += !found;
      }
      return n;
    };
    std::printf("%s\t%.1f\t%d\t%d,%d\t%.2f\t%zu\t%zu\t%d\t%d\t%s\n", label.c_str(), noise, seed,
                t.col0, t.row0, w.crystalline_fraction, w.front.size(), truth.size(),
                lacking(sets.front(), sets.back()), lacking(sets.back(), sets.front()),
                points.c_str());
  }
  std::fflush(stdout);
}

int RunScenes(const std::vector<std::string>& scenes, const std::vector<double>& fractions,
              const std::vector<std::string>& pairs, const std::vector<std::string>& lattices,
              const std::vector<double>& noises, const std::vector<double>& seeds, int size,
              double amorphous, double density, double sigmas, double bright, double noise_sigmas,
              bool fronts, ExecutionContext* context) {
  if (fronts) {
    std::printf(
        "frame\tnoise\tseed\twindow\tcrystal\tfront\ttruth\tend1_only\tend2_only\t"
        "points\n");
  } else {
    std::printf(
        "scene\tfraction\tlattice\tnoise\tseed\tpair\tP\tR\tF1\tF1_support\tcrystal\t"
        "crystal_true\ttuned\tlent\tnote\n");
  }
  for (const std::string& scene_token : scenes) {
    // "abR": the crystal with A/B brightness ratio R (trust_benchmark.py's
    // A/B kinds).
    std::string scene = scene_token;
    double ab_ratio = 0.0;
    if (absl::StartsWith(scene_token, "ab")) {
      scene = "crystal";
      if (!absl::SimpleAtod(scene_token.substr(2), &ab_ratio)) std::exit(2);
    }
    for (size_t fi = 0; fi < (fronts ? 1 : fractions.size()); ++fi) {
      for (const std::string& name : lattices) {
        for (double noise : noises) {
          for (size_t si = 0; si < seeds.size(); ++si) {
            const double seed = seeds[si];
            // With --fronts, one fraction per seed in turn (as
            // trust_benchmark.py): seeds 100/101/102 -> 0.2/0.4/0.6.
            const double fraction = fronts ? fractions[si % fractions.size()] : fractions[fi];
            SynthOptions so;
            so.scene = Must(ParseSynthScene(scene), "scene");
            so.ab_brightness_ratio = ab_ratio;
            so.crystal_fraction = fraction;
            so.amorphous_fraction = amorphous;
            so.lattice = Must(ParseSynthLattice(name), "lattice");
            so.width = so.height = size;
            so.noise = noise;
            so.seed = static_cast<uint64_t>(seed);
            const SynthFrame frame = Must(Synthesize(so), "synth");
            std::vector<PointXY> truth, with_support;
            for (const SynthAtom& a : frame.atoms) truth.push_back({a.x, a.y});
            with_support = truth;
            for (const SynthAtom& a : frame.support_atoms) with_support.push_back({a.x, a.y});
            const double radius = 0.3 * frame.prior.NearestNeighborPx();
            for (const std::string& pair : pairs) {
              AnalyzerOptions o;
              o.logstar.objectives =
                  pair == "lattice" ? ObjectivePair::kLattice : ObjectivePair::kPublished;
              if (density >= 0.0) o.logstar.off_crystal_density = density;
              if (noise_sigmas >= 0.0) o.logstar.lattice_noise_sigmas = noise_sigmas;
              if (sigmas >= 0.0) o.logstar.off_crystal_sigmas = sigmas;
              if (bright >= 0.0) o.logstar.off_crystal_brightness = bright;
              auto analyzer = Must(LogStarAnalyzer::Create(o, frame.prior), "analyzer");
              const cv::Mat image =
                  fronts ? Must(NormalizeFrame(frame.image, NormalizeOptions{}), "normalize")
                         : frame.image;
              const FrameAnalysis a = Must(analyzer->Analyze(image, context), "analyze");
              if (fronts) {
                const std::string label =
                    absl::StrFormat("%s_%s_f%.1f_%s", scene_token, name, fraction, pair);
                PrintFronts(frame, image, a, label, noise, static_cast<int>(seed), radius, context);
                continue;
              }
              std::vector<PointXY> det;
              for (const Atom& x : a.atoms) det.push_back({x.x, x.y});
              const Accuracy acc = Must(MatchToTruth(det, truth, radius), "match");
              const Accuracy all = Must(MatchToTruth(det, with_support, radius), "match");
              int lent = 0;
              std::string note = a.crystal_note;
              for (const WindowResult& w : a.windows)
                lent += !w.crystal_note.empty() && w.evaluations == 0;
              std::printf(
                  "%s\t%.1f\t%s\t%.1f\t%d\t%s\t%.3f\t%.3f\t%.3f\t%.3f\t%.3f\t%.3f\t%d\t%d\t%s\n",
                  scene.c_str(), fraction, name.c_str(), noise, static_cast<int>(seed),
                  pair.c_str(), acc.precision, acc.recall, acc.f1, all.f1, a.crystalline_fraction,
                  cv::mean(frame.crystalline_mask)[0], static_cast<int>(a.windows.size()) - lent,
                  lent, note.c_str());
              std::fflush(stdout);
            }
          }
        }
      }
    }
  }
  return 0;
}

int Run(int argc, char** argv) {
  std::vector<std::string> lattices = {"ybco", "perovskite", "hex"};
  std::vector<double> noises = {0, 0.3, 0.6, 0.9}, seeds = {11, 12, 13};
  int size = 256, window = 128, evals = 50, threads = 0;
  bool window_lattice = false, verbose = false, fronts = false;
  std::vector<std::string> scenes, pairs = {"published", "lattice"};
  std::vector<double> fractions = {0.4};
  double amorphous = 0.0, density = -1.0, sigmas = -1.0, bright = -1.0, noise_sigmas = -1.0;
  for (int i = 1; i < argc; ++i) {
    absl::string_view a = argv[i];
    if (absl::ConsumePrefix(&a, "--lattices=")) {
      lattices = absl::StrSplit(a, ',');
    } else if (absl::ConsumePrefix(&a, "--noises=")) {
      noises = Numbers(a);
    } else if (absl::ConsumePrefix(&a, "--seeds=")) {
      seeds = Numbers(a);
    } else if (absl::ConsumePrefix(&a, "--size=")) {
      (void)absl::SimpleAtoi(a, &size);
    } else if (absl::ConsumePrefix(&a, "--window=")) {
      (void)absl::SimpleAtoi(a, &window);
    } else if (absl::ConsumePrefix(&a, "--evals=")) {
      (void)absl::SimpleAtoi(a, &evals);
    } else if (absl::ConsumePrefix(&a, "--scenes=")) {
      scenes = absl::StrSplit(a, ',');
    } else if (absl::ConsumePrefix(&a, "--pairs=")) {
      pairs = absl::StrSplit(a, ',');
    } else if (absl::ConsumePrefix(&a, "--noise-sigmas=")) {
      (void)absl::SimpleAtod(a, &noise_sigmas);
    } else if (absl::ConsumePrefix(&a, "--sigmas=")) {
      (void)absl::SimpleAtod(a, &sigmas);
    } else if (absl::ConsumePrefix(&a, "--brightness=")) {
      (void)absl::SimpleAtod(a, &bright);
    } else if (absl::ConsumePrefix(&a, "--density=")) {
      (void)absl::SimpleAtod(a, &density);
    } else if (absl::ConsumePrefix(&a, "--amorphous=")) {
      (void)absl::SimpleAtod(a, &amorphous);
    } else if (absl::ConsumePrefix(&a, "--fractions=")) {
      fractions = Numbers(a);
    } else if (a == "--window-lattice") {
      window_lattice = true;
    } else if (a == "--fronts") {
      fronts = true;
    } else if (a == "--verbose") {
      verbose = true;
    } else if (absl::ConsumePrefix(&a, "--threads=")) {
      (void)absl::SimpleAtoi(a, &threads);
    } else {
      std::fprintf(stderr, "unknown argument %s\n", argv[i]);
      return 2;
    }
  }
  std::unique_ptr<ExecutionContext> context =
      Must(ExecutionContext::Create({.num_threads = threads}), "context");
  if (!scenes.empty()) {
    bool size_given = false;
    for (int i = 1; i < argc; ++i) size_given |= absl::StartsWith(argv[i], "--size=");
    return RunScenes(scenes, fractions, pairs, lattices, noises, seeds, size_given ? size : 512,
                     amorphous, density, sigmas, bright, noise_sigmas, fronts, context.get());
  }
  std::printf(
      "lattice\tnoise\tseed\tpair\tP\tR\tF1\tfront3\tP_end1\tR_end1\tP_end2\tR_end2\tfallback\n");
  constexpr int kHalo = 16;
  for (const std::string& name : lattices) {
    for (double noise : noises) {
      for (double seed : seeds) {
        const SynthFrame frame = bench::SweepFrame(name, size, noise, seed);
        const cv::Mat image = Must(NormalizeFrame(frame.image, NormalizeOptions{}), "normalize");
        const double radius = 0.3 * frame.prior.NearestNeighborPx();
        const LatticeMeasurement lattice = Must(MeasureLattice(image), "lattice");

        for (ObjectivePair pair : {ObjectivePair::kPublished, ObjectivePair::kLattice}) {
          LogStarOptions o;
          o.objectives = pair;
          o.optimizer.num_evaluations = evals;
          if (noise_sigmas >= 0.0) o.lattice_noise_sigmas = noise_sigmas;

          Pooled chosen, end1, end2;
          int windows = 0, front3 = 0, fallback = 0;
          for (int r0 = 0; r0 < size; r0 += window) {
            for (int c0 = 0; c0 < size; c0 += window) {
              const int c = std::max(c0 - kHalo, 0), r = std::max(r0 - kHalo, 0);
              const int c1 = std::min(c0 + window + kHalo, size);
              const int r1 = std::min(r0 + window + kHalo, size);
              const cv::Mat tile = image(cv::Rect(c, r, c1 - c, r1 - r));
              const PixelRegion core{c0 - c, r0 - r, window, window};
              const LogStarResult res = Must(RunLogStar(tile, core, frame.prior, o, context.get(),
                                                        {}, window_lattice ? nullptr : &lattice),
                                             "logstar");
              ++windows;
              if (verbose) {
                for (const FrontPoint& f : res.front) {
                  std::fprintf(stderr,
                               "  w%d thr %.4f ms %.2f Ms %.2f ov %.2f | qc %.3f er %.3f | mi %.3f "
                               "sp %.3f%s\n",
                               windows, f.parameters.threshold, f.parameters.min_sigma,
                               f.parameters.max_sigma, f.parameters.overlap, f.qc, f.er, f.misses,
                               f.spurious, &f == &res.front[res.chosen] ? " *" : "");
                }
                if (!res.lattice_note.empty())
                  std::fprintf(stderr, "  note %s\n", res.lattice_note.c_str());
              }
              if (res.front.size() >= 3) ++front3;
              if (pair == ObjectivePair::kLattice && res.objectives != pair) ++fallback;
              std::vector<PointXY> truth;
              for (const SynthAtom& at : frame.atoms) {
                const double x = at.x - c, y = at.y - r;
                if (x >= core.col0 - 0.5 && x < core.col0 + window - 0.5 && y >= core.row0 - 0.5 &&
                    y < core.row0 + window - 0.5) {
                  truth.push_back({x, y});
                }
              }
              auto score = [&](const std::vector<Blob>& blobs) {
                std::vector<PointXY> det;
                for (const Blob& b : blobs) {
                  if (b.x >= core.col0 - 0.5 && b.x < core.col0 + window - 0.5 &&
                      b.y >= core.row0 - 0.5 && b.y < core.row0 + window - 0.5) {
                    det.push_back({b.x, b.y});
                  }
                }
                return Must(MatchToTruth(det, truth, radius), "match");
              };
              chosen.Add(score(res.blobs));
              const LogDetection d1 =
                  Must(DetectAndScore(tile, core, frame.prior, res.front.front().parameters, o,
                                      context.get()),
                       "end1");
              const LogDetection d2 =
                  Must(DetectAndScore(tile, core, frame.prior, res.front.back().parameters, o,
                                      context.get()),
                       "end2");
              end1.Add(score(d1.blobs));
              end2.Add(score(d2.blobs));
            }
          }
          std::printf("%s\t%.1f\t%d\t%s\t%.3f\t%.3f\t%.3f\t%.2f\t%.3f\t%.3f\t%.3f\t%.3f\t%d\n",
                      name.c_str(), noise, static_cast<int>(seed),
                      pair == ObjectivePair::kLattice ? "lattice" : "published", chosen.P(),
                      chosen.R(), chosen.F1(), static_cast<double>(front3) / windows, end1.P(),
                      end1.R(), end2.P(), end2.R(), fallback);
          std::fflush(stdout);
        }
      }
    }
  }
  return 0;
}

}  // namespace
}  // namespace logstar

int main(int argc, char** argv) { return logstar::Run(argc, argv); }
