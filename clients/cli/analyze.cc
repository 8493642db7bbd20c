// `logstar analyze`: the atoms of a frame (or a sequence) with LoG* per
// window, in process or through logstard, written as RESULT.json
// (analysis_json.h) with an optional overlay, accuracy against a truth CSV
// and the amorphous stage (amorphous_output.h).
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "clients/cli/amorphous_output.h"
#include "clients/cli/analysis_json.h"
#include "clients/cli/commands.h"
#include "clients/cli/common.h"
#include "clients/cli/frame_file.h"
#include "clients/cli/prior.h"
#include "clients/cli/remote.h"
#include "clients/cpp/client.h"
#include "engine/analysis/analyzer.h"
#include "engine/analysis/logstar.h"
#include "engine/base/context.h"
#include "engine/image/image_io.h"
#include "engine/image/normalize.h"
#include "engine/log/log_detector.h"
#include "engine/physics/accuracy.h"
#include "engine/physics/physics_prior.h"
#include "engine/physics/rewards.h"

namespace logstar::cli {
namespace {

using Clock = std::chrono::steady_clock;

constexpr char kAnalyzeUsage[] =
    "usage: logstar analyze IMAGE|--frames DIR_OR_GLOB --prior PRIOR.json|auto --out RESULT.json\n"
    "                       [LoG* options] [--overlay OUT.png] [--normalize M] [--pixel-size A]\n"
    "                       [--server ADDR [client options] | --threads N]\n"
    "       logstar analyze IMAGE --prior PRIOR.json|auto --out RESULT.json [LoG* options]\n"
    "                       --gmm [--amorphous-mask M.png] [--truth ATOMS.csv [--match-radius "
    "PX]]\n"
    "       logstar analyze IMAGE --prior PRIOR.json --out RESULT.json --fixed a,b,n,t,o\n"
    "                       [--overlay OUT.png] [--normalize M] [--threads N]\n"
    "                       [--truth ATOMS.csv [--match-radius PX]]\n"
    "LoG* options (none of them with --fixed): --window --stride --evals --seed --choose\n"
    "  --objectives --num-sigma --refine --no-refine --drift-tolerance --sublattice --strict\n"
    "Go together: --stride with --window > 0; --truth and --gmm with one IMAGE; --amorphous-mask\n"
    "  with --gmm; --match-radius with --truth; --pixel-size with an auto prior; --fixed only\n"
    "  in process (not --server), with a given PRIOR.json and one IMAGE; --threads not with\n"
    "  --server.\n"
    "By default LoG*: the frame is cut into windows and each window's LoG parameters are tuned\n"
    "against the physics rewards (QC, ER) by Bayesian optimisation; tuned parameters are cached\n"
    "per window position and reused on the next frames of a sequence. Lengths are in pixels.\n"
    "  IMAGE                 .npy (float16/32/64, uint8/16/32, int16/32), .tif/.tiff, .png or\n"
    "                        .emd (EMD 0.2 or Velox, HDF5)\n"
    "  --frames DIR_OR_GLOB  analyse a sequence with one cache instead of one IMAGE: the .npy,\n"
    "                        .tif, .tiff, .png and .emd files of a directory in name order, or\n"
    "                        the files a glob pattern matches (quote it)\n"
    "  --prior PRIOR.json    pixel_size_angstrom, nearest_neighbor_angstrom and\n"
    "                        column_density_per_nm2 or a lattice {a_angstrom, b_angstrom,\n"
    "                        gamma_deg, columns_per_cell}; optionally sublattices [{name,\n"
    "                        column_density_per_nm2, relative_brightness}], brightest first.\n"
    "                        Every result is checked against the lattice measured on the\n"
    "                        (first) frame: a pixel size, spacing or density that disagrees\n"
    "                        adds a warning (RESULT.json \"warnings\", and on stderr)\n"
    "  --prior auto          derive the prior from the (first) frame: the lattice measured on\n"
    "                        it gives the nearest-neighbour distance and the density; in pixels\n"
    "                        unless --pixel-size is given or the (first) frame's file is\n"
    "                        calibrated (TIFF resolution or ImageJ unit, EMD dims; said on\n"
    "                        stderr). So does a PRIOR.json with {\"auto\": true} or only\n"
    "                        pixel_size_angstrom\n"
    "  --pixel-size A        with an auto prior: angstrom per pixel (over the file's own)\n"
    "  --sublattice NAME     report only the columns of this sublattice of the prior\n"
    "  --strict              exit 3 when any result carries prior warnings (RESULT.json is\n"
    "                        still written; the warnings go to stderr)\n"
    "  --overlay OUT.png     draw the atoms on the frame, with a legend, a scale bar (when the\n"
    "                        pixel size is known), the frame number and the window grid\n"
    "                        coloured by cache state; with --frames a directory that receives\n"
    "                        one STEM.png per frame\n"
    "  --window PX           window side; 0 = the whole frame is one window (default 256)\n"
    "  --stride PX           distance between window starts, 1..window (default: the window,\n"
    "                        no overlap)\n"
    "  --evals N             objective evaluations per tuned window, 1..10000 (default 50)\n"
    "  --seed S              optimiser seed >= 0; a seed reproduces the atoms (default 0)\n"
    "  --choose RULE         point of each window's Pareto front: euclidean (default, closest\n"
    "                        to QC = ER = 0), chebyshev (smallest max) or weights:WQ,WE\n"
    "                        (smallest WQ x QC + WE x ER); rewards normalised over the front\n"
    "  --objectives PAIR     what LoG* minimises: published (QC, ER; default) or lattice\n"
    "                        (misses, spurious: expected lattice sites without a detection,\n"
    "                        detections the measured lattice does not support); its fronts\n"
    "                        are a real trade-off (docs/science.md)\n"
    "  --num-sigma N         LoG scales from min_sigma to max_sigma, 1..64 (default 10)\n"
    "  --refine MODE         sub-pixel positions: paraboloid (default), gaussian (a 2-D Gaussian\n"
    "                        per column: adds x_err, y_err, amplitude, intensity, sigma_x,\n"
    "                        sigma_y, rotation and, when its fit failed, fit_status to each\n"
    "                        atom; slower) or none\n"
    "  --no-refine           --refine none: pixel-centre positions as blob_log gives them\n"
    "  --drift-tolerance X   re-tune a cached window when its QC or ER moves by more than X\n"
    "                        from its value at tuning time, X > 0 (default 0.1)\n"
    "  --fixed a,b,n,t,o     no tuning: one LoG run over the whole frame with min_sigma,\n"
    "                        max_sigma (px), num_sigma, threshold, overlap (IMAGE only)\n"
    "  --normalize M         minmax (default) or percentile\n"
    "  --threads N           worker threads; 0 = one per core (default 0)\n"
    "  --truth ATOMS.csv     true positions (CSV with x and y columns, e.g. synth's atoms.csv):\n"
    "                        adds precision, recall, F1 and RMS error (IMAGE only)\n"
    "  --match-radius PX     matching distance for --truth (default 0.3 x nearest-neighbour\n"
    "                        distance)\n"
    "  --gmm                 also find amorphous regions (Gaussian mixture on lattice-difference\n"
    "                        patches, tuned by region rewards): per atom amorphous and\n"
    "                        posterior, regions in angstrom, the GMM parameters and their front;\n"
    "                        the overlay colours amorphous atoms and outlines the regions\n"
    "                        (IMAGE only, not with --fixed)\n"
    "  --amorphous-mask M.png  with --gmm: write the regions as an 8-bit PNG of the frame's\n"
    "                        size, 255 = amorphous\n"
    "  --server ADDR         analyse through logstard at host:port instead of in process (same\n"
    "                        atoms: the session gets these settings); with --tls, --tls-ca F,\n"
    "                        --tls-cert F --tls-key F, --token T or --token-file F\n"
    "Times are milliseconds. With --frames, the per-frame and summary times are the analyser's\n"
    "(normalisation, windows, merging), without loading, so that the cache's effect shows.\n"
    "Exit codes: 0 done, 1 failed (the message names the problem), 2 usage error, 3 done but\n"
    "--strict and a result carries prior warnings.\n";

// `--strict` and a result with prior warnings (commands.h lists the codes).
constexpr int kExitPriorWarnings = 3;

// Options that only LoG* reads: with --fixed they would be silently ignored.
const char* const kLogStarOnlyFlags[] = {
    "window",          "stride", "evals",      "seed",       "choose", "num-sigma", "no-refine",
    "drift-tolerance", "frames", "objectives", "sublattice", "strict", "refine"};

absl::StatusOr<LogOptions> ParseFixed(const std::string& text) {
  std::vector<std::string> parts = absl::StrSplit(text, ',');
  if (parts.size() != 5) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--fixed needs 5 comma-separated values min_sigma,max_sigma,num_sigma,threshold,overlap; "
        "got '",
        text, "'"));
  }
  double v[5];
  static const char* const kNames[5] = {"min_sigma", "max_sigma", "num_sigma", "threshold",
                                        "overlap"};
  for (int i = 0; i < 5; ++i) {
    if (!absl::SimpleAtod(parts[i], &v[i]) || !std::isfinite(v[i])) {
      return absl::InvalidArgumentError(
          absl::StrCat("--fixed: ", kNames[i], " must be a number, got '", parts[i], "'"));
    }
  }
  if (v[2] != std::floor(v[2])) {
    return absl::InvalidArgumentError(
        absl::StrCat("--fixed: num_sigma must be an integer, got ", parts[2]));
  }
  LogOptions o;
  o.scale.min_sigma = v[0];
  o.scale.max_sigma = v[1];
  o.scale.num_sigma = static_cast<int>(std::clamp(v[2], -1.0, 1e6));
  o.detect.threshold = v[3];
  o.detect.overlap = v[4];
  if (absl::Status s = o.Validate(); !s.ok()) {
    return absl::InvalidArgumentError(absl::StrCat("--fixed: ", s.message()));
  }
  return o;
}

// --choose euclidean|chebyshev|weights:WQ,WE into `o`; returns the rule's name.
absl::StatusOr<std::string> ParseChoose(const std::string& text, LogStarOptions& o) {
  if (text == "euclidean") {
    o.choice = FrontChoiceRule::kEuclidean;
  } else if (text == "chebyshev") {
    o.choice = FrontChoiceRule::kChebyshev;
  } else if (absl::StartsWith(text, "weights:")) {
    std::vector<std::string> parts = absl::StrSplit(text.substr(8), ',');
    double w[2] = {0.0, 0.0};
    if (parts.size() != 2 || !absl::SimpleAtod(parts[0], &w[0]) ||
        !absl::SimpleAtod(parts[1], &w[1]) || !std::isfinite(w[0]) || !std::isfinite(w[1]) ||
        w[0] < 0 || w[1] < 0 || w[0] + w[1] <= 0) {
      return absl::InvalidArgumentError(absl::StrCat(
          "--choose weights:WQ,WE needs two finite weights >= 0, not both 0; got '", text, "'"));
    }
    o.choice = FrontChoiceRule::kWeights;
    o.choice_weights = {w[0], w[1]};
    return std::string("weights");
  } else {
    return absl::InvalidArgumentError(
        absl::StrCat("--choose must be euclidean, chebyshev or weights:WQ,WE; got '", text, "'"));
  }
  return text;
}

// The LoG* options from the flags, every bad value naming its flag; also
// fills `parameters` with what RESULT.json reports of them.
absl::StatusOr<AnalyzerOptions> ParseAnalyzerFlags(const Flags& flags,
                                                   const NormalizeOptions& normalize,
                                                   Json& parameters) {
  AnalyzerOptions o;
  o.normalize = normalize;
  absl::StatusOr<int> window = WindowFlag(flags, 256);
  if (!window.ok()) return window.status();
  o.window = *window;
  o.stride = o.window;
  if (flags.Has("stride")) {
    if (o.window == 0) {
      return absl::InvalidArgumentError("--stride needs --window > 0 (0 is one window)");
    }
    auto stride = flags.Int("stride", o.window);
    if (!stride.ok()) return stride.status();
    if (*stride < 1 || *stride > o.window) {
      return absl::InvalidArgumentError(
          absl::StrCat("--stride must be in [1, --window = ", o.window, "] px, got ", *stride));
    }
    o.stride = static_cast<int>(*stride);
  }
  auto evals = IntInRange(flags, "evals", 50, 1, 10000);
  if (!evals.ok()) return evals.status();
  auto seed = flags.Int("seed", 0);
  if (!seed.ok()) return seed.status();
  if (*seed < 0)
    return absl::InvalidArgumentError(absl::StrCat("--seed must be >= 0, got ", *seed));
  auto num_sigma = IntInRange(flags, "num-sigma", 10, 1, 64);
  if (!num_sigma.ok()) return num_sigma.status();
  auto drift = flags.Double("drift-tolerance", o.drift_tolerance);
  if (!drift.ok()) return drift.status();
  if (*drift <= 0) {
    return absl::InvalidArgumentError(absl::StrCat("--drift-tolerance must be > 0, got ", *drift));
  }
  auto choose = ParseChoose(flags.Get("choose").value_or("euclidean"), o.logstar);
  if (!choose.ok()) return choose.status();
  // Unset: the engine's default pair (LogStarOptions::objectives).
  const std::string objectives =
      flags.Get("objectives")
          .value_or(o.logstar.objectives == ObjectivePair::kLattice ? "lattice" : "published");
  if (objectives == "lattice") {
    o.logstar.objectives = ObjectivePair::kLattice;
  } else if (objectives == "published") {
    o.logstar.objectives = ObjectivePair::kPublished;
  } else {
    return absl::InvalidArgumentError(
        absl::StrCat("--objectives must be published or lattice; got '", objectives, "'"));
  }

  o.drift_tolerance = *drift;
  o.logstar.num_sigma = static_cast<int>(*num_sigma);
  o.logstar.optimizer.num_evaluations = static_cast<int>(*evals);
  // The Sobol design cannot be longer than the whole budget.
  o.logstar.optimizer.num_initial =
      std::min(o.logstar.optimizer.num_initial, o.logstar.optimizer.num_evaluations);
  o.logstar.optimizer.seed = static_cast<uint64_t>(*seed);
  if (flags.Has("refine") && flags.Has("no-refine")) {
    return absl::InvalidArgumentError("--refine and --no-refine cannot be used together");
  }
  if (flags.Has("no-refine")) {
    o.logstar.refine_mode = RefineMode::kNone;
  } else if (const std::optional<std::string> refine = flags.Get("refine")) {
    auto mode = RefineModeFromName(*refine);
    if (!mode.ok()) return absl::InvalidArgumentError(absl::StrCat("--", mode.status().message()));
    o.logstar.refine_mode = *mode;
  }
  o.sublattice = flags.Get("sublattice").value_or("");
  if (absl::Status s = o.Validate(); !s.ok()) return s;

  parameters = {{"source", "logstar"},
                {"window", o.window},
                {"stride", o.stride},
                {"evaluations_per_window", o.logstar.optimizer.num_evaluations},
                {"seed", o.logstar.optimizer.seed},
                {"choose", *choose},
                {"objectives", objectives}};
  if (o.logstar.choice == FrontChoiceRule::kWeights) {
    parameters["choice_weights"] = {o.logstar.choice_weights[0], o.logstar.choice_weights[1]};
  }
  parameters["num_sigma"] = o.logstar.num_sigma;
  parameters["refine_positions"] = o.logstar.refine_mode != RefineMode::kNone;
  parameters["refine"] = RefineModeName(o.logstar.refine_mode);
  parameters["drift_tolerance"] = o.drift_tolerance;
  if (!o.sublattice.empty()) parameters["sublattice"] = o.sublattice;
  return o;
}

// Reads the x and y columns of a CSV with a header row (as `logstar synth`
// writes atoms.csv: x = column, y = row, pixels).
absl::StatusOr<std::vector<PointXY>> ReadTruthCsv(const std::string& path) {
  auto text = ReadTextFile(path);
  if (!text.ok()) return text.status();
  std::vector<PointXY> points;
  int x_col = -1, y_col = -1;
  int line_no = 0;
  for (absl::string_view line : absl::StrSplit(*text, '\n', absl::SkipWhitespace())) {
    ++line_no;
    std::vector<absl::string_view> cells = absl::StrSplit(line, ',');
    if (x_col < 0) {
      for (size_t i = 0; i < cells.size(); ++i) {
        if (absl::StripAsciiWhitespace(cells[i]) == "x") x_col = static_cast<int>(i);
        if (absl::StripAsciiWhitespace(cells[i]) == "y") y_col = static_cast<int>(i);
      }
      if (x_col < 0 || y_col < 0) {
        return absl::InvalidArgumentError(
            absl::StrCat(path, ": the header row needs columns named x and y"));
      }
      continue;
    }
    PointXY p;
    if (static_cast<int>(cells.size()) <= std::max(x_col, y_col) ||
        !absl::SimpleAtod(absl::StripAsciiWhitespace(cells[x_col]), &p.x) ||
        !absl::SimpleAtod(absl::StripAsciiWhitespace(cells[y_col]), &p.y) || !std::isfinite(p.x) ||
        !std::isfinite(p.y)) {
      return absl::InvalidArgumentError(
          absl::StrCat(path, ": line ", line_no, ": x and y must be finite numbers"));
    }
    points.push_back(p);
  }
  if (x_col < 0) return absl::InvalidArgumentError(absl::StrCat(path, ": empty file"));
  return points;
}

// Everything the analyze modes share, parsed and checked before any frame is read.
struct AnalyzeSetup {
  std::string out_path;
  std::optional<std::string> overlay_path;
  // A given prior (resolved), or auto: derived from the first frame.
  server::PriorSetting prior;
  NormalizeOptions normalize;
  Json normalization;  // as RESULT.json reports it
  Json parameters;     // idem
  std::optional<std::string> truth_path;
  std::vector<PointXY> truth;
  bool gmm = false;
  std::optional<std::string> amorphous_mask_path;
  std::optional<double> match_radius;  // --match-radius; else 0.3 x the prior's spacing
  bool strict = false;
  ExecutionContext* context = nullptr;
  Clock::time_point start;
};

// The keys every RESULT.json starts with; `image` is null with --frames.
// `prior`: the one analysed with (derived with --prior auto).
Json ResultHeader(const AnalyzeSetup& s, const server::PriorInUse& prior, Json image) {
  Json r;
  r["logstar_version"] = LOGSTAR_VERSION;
  if (!image.is_null()) r["image"] = std::move(image);
  r["coordinates"] = kCoordinates;
  r["prior"] = PriorUsedToJson(prior);
  r["normalization"] = s.normalization;
  r["parameters"] = s.parameters;
  return r;
}

// With --truth, adds the accuracy block and returns the console's account of
// it. Without --match-radius the radius is 0.3 x the nearest-neighbour
// spacing of `prior` (the one analysed with).
absl::StatusOr<std::string> AddAccuracy(const AnalyzeSetup& s, const PhysicsPrior& prior,
                                        absl::Span<const PointXY> points, Json& result) {
  if (!s.truth_path) return std::string();
  const double radius = s.match_radius.value_or(0.3 * prior.NearestNeighborPx());
  auto accuracy = MatchToTruth(points, s.truth, radius);
  if (!accuracy.ok()) return accuracy.status();
  result["accuracy"] = {{"truth", *s.truth_path},
                        {"match_radius_px", radius},
                        {"num_true", accuracy->num_true},
                        {"true_positives", accuracy->true_positives},
                        {"precision", accuracy->precision},
                        {"recall", accuracy->recall},
                        {"f1", accuracy->f1},
                        {"rms_px", accuracy->rms_px}};
  return absl::StrFormat("; vs truth: precision %.3f, recall %.3f, F1 %.3f", accuracy->precision,
                         accuracy->recall, accuracy->f1);
}

absl::Status WriteResult(const AnalyzeSetup& s, const Json& result) {
  if (absl::Status st = EnsureParentDir(s.out_path); !st.ok()) return st;
  return WriteTextFile(s.out_path, result.dump(1) + "\n");
}

// The pre-LoG* path, kept as it was: one DetectBlobsLog run on the whole frame.
int AnalyzeFixed(const AnalyzeSetup& s, const std::string& image_path,
                 const LogOptions& log_options) {
  auto t0 = Clock::now();
  absl::StatusOr<cv::Mat> raw = LoadFrameFile(image_path);
  if (!raw.ok()) return Fail(raw.status());
  const double load_ms = MsSince(t0);

  t0 = Clock::now();
  absl::StatusOr<cv::Mat> frame = NormalizeFrame(*raw, s.normalize);
  if (!frame.ok())
    return Fail(
        absl::InvalidArgumentError(absl::StrCat(image_path, ": ", frame.status().message())));
  const double normalize_ms = MsSince(t0);

  t0 = Clock::now();
  absl::StatusOr<std::vector<Blob>> blobs = DetectBlobsLog(*frame, log_options, s.context);
  if (!blobs.ok()) return Fail(blobs.status());
  const double log_ms = MsSince(t0);

  t0 = Clock::now();
  std::vector<PointXY> points;
  points.reserve(blobs->size());
  for (const Blob& b : *blobs) points.push_back({b.x, b.y});
  const PixelRegion whole{0, 0, frame->cols, frame->rows};
  absl::StatusOr<Rewards> rewards = ComputeRewards(points, whole, s.prior.prior, RewardOptions{});
  if (!rewards.ok()) return Fail(rewards.status());
  const double rewards_ms = MsSince(t0);

  double overlay_ms = 0.0;
  if (s.overlay_path) {
    t0 = Clock::now();
    // One LoG run over the whole frame: no windows to outline.
    if (absl::Status st = WriteOverlay(*frame, *blobs, *s.overlay_path,
                                       AnnotatedOverlay(-1, s.prior.prior.pixel_size_angstrom, {}));
        !st.ok()) {
      return Fail(st);
    }
    overlay_ms = MsSince(t0);
  }

  Json result = ResultHeader(s, {.prior = s.prior.prior}, ImageToJson(image_path, *raw));
  Json atoms = Json::array();
  for (const Blob& b : *blobs) atoms.push_back(AtomToJson(b.x, b.y, b.sigma, b.response));
  result["num_atoms"] = blobs->size();
  result["atoms"] = std::move(atoms);
  result["rewards"] = RewardsToJson(*rewards);
  absl::StatusOr<std::string> vs_truth = AddAccuracy(s, s.prior.prior, points, result);
  if (!vs_truth.ok()) return Fail(vs_truth.status());
  result["timings_ms"] = {{"load", load_ms},       {"normalize", normalize_ms},
                          {"log", log_ms},         {"rewards", rewards_ms},
                          {"overlay", overlay_ms}, {"total", MsSince(s.start)}};
  if (absl::Status st = WriteResult(s, result); !st.ok()) return Fail(st);

  std::printf(
      "analyze: %s %dx%d: %zu atoms (expected %.1f), QC %.3f, ER %.3f%s; LoG %.1f ms, total "
      "%.1f ms -> %s\n",
      image_path.c_str(), raw->cols, raw->rows, blobs->size(), rewards->num_expected, rewards->qc,
      rewards->er, vs_truth->c_str(), log_ms, MsSince(s.start), s.out_path.c_str());
  return 0;
}

// What one frame's analysis gives: the engine's result and the prior it
// ran with (derived from the first frame with --prior auto).
struct FrameOutcome {
  FrameAnalysis analysis;
  server::PriorInUse prior;
};

// The in-process analyzer or a stream through logstard: one frame in, its
// analysis out, the cache carried from call to call.
using FrameAnalyzer = std::function<absl::StatusOr<FrameOutcome>(const cv::Mat&)>;

struct AnalyzedFrame {
  cv::Mat raw;
  FrameAnalysis analysis;
  server::PriorInUse prior;
  double load_ms = 0.0;
  double overlay_ms = 0.0;
};

// The prior's warnings and the sublattice note on stderr, each line
// starting with `where` (the file).
void PrintChecks(const FrameAnalysis& a, const std::string& where) {
  for (const PriorWarning& w : a.warnings) {
    std::fprintf(stderr, "logstar: warning: %s: prior %s: %s\n", where.c_str(), w.field.c_str(),
                 w.message.c_str());
  }
  if (!a.sublattice_note.empty()) {
    std::fprintf(stderr, "logstar: note: %s: %s\n", where.c_str(), a.sublattice_note.c_str());
  }
}

// The pixel size an overlay's scale bar uses: none in pixel units.
double OverlayPixelSize(const server::PriorInUse& prior) {
  return prior.pixel_units ? 0.0 : prior.prior.pixel_size_angstrom;
}

// Loads one frame, runs the (shared, cache-holding) analyzer on it and
// draws the overlay when `overlay_path` is given, numbered `frame_number`
// (1-based in a sequence; -1 for one IMAGE).
absl::StatusOr<AnalyzedFrame> LoadAndAnalyze(const AnalyzeSetup& s, const std::string& path,
                                             const FrameAnalyzer& analyzer,
                                             const std::optional<std::string>& overlay_path,
                                             int64_t frame_number) {
  AnalyzedFrame f;
  auto t0 = Clock::now();
  absl::StatusOr<cv::Mat> raw = LoadFrameFile(path);
  if (!raw.ok()) return raw.status();
  f.raw = *std::move(raw);
  f.load_ms = MsSince(t0);
  absl::StatusOr<FrameOutcome> analysis = analyzer(f.raw);
  if (!analysis.ok()) {
    // Engine messages do not know the file; with a sequence the reader needs it.
    return absl::Status(analysis.status().code(),
                        absl::StrCat(path, ": ", analysis.status().message()));
  }
  f.analysis = std::move(analysis->analysis);
  f.prior = std::move(analysis->prior);
  if (overlay_path) {
    t0 = Clock::now();
    // The analyzer normalises internally; the picture needs the same frame.
    absl::StatusOr<cv::Mat> normalized = NormalizeFrame(f.raw, s.normalize);
    if (!normalized.ok()) return normalized.status();
    std::vector<Blob> blobs;
    blobs.reserve(f.analysis.atoms.size());
    SublatticeMarks sublattices;
    for (const Atom& a : f.analysis.atoms) {
      blobs.push_back({.x = a.x, .y = a.y, .sigma = a.sigma, .response = a.response});
      if (!f.prior.prior.sublattices.empty()) sublattices.labels.push_back(a.sublattice);
    }
    for (const SublatticePrior& p : f.prior.prior.sublattices) sublattices.names.push_back(p.name);
    OverlayOptions annotations =
        AnnotatedOverlay(frame_number, OverlayPixelSize(f.prior), f.analysis.windows);
    annotations.fits = OverlayFits(f.analysis.atoms);
    if (absl::Status st = WriteOverlay(*normalized, blobs, AmorphousMarks{}, *overlay_path,
                                       sublattices, annotations);
        !st.ok()) {
      return st;
    }
    f.overlay_ms = MsSince(t0);
  }
  return f;
}

int AnalyzeImage(const AnalyzeSetup& s, const std::string& image_path,
                 const FrameAnalyzer& analyzer) {
  // With --gmm the overlay also shows the regions; the stage draws it.
  absl::StatusOr<AnalyzedFrame> f =
      LoadAndAnalyze(s, image_path, analyzer, s.gmm ? std::nullopt : s.overlay_path, -1);
  if (!f.ok()) return Fail(f.status());
  const FrameAnalysis& a = f->analysis;
  std::vector<PointXY> points;
  points.reserve(a.atoms.size());
  for (const Atom& atom : a.atoms) points.push_back({atom.x, atom.y});

  Json result = ResultHeader(s, f->prior, ImageToJson(image_path, f->raw));
  AddFrameAnalysis(a, f->prior.prior, f->prior.pixel_units, result);
  absl::StatusOr<std::string> vs_truth = AddAccuracy(s, f->prior.prior, points, result);
  if (!vs_truth.ok()) return Fail(vs_truth.status());
  AmorphousReport amorphous;
  if (s.gmm) {
    absl::StatusOr<AmorphousReport> r =
        AddAmorphous({.raw = f->raw,
                      .normalize = s.normalize,
                      .prior = f->prior.prior,
                      .context = s.context,
                      .mask_path = s.amorphous_mask_path,
                      .overlay_path = s.overlay_path,
                      .overlay = AnnotatedOverlay(-1, OverlayPixelSize(f->prior), a.windows)},
                     a.atoms, result);
    if (!r.ok()) return Fail(r.status());
    amorphous = *std::move(r);
    *vs_truth += amorphous.console;
  }
  result["timings_ms"] =
      AnalysisTimings(f->load_ms, a, f->overlay_ms + amorphous.overlay_ms, MsSince(s.start));
  if (s.gmm) result["timings_ms"]["amorphous"] = amorphous.stage_ms;
  if (absl::Status st = WriteResult(s, result); !st.ok()) return Fail(st);

  std::printf(
      "analyze: %s %dx%d: %zu atoms (expected %.1f), QC %.3f, ER %.3f%s; %zu windows (%d hits, "
      "%d misses, %d re-tuned); LoG* %.1f ms, total %.1f ms -> %s\n",
      image_path.c_str(), a.width, a.height, a.atoms.size(), a.rewards.num_expected, a.rewards.qc,
      a.rewards.er, vs_truth->c_str(), a.windows.size(), a.hits, a.misses, a.retunes, a.total_ms,
      MsSince(s.start), s.out_path.c_str());
  PrintChecks(a, image_path);
  return s.strict && !a.warnings.empty() ? kExitPriorWarnings : 0;
}

// One PNG per frame in `dir`, named after the frame; a stem seen before
// (a.npy and a.png) keeps its extension so that no picture overwrites another.
std::vector<std::string> OverlayPaths(const std::vector<std::string>& frames,
                                      const std::string& dir) {
  std::set<std::string> used;
  std::vector<std::string> out;
  for (const std::string& frame : frames) {
    const std::filesystem::path p(frame);
    std::string name = p.stem().string() + ".png";
    if (!used.insert(name).second) name = p.filename().string() + ".png";
    used.insert(name);
    out.push_back((std::filesystem::path(dir) / name).string());
  }
  return out;
}

int AnalyzeFrames(const AnalyzeSetup& s, const std::string& spec, const FrameAnalyzer& analyzer) {
  absl::StatusOr<std::vector<std::string>> paths = ListFrames(spec);
  if (!paths.ok()) return Fail(paths.status());
  std::vector<std::string> overlays;
  if (s.overlay_path) overlays = OverlayPaths(*paths, *s.overlay_path);

  Json frames = Json::array();
  server::PriorInUse prior;  // the first frame's: with auto, derived from it
  std::vector<std::string> last_checks;
  int with_warnings = 0;
  int hits = 0, misses = 0, retunes = 0;
  double total_ms = 0.0, first_ms = 0.0;
  const int n = static_cast<int>(paths->size());
  for (int i = 0; i < n; ++i) {
    const std::string& path = (*paths)[i];
    const auto t0 = Clock::now();
    std::optional<std::string> overlay;
    if (s.overlay_path) overlay = overlays[i];
    absl::StatusOr<AnalyzedFrame> f = LoadAndAnalyze(s, path, analyzer, overlay, i + 1);
    if (!f.ok()) return Fail(f.status());
    const FrameAnalysis& a = f->analysis;
    if (i == 0) prior = f->prior;
    Json frame = {{"path", path}, {"width", a.width}, {"height", a.height}};
    AddFrameAnalysis(a, f->prior.prior, f->prior.pixel_units, frame);
    frame["timings_ms"] = AnalysisTimings(f->load_ms, a, f->overlay_ms, MsSince(t0));
    frames.push_back(std::move(frame));
    hits += a.hits;
    misses += a.misses;
    retunes += a.retunes;
    total_ms += a.total_ms;
    if (i == 0) first_ms = a.total_ms;
    std::printf(
        "frame %d/%d %s: %zu atoms, QC %.3f, ER %.3f; %zu windows: %d hits, %d misses, %d "
        "re-tuned; %.1f ms\n",
        i + 1, n, path.c_str(), a.atoms.size(), a.rewards.qc, a.rewards.er, a.windows.size(),
        a.hits, a.misses, a.retunes, a.total_ms);
    // A stream's warnings repeat on every frame until the cache is emptied,
    // and a sublattice note mostly does: printed when they change.
    std::vector<std::string> checks;
    for (const PriorWarning& w : a.warnings) checks.push_back(w.message);
    checks.push_back(a.sublattice_note);
    if (checks != last_checks) PrintChecks(a, path);
    last_checks = std::move(checks);
    with_warnings += a.warnings.empty() ? 0 : 1;
  }

  Json result = ResultHeader(s, prior, Json());
  result["frames"] = std::move(frames);
  Json summary = {{"frames", n},          {"hits", hits},
                  {"misses", misses},     {"retunes", retunes},
                  {"total_ms", total_ms}, {"mean_ms_per_frame", total_ms / n}};
  // Frame 1 tunes every window; the later ones show what the cache saves.
  summary["mean_ms_after_first"] = n > 1 ? Json((total_ms - first_ms) / (n - 1)) : Json();
  summary["frames_with_warnings"] = with_warnings;
  result["summary"] = summary;
  if (absl::Status st = WriteResult(s, result); !st.ok()) return Fail(st);
  std::printf(
      "analyze: %d frames, %d hits, %d misses, %d re-tuned; %.1f ms in all, %.1f ms per frame "
      "(%.1f after the first) -> %s\n",
      n, hits, misses, retunes, total_ms, total_ms / n,
      n > 1 ? (total_ms - first_ms) / (n - 1) : total_ms, s.out_path.c_str());
  return s.strict && with_warnings > 0 ? kExitPriorWarnings : 0;
}

// What the flags ask for, decided before any file is read.
struct AnalyzeRequest {
  std::optional<std::string> frames;  // --frames; else `image`
  std::string image;
  std::string prior_path;
  std::optional<std::string> fixed;
  std::optional<ClientFlags> remote;  // --server and its client flags
  AnalyzerOptions analyzer_options;   // LoG* (not with --fixed)
  int64_t threads = 0;
  std::optional<double> pixel_size;  // --pixel-size, for an auto prior
};

// IMAGE or --frames, --prior and --out.
absl::Status CheckInputFlags(const Flags& flags, AnalyzeSetup& s, AnalyzeRequest& r) {
  r.frames = flags.Get("frames");
  if (r.frames && !flags.positional().empty()) {
    return absl::InvalidArgumentError("give one IMAGE or --frames, not both");
  }
  if (!r.frames && flags.positional().size() != 1) {
    return absl::InvalidArgumentError("give exactly one IMAGE (or --frames DIR_OR_GLOB)");
  }
  if (!r.frames) r.image = flags.positional()[0];
  const std::optional<std::string> prior_path = flags.Get("prior");
  const std::optional<std::string> out_path = flags.Get("out");
  if (!prior_path) return absl::InvalidArgumentError("--prior PRIOR.json (or auto) is required");
  if (!out_path) return absl::InvalidArgumentError("--out RESULT.json is required");
  r.prior_path = *prior_path;
  s.out_path = *out_path;
  s.overlay_path = flags.Get("overlay");
  s.truth_path = flags.Get("truth");
  return absl::OkStatus();
}

// --normalize minmax|percentile, and how RESULT.json reports it.
absl::Status ParseNormalizeFlag(const Flags& flags, AnalyzeSetup& s) {
  const std::string name = flags.Get("normalize").value_or("minmax");
  if (name == "percentile") {
    s.normalize.method = NormalizeOptions::Method::kPercentile;
  } else if (name != "minmax") {
    return absl::InvalidArgumentError(
        absl::StrCat("--normalize must be minmax or percentile, got '", name, "'"));
  }
  s.normalization = {{"method", name}};
  if (s.normalize.method == NormalizeOptions::Method::kPercentile) {
    s.normalization["low_percentile"] = s.normalize.low_percentile;
    s.normalization["high_percentile"] = s.normalize.high_percentile;
  }
  return absl::OkStatus();
}

// The modes' combinations: --server, --fixed, --frames, --truth, --gmm.
absl::Status CheckModeFlags(const Flags& flags, AnalyzeSetup& s, AnalyzeRequest& r) {
  r.fixed = flags.Get("fixed");
  if (flags.Has("server")) {
    if (r.fixed)
      return absl::InvalidArgumentError("--fixed runs in process; it cannot go with --server");
    if (flags.Has("threads")) {
      return absl::InvalidArgumentError(
          "--threads is the daemon's setting; it cannot go with --server");
    }
    r.remote = ClientFlagsFrom(flags);
  } else {
    for (const char* name :
         {"tls", "tls-ca", "tls-cert", "tls-key", "token", "token-file", "connect-timeout"}) {
      if (flags.Has(name))
        return absl::InvalidArgumentError(absl::StrCat("--", name, " needs --server"));
    }
  }
  if (r.fixed) {
    for (const char* name : kLogStarOnlyFlags) {
      if (flags.Has(name)) {
        return absl::InvalidArgumentError(
            absl::StrCat("--", name, " is a LoG* option; it cannot go with --fixed"));
      }
    }
  }
  if (r.frames && s.truth_path) {
    return absl::InvalidArgumentError("--truth checks one IMAGE; it cannot go with --frames");
  }
  s.gmm = flags.Has("gmm");
  s.amorphous_mask_path = flags.Get("amorphous-mask");
  if (s.amorphous_mask_path && !s.gmm) {
    return absl::InvalidArgumentError("--amorphous-mask needs --gmm");
  }
  if (s.gmm && (r.fixed || r.frames)) {
    return absl::InvalidArgumentError(
        "--gmm analyses one IMAGE with LoG*; it cannot go with --fixed or --frames");
  }
  if (flags.Has("match-radius") && !s.truth_path) {
    return absl::InvalidArgumentError("--match-radius needs --truth");
  }
  return absl::OkStatus();
}

// Phase 1: everything the flags say, each error a usage error naming its flag.
absl::Status ParseAnalyzeFlags(const Flags& flags, AnalyzeSetup& s, AnalyzeRequest& r) {
  if (absl::Status st = CheckInputFlags(flags, s, r); !st.ok()) return st;
  auto threads = flags.Int("threads", 0);
  if (!threads.ok()) return threads.status();
  r.threads = *threads;
  if (absl::Status st = ParseNormalizeFlag(flags, s); !st.ok()) return st;
  if (absl::Status st = CheckModeFlags(flags, s, r); !st.ok()) return st;
  auto match_radius = flags.Double("match-radius", 0.0);
  if (!match_radius.ok()) return match_radius.status();
  if (flags.Has("match-radius")) s.match_radius = *match_radius;
  if (flags.Has("pixel-size")) {
    auto pixel = flags.Double("pixel-size", 0.0);
    if (!pixel.ok()) return pixel.status();
    if (!(*pixel > 0.0)) {
      return absl::InvalidArgumentError(absl::StrCat("--pixel-size must be > 0, got ", *pixel));
    }
    r.pixel_size = *pixel;
  }
  if (r.prior_path == "auto" && r.fixed) {
    return absl::InvalidArgumentError(
        "--prior auto derives the prior for LoG*; --fixed needs a PRIOR.json");
  }
  s.strict = flags.Has("strict");
  if (!r.fixed) {
    auto parsed = ParseAnalyzerFlags(flags, s.normalize, s.parameters);
    if (!parsed.ok()) return parsed.status();
    r.analyzer_options = *parsed;
  }
  return absl::OkStatus();
}

// Phase 2: the prior, the truth and the threads; errors exit 1.
absl::Status LoadAnalyzeInputs(const AnalyzeRequest& r, AnalyzeSetup& s,
                               std::unique_ptr<ExecutionContext>& context) {
  if (r.prior_path == "auto") {
    s.prior.derive = true;
  } else {
    absl::StatusOr<server::PriorSetting> prior = ReadPriorFile(r.prior_path);
    if (!prior.ok()) return prior.status();
    s.prior = *std::move(prior);
  }
  if (r.pixel_size) {
    if (!s.prior.derive) {
      return absl::InvalidArgumentError(absl::StrCat("--pixel-size goes with an auto prior; ",
                                                     r.prior_path, " gives the pixel size"));
    }
    s.prior.prior.pixel_size_angstrom = *r.pixel_size;
  }
  if (s.prior.derive && !(s.prior.prior.pixel_size_angstrom > 0.0)) {
    // The (first) frame's file may carry it (TIFF, EMD): said on stderr.
    std::string first = r.image;
    if (r.frames) {
      absl::StatusOr<std::vector<std::string>> paths = ListFrames(*r.frames);
      first = paths.ok() ? paths->front() : "";
    }
    if (!first.empty()) {
      if (std::optional<double> pixel = PixelSizeFromFile(first)) {
        s.prior.prior.pixel_size_angstrom = *pixel;
      }
    }
  }
  if (s.prior.derive && r.fixed) {
    return absl::InvalidArgumentError(absl::StrCat(
        r.prior_path, " is an auto prior, which is derived for LoG*; --fixed needs a given one"));
  }
  if (s.prior.derive && !r.analyzer_options.sublattice.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("--sublattice ", r.analyzer_options.sublattice,
                     " needs a prior with sublattices; an auto prior derives none"));
  }
  if (s.truth_path) {
    // Read before the analysis, so that a bad file costs no tuning.
    auto truth = ReadTruthCsv(*s.truth_path);
    if (!truth.ok()) return truth.status();
    s.truth = *std::move(truth);
  }
  auto made = ExecutionContext::Create({.num_threads = static_cast<int>(r.threads)});
  if (!made.ok()) return made.status();
  context = *std::move(made);
  s.context = context.get();
  return absl::OkStatus();
}

int RunFixed(AnalyzeSetup& s, const AnalyzeRequest& r) {
  auto log_options = ParseFixed(*r.fixed);
  if (!log_options.ok()) return Fail(log_options.status());
  s.parameters = LogParametersToJson({.min_sigma = log_options->scale.min_sigma,
                                      .max_sigma = log_options->scale.max_sigma,
                                      .num_sigma = log_options->scale.num_sigma,
                                      .threshold = log_options->detect.threshold,
                                      .overlap = log_options->detect.overlap},
                                     {{"source", "fixed"}});
  s.parameters["log_scale"] = log_options->scale.log_scale;
  s.parameters["exclude_border"] = log_options->scale.exclude_border;
  return AnalyzeFixed(s, r.image, *log_options);
}

// The image or the sequence through logstard: one stream, one session, so
// that with --frames the session's cache carries the tuned parameters as the
// local one does.
int RunThroughDaemon(const AnalyzeSetup& s, const AnalyzeRequest& r) {
  auto client_options = ClientOptionsFromFlags(*r.remote);
  if (!client_options.ok()) {
    return UsageError(std::string(client_options.status().message()), kAnalyzeUsage);
  }
  if (absl::Status st = CheckListening(*r.remote, *client_options); !st.ok()) return Fail(st);
  auto client = Client::Connect(*client_options);
  if (!client.ok()) return Fail(client.status());
  // The daemon derives an auto prior from the first frame as RunInProcess does.
  v1::SessionSettings settings = SettingsFromOptions(r.analyzer_options, s.prior);
  // Nothing dropped: `analyze --server` wants every frame's result.
  settings.set_overload_policy(v1::OVERLOAD_POLICY_BLOCK);
  auto stream = (*client)->OpenStream({.settings = settings, .max_in_flight = 1});
  if (!stream.ok()) return Fail(stream.status());
  uint64_t sequence = 0;
  FrameAnalyzer analyze = [&](const cv::Mat& raw) -> absl::StatusOr<FrameOutcome> {
    auto pixels = ImageToPixels(raw);
    if (!pixels.ok()) return pixels.status();
    v1::Frame frame;
    frame.set_sequence(++sequence);
    *frame.mutable_pixels() = *std::move(pixels);
    if (absl::Status st = (*stream)->Push(std::move(frame)); !st.ok()) return st;
    std::optional<StreamAnswer> answer = (*stream)->Read();
    if (!answer) return (*stream)->Finish();
    const v1::StreamResponse& a = answer->response;
    if (a.has_error()) {
      return absl::Status(static_cast<absl::StatusCode>(a.error().code()), a.error().message());
    }
    if (!a.has_result()) return absl::UnavailableError("logstard dropped the frame");
    return FrameOutcome{AnalysisFromResult(a.result()),
                        server::PriorUsedFromProto(a.result().prior_used())};
  };
  const int rc =
      r.frames ? AnalyzeFrames(s, *r.frames, analyze) : AnalyzeImage(s, r.image, analyze);
  if (absl::Status st = (*stream)->Finish(); !st.ok() && rc == 0) return Fail(st);
  return rc;
}

// In process: one analyzer for the whole run, so that with --frames its
// cache carries the tuned parameters from frame to frame. An auto prior is
// derived from the first frame as the daemon derives it
// (server::DeriveFramePrior), and kept for the run.
int RunInProcess(const AnalyzeSetup& s, const AnalyzeRequest& r) {
  std::unique_ptr<LogStarAnalyzer> analyzer;
  server::PriorInUse used;
  if (!s.prior.derive) {
    // Made before the first frame is read, so that bad options cost nothing.
    auto made = LogStarAnalyzer::Create(r.analyzer_options, s.prior.prior);
    if (!made.ok()) return Fail(made.status());
    analyzer = *std::move(made);
    used.prior = s.prior.prior;
  }
  FrameAnalyzer analyze = [&](const cv::Mat& raw) -> absl::StatusOr<FrameOutcome> {
    if (analyzer == nullptr) {
      const double pixel = s.prior.prior.pixel_size_angstrom;
      absl::StatusOr<DerivedPrior> derived = server::DeriveFramePrior(
          raw, r.analyzer_options, pixel > 0.0 ? std::optional<double>(pixel) : std::nullopt,
          s.context, "--prior");
      if (!derived.ok()) return derived.status();
      used = {.prior = derived->prior, .derived = true, .pixel_units = !derived->pixel_size_known};
      // The CLI has no column width flag: never given.
      absl::StatusOr<AnalyzerOptions> options =
          server::OptionsForDerived(r.analyzer_options, *derived, /*column_sigma_given=*/false);
      if (!options.ok()) return options.status();
      auto made = LogStarAnalyzer::Create(*options, used.prior);
      if (!made.ok()) return made.status();
      analyzer = *std::move(made);
    }
    absl::StatusOr<FrameAnalysis> a = analyzer->Analyze(raw, s.context);
    if (!a.ok()) return a.status();
    return FrameOutcome{*std::move(a), used};
  };
  if (r.frames) return AnalyzeFrames(s, *r.frames, analyze);
  return AnalyzeImage(s, r.image, analyze);
}

}  // namespace

int RunAnalyze(const std::vector<std::string>& args) {
  auto flags =
      Flags::Parse(args,
                   With({"prior",           "out",    "overlay",        "fixed",      "normalize",
                         "threads",         "truth",  "match-radius",   "window",     "stride",
                         "evals",           "seed",   "choose",         "objectives", "num-sigma",
                         "drift-tolerance", "frames", "amorphous-mask", "pixel-size", "sublattice",
                         "refine"},
                        kClientFlagNames),
                   {"no-refine", "tls", "gmm", "strict"});
  if (!flags.ok()) return UsageError(std::string(flags.status().message()), kAnalyzeUsage);
  if (flags->help()) {
    std::fputs(kAnalyzeUsage, stdout);
    return 0;
  }
  AnalyzeSetup s;
  s.start = Clock::now();
  AnalyzeRequest r;
  if (absl::Status st = ParseAnalyzeFlags(*flags, s, r); !st.ok()) {
    return UsageError(std::string(st.message()), kAnalyzeUsage);
  }
  std::unique_ptr<ExecutionContext> context;
  if (absl::Status st = LoadAnalyzeInputs(r, s, context); !st.ok()) return Fail(st);
  if (r.fixed) return RunFixed(s, r);
  if (r.remote) return RunThroughDaemon(s, r);
  return RunInProcess(s, r);
}

}  // namespace logstar::cli
