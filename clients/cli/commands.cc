#include "clients/cli/commands.h"

#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <optional>
#include <set>
#include <sstream>

#include <nlohmann/json.hpp>

#include "absl/status/statusor.h"
#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "engine/accuracy.h"
#include "engine/context.h"
#include "engine/image_io.h"
#include "engine/log_detector.h"
#include "engine/normalize.h"
#include "engine/overlay.h"
#include "engine/physics_prior.h"
#include "engine/rewards.h"
#include "engine/synth.h"

namespace logstar::cli {
namespace {

using Json = nlohmann::ordered_json;
using Clock = std::chrono::steady_clock;

double MsSince(Clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
}

int Fail(const absl::Status& status) {
  std::fprintf(stderr, "logstar: error: %s\n", std::string(status.message()).c_str());
  return 1;
}

int UsageError(const std::string& message, const char* usage) {
  std::fprintf(stderr, "logstar: error: %s\n%s", message.c_str(), usage);
  return 2;
}

// --name value and --name=value options plus positional arguments. Every
// option takes a value; unknown options are usage errors.
class Flags {
 public:
  static absl::StatusOr<Flags> Parse(const std::vector<std::string>& args,
                                     const std::set<std::string>& known) {
    Flags flags;
    for (size_t i = 0; i < args.size(); ++i) {
      const std::string& a = args[i];
      if (a == "--help" || a == "-h") {
        flags.help_ = true;
        continue;
      }
      if (a.rfind("--", 0) != 0) {
        flags.positional_.push_back(a);
        continue;
      }
      std::string name = a.substr(2), value;
      const size_t eq = name.find('=');
      if (eq != std::string::npos) {
        value = name.substr(eq + 1);
        name = name.substr(0, eq);
      } else {
        if (i + 1 >= args.size()) {
          return absl::InvalidArgumentError(absl::StrCat("option --", name, " needs a value"));
        }
        value = args[++i];
      }
      if (!known.count(name)) {
        return absl::InvalidArgumentError(absl::StrCat("unknown option --", name));
      }
      if (flags.values_.count(name)) {
        return absl::InvalidArgumentError(absl::StrCat("option --", name, " given twice"));
      }
      flags.values_[name] = value;
    }
    return flags;
  }

  bool help() const { return help_; }
  const std::vector<std::string>& positional() const { return positional_; }
  std::optional<std::string> Get(const std::string& name) const {
    auto it = values_.find(name);
    if (it == values_.end()) return std::nullopt;
    return it->second;
  }
  absl::StatusOr<double> Double(const std::string& name, double fallback) const {
    auto v = Get(name);
    if (!v) return fallback;
    double out;
    if (!absl::SimpleAtod(*v, &out) || !std::isfinite(out)) {
      return absl::InvalidArgumentError(
          absl::StrCat("--", name, " must be a finite number, got '", *v, "'"));
    }
    return out;
  }
  absl::StatusOr<int64_t> Int(const std::string& name, int64_t fallback) const {
    auto v = Get(name);
    if (!v) return fallback;
    int64_t out;
    if (!absl::SimpleAtoi(*v, &out)) {
      return absl::InvalidArgumentError(
          absl::StrCat("--", name, " must be an integer, got '", *v, "'"));
    }
    return out;
  }

 private:
  bool help_ = false;
  std::vector<std::string> positional_;
  std::map<std::string, std::string> values_;
};

absl::Status WriteTextFile(const std::string& path, const std::string& text) {
  std::ofstream out(path, std::ios::trunc);
  if (!out) return absl::PermissionDeniedError(absl::StrCat(path, ": cannot open for writing"));
  out << text;
  out.close();
  if (!out) return absl::DataLossError(absl::StrCat(path, ": write failed"));
  return absl::OkStatus();
}

absl::Status EnsureParentDir(const std::string& path) {
  const std::filesystem::path parent = std::filesystem::path(path).parent_path();
  if (parent.empty()) return absl::OkStatus();
  std::error_code ec;
  std::filesystem::create_directories(parent, ec);
  if (ec) {
    return absl::PermissionDeniedError(
        absl::StrCat(parent.string(), ": cannot create directory: ", ec.message()));
  }
  return absl::OkStatus();
}

// ---------------------------------------------------------------- prior JSON

Json PriorToJson(const PhysicsPrior& prior) {
  Json j;
  j["pixel_size_angstrom"] = prior.pixel_size_angstrom;
  if (prior.column_density_per_nm2) j["column_density_per_nm2"] = *prior.column_density_per_nm2;
  if (prior.lattice) {
    j["lattice"] = {{"a_angstrom", prior.lattice->a_angstrom},
                    {"b_angstrom", prior.lattice->b_angstrom},
                    {"gamma_deg", prior.lattice->gamma_deg},
                    {"columns_per_cell", prior.lattice->columns_per_cell}};
  }
  j["nearest_neighbor_angstrom"] = prior.nearest_neighbor_angstrom;
  return j;
}

absl::StatusOr<double> JsonNumber(const Json& obj, const std::string& key,
                                  const std::string& where) {
  const Json& v = obj.at(key);
  if (!v.is_number()) {
    return absl::InvalidArgumentError(
        absl::StrCat(where, ": ", key, " must be a number, got ", v.dump()));
  }
  return v.get<double>();
}

// Reads the PhysicsPrior fields under their snake_case names. The lattice
// may be nested ("lattice": {...}) or given as top-level fields. Unknown
// keys are errors: a misspelt field must not silently fall back.
absl::StatusOr<PhysicsPrior> ParsePrior(const std::string& text, const std::string& where) {
  Json j;
  try {
    j = Json::parse(text);
  } catch (const Json::parse_error& e) {
    return absl::InvalidArgumentError(absl::StrCat(where, ": not valid JSON: ", e.what()));
  }
  if (!j.is_object()) {
    return absl::InvalidArgumentError(absl::StrCat(where, ": must be a JSON object"));
  }
  static const std::set<std::string> kLatticeKeys = {"a_angstrom", "b_angstrom", "gamma_deg",
                                                     "columns_per_cell"};
  static const std::set<std::string> kTopKeys = {"pixel_size_angstrom", "column_density_per_nm2",
                                                 "nearest_neighbor_angstrom", "lattice"};
  PhysicsPrior prior;
  Json lattice_json = Json::object();
  for (const auto& [key, value] : j.items()) {
    if (kLatticeKeys.count(key)) {
      lattice_json[key] = value;
    } else if (!kTopKeys.count(key)) {
      return absl::InvalidArgumentError(absl::StrCat(
          where, ": unknown field '", key, "' (expected ",
          "pixel_size_angstrom, column_density_per_nm2, nearest_neighbor_angstrom, lattice)"));
    }
  }
  if (j.contains("lattice")) {
    if (!j["lattice"].is_object()) {
      return absl::InvalidArgumentError(absl::StrCat(where, ": lattice must be an object"));
    }
    for (const auto& [key, value] : j["lattice"].items()) {
      if (!kLatticeKeys.count(key)) {
        return absl::InvalidArgumentError(
            absl::StrCat(where, ": unknown lattice field '", key, "'"));
      }
      lattice_json[key] = value;
    }
  }
  for (const char* key : {"pixel_size_angstrom", "nearest_neighbor_angstrom"}) {
    if (!j.contains(key)) {
      return absl::InvalidArgumentError(absl::StrCat(where, ": missing ", key));
    }
  }
  auto px = JsonNumber(j, "pixel_size_angstrom", where);
  if (!px.ok()) return px.status();
  prior.pixel_size_angstrom = *px;
  auto nn = JsonNumber(j, "nearest_neighbor_angstrom", where);
  if (!nn.ok()) return nn.status();
  prior.nearest_neighbor_angstrom = *nn;
  if (j.contains("column_density_per_nm2")) {
    auto d = JsonNumber(j, "column_density_per_nm2", where);
    if (!d.ok()) return d.status();
    prior.column_density_per_nm2 = *d;
  }
  if (!lattice_json.empty()) {
    ProjectedLattice lattice;
    for (const char* key : {"a_angstrom", "b_angstrom", "columns_per_cell"}) {
      if (!lattice_json.contains(key)) {
        return absl::InvalidArgumentError(absl::StrCat(where, ": lattice needs ", key));
      }
    }
    auto a = JsonNumber(lattice_json, "a_angstrom", where);
    if (!a.ok()) return a.status();
    auto b = JsonNumber(lattice_json, "b_angstrom", where);
    if (!b.ok()) return b.status();
    auto c = JsonNumber(lattice_json, "columns_per_cell", where);
    if (!c.ok()) return c.status();
    lattice.a_angstrom = *a;
    lattice.b_angstrom = *b;
    lattice.columns_per_cell = *c;
    if (lattice_json.contains("gamma_deg")) {
      auto g = JsonNumber(lattice_json, "gamma_deg", where);
      if (!g.ok()) return g.status();
      lattice.gamma_deg = *g;
    }
    prior.lattice = lattice;
  }
  if (absl::Status s = prior.Validate(); !s.ok()) {
    return absl::InvalidArgumentError(absl::StrCat(where, ": ", s.message()));
  }
  return prior;
}

absl::StatusOr<std::string> ReadTextFile(const std::string& path) {
  std::error_code ec;
  if (!std::filesystem::is_regular_file(path, ec)) {
    return absl::NotFoundError(absl::StrCat(path, ": no such file"));
  }
  std::ifstream in(path);
  if (!in) return absl::PermissionDeniedError(absl::StrCat(path, ": cannot open for reading"));
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
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

// ---------------------------------------------------------------- synth

constexpr char kSynthUsage[] =
    "usage: logstar synth --out DIR [--size N] [--lattice ybco|perovskite|hex] [--noise L]\n"
    "                     [--amorphous F] [--seed S] [--drift D] [--dose C] [--pixel-size A]\n"
    "  --size N        frame side in pixels (default 256)\n"
    "  --noise L       Gaussian noise, std = L x dynamic range of the clean frame (default 0.1)\n"
    "  --amorphous F   share of the frame that is amorphous (default 0)\n"
    "  --drift D       horizontal scan drift, pixels from first to last row (default 0)\n"
    "  --dose C        Poisson counts at the brightest pixel; 0 = none (default 0)\n"
    "  --pixel-size A  angstrom per pixel (default: 0.125, hex 0.078)\n"
    "Writes DIR/image.npy, meta.json, atoms.csv, amorphous_mask.npy and prior.json.\n";

}  // namespace

int RunSynth(const std::vector<std::string>& args) {
  auto flags = Flags::Parse(args, {"out", "size", "lattice", "noise", "amorphous", "seed", "drift",
                                   "dose", "pixel-size"});
  if (!flags.ok()) return UsageError(std::string(flags.status().message()), kSynthUsage);
  if (flags->help()) {
    std::fputs(kSynthUsage, stdout);
    return 0;
  }
  if (!flags->positional().empty()) {
    return UsageError(absl::StrCat("unexpected argument '", flags->positional()[0], "'"),
                      kSynthUsage);
  }
  const std::optional<std::string> out = flags->Get("out");
  if (!out) return UsageError("--out DIR is required", kSynthUsage);

  SynthOptions options;
  auto size = flags->Int("size", 256);
  auto noise = flags->Double("noise", options.noise);
  auto amorphous = flags->Double("amorphous", options.amorphous_fraction);
  auto seed = flags->Int("seed", 0);
  auto drift = flags->Double("drift", 0.0);
  auto dose = flags->Double("dose", 0.0);
  auto pixel = flags->Double("pixel-size", 0.0);
  for (const absl::Status& s : {size.status(), noise.status(), amorphous.status(), seed.status(),
                                drift.status(), dose.status(), pixel.status()}) {
    if (!s.ok()) return UsageError(std::string(s.message()), kSynthUsage);
  }
  if (*size < 8 || *size > 8192) {
    return Fail(
        absl::InvalidArgumentError(absl::StrCat("--size must be in [8, 8192], got ", *size)));
  }
  if (*seed < 0) return Fail(absl::InvalidArgumentError("--seed must be >= 0"));
  auto lattice = ParseSynthLattice(flags->Get("lattice").value_or("ybco"));
  if (!lattice.ok()) return Fail(lattice.status());
  options.width = options.height = static_cast<int>(*size);
  options.lattice = *lattice;
  options.noise = *noise;
  options.amorphous_fraction = *amorphous;
  options.seed = static_cast<uint64_t>(*seed);
  options.drift_px = *drift;
  options.dose = *dose;
  options.pixel_size_angstrom = *pixel;

  const auto t0 = Clock::now();
  absl::StatusOr<SynthFrame> frame = Synthesize(options);
  if (!frame.ok()) return Fail(frame.status());
  if (absl::Status s = WriteSynthFrame(*frame, *out); !s.ok()) return Fail(s);
  const std::string prior_path = (std::filesystem::path(*out) / "prior.json").string();
  if (absl::Status s = WriteTextFile(prior_path, PriorToJson(frame->prior).dump(1) + "\n");
      !s.ok()) {
    return Fail(s);
  }
  size_t amorphous_atoms = 0;
  for (const SynthAtom& a : frame->atoms) amorphous_atoms += a.amorphous ? 1 : 0;
  std::printf(
      "synth: %dx%d %s frame, %.4f A/px, noise %.2f, %zu atoms (%zu amorphous) -> %s "
      "(%.0f ms)\n",
      frame->image.cols, frame->image.rows, SynthLatticeName(options.lattice),
      frame->prior.pixel_size_angstrom, options.noise, frame->atoms.size(), amorphous_atoms,
      out->c_str(), MsSince(t0));
  return 0;
}

// ---------------------------------------------------------------- analyze

namespace {

constexpr char kAnalyzeUsage[] =
    "usage: logstar analyze IMAGE --prior PRIOR.json --out RESULT.json [--overlay OUT.png]\n"
    "                       [--fixed min_sigma,max_sigma,num_sigma,threshold,overlap]\n"
    "                       [--normalize minmax|percentile] [--threads N]\n"
    "                       [--truth ATOMS.csv [--match-radius PX]]\n"
    "  IMAGE     .npy (float32, float64, uint8, uint16, int16), .tif/.tiff or .png\n"
    "  --prior   JSON with pixel_size_angstrom, nearest_neighbor_angstrom and\n"
    "            column_density_per_nm2 or a lattice {a_angstrom, b_angstrom, gamma_deg,\n"
    "            columns_per_cell}\n"
    "  --fixed   LoG parameters (pixels); default: derived from the prior\n"
    "            (sigma from 0.1 to 0.4 x nearest-neighbour distance, 10 scales,\n"
    "            threshold 0.05, overlap 0.5)\n"
    "  --truth   true positions (CSV with x and y columns, e.g. synth's atoms.csv): adds\n"
    "            precision, recall and F1, matching within --match-radius pixels\n"
    "            (default 0.3 x nearest-neighbour distance)\n";

// Default LoG parameters from the prior, until LoG* tunes them: a column's
// image is a blob whose LoG response peaks at a sigma of about its Gaussian
// width, which for resolved columns lies between a tenth and 0.4 of the
// nearest-neighbour spacing; threshold 0.05 keeps light columns (a Cu
// column next to Ba is about a third as bright, a response near 0.1 after
// min–max normalisation) above the noise of a LoG-smoothed frame.
LogOptions DefaultLogOptions(const PhysicsPrior& prior) {
  LogOptions o;
  const double nn_px = prior.NearestNeighborPx();
  o.scale.min_sigma = std::max(0.1 * nn_px, 0.5);
  o.scale.max_sigma = std::max(0.4 * nn_px, o.scale.min_sigma);
  o.scale.num_sigma = 10;
  o.detect.threshold = 0.05;
  o.detect.overlap = 0.5;
  return o;
}

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

const char* DepthName(int depth) {
  switch (depth) {
    case CV_8U:
      return "uint8";
    case CV_16U:
      return "uint16";
    case CV_16S:
      return "int16";
    case CV_32F:
      return "float32";
    case CV_64F:
      return "float64";
    default:
      return "unknown";
  }
}

}  // namespace

int RunAnalyze(const std::vector<std::string>& args) {
  auto flags = Flags::Parse(
      args, {"prior", "out", "overlay", "fixed", "normalize", "threads", "truth", "match-radius"});
  if (!flags.ok()) return UsageError(std::string(flags.status().message()), kAnalyzeUsage);
  if (flags->help()) {
    std::fputs(kAnalyzeUsage, stdout);
    return 0;
  }
  if (flags->positional().size() != 1) {
    return UsageError("give exactly one IMAGE", kAnalyzeUsage);
  }
  const std::string image_path = flags->positional()[0];
  const std::optional<std::string> prior_path = flags->Get("prior");
  const std::optional<std::string> out_path = flags->Get("out");
  if (!prior_path) return UsageError("--prior PRIOR.json is required", kAnalyzeUsage);
  if (!out_path) return UsageError("--out RESULT.json is required", kAnalyzeUsage);
  auto threads = flags->Int("threads", 0);
  if (!threads.ok()) return UsageError(std::string(threads.status().message()), kAnalyzeUsage);

  NormalizeOptions norm;
  const std::string norm_name = flags->Get("normalize").value_or("minmax");
  if (norm_name == "percentile") {
    norm.method = NormalizeOptions::Method::kPercentile;
  } else if (norm_name != "minmax") {
    return UsageError(
        absl::StrCat("--normalize must be minmax or percentile, got '", norm_name, "'"),
        kAnalyzeUsage);
  }

  const auto t_start = Clock::now();
  auto prior_text = ReadTextFile(*prior_path);
  if (!prior_text.ok()) return Fail(prior_text.status());
  auto prior = ParsePrior(*prior_text, *prior_path);
  if (!prior.ok()) return Fail(prior.status());

  LogOptions log_options = DefaultLogOptions(*prior);
  std::string parameter_source = "prior_default";
  if (auto fixed = flags->Get("fixed")) {
    auto parsed = ParseFixed(*fixed);
    if (!parsed.ok()) return Fail(parsed.status());
    log_options = *parsed;
    parameter_source = "fixed";
  }

  auto context = ExecutionContext::Create({.num_threads = static_cast<int>(*threads)});
  if (!context.ok()) return Fail(context.status());

  auto t0 = Clock::now();
  absl::StatusOr<cv::Mat> raw = LoadFrame(image_path);
  if (!raw.ok()) return Fail(raw.status());
  const double load_ms = MsSince(t0);

  t0 = Clock::now();
  absl::StatusOr<cv::Mat> frame = NormalizeFrame(*raw, norm);
  if (!frame.ok())
    return Fail(
        absl::InvalidArgumentError(absl::StrCat(image_path, ": ", frame.status().message())));
  const double normalize_ms = MsSince(t0);

  t0 = Clock::now();
  absl::StatusOr<std::vector<Blob>> blobs = DetectBlobsLog(*frame, log_options, context->get());
  if (!blobs.ok()) return Fail(blobs.status());
  const double log_ms = MsSince(t0);

  t0 = Clock::now();
  std::vector<PointXY> points;
  points.reserve(blobs->size());
  for (const Blob& b : *blobs) points.push_back({b.x, b.y});
  const PixelRegion whole{0, 0, frame->cols, frame->rows};
  absl::StatusOr<Rewards> rewards = ComputeRewards(points, whole, *prior, RewardOptions{});
  if (!rewards.ok()) return Fail(rewards.status());
  const double rewards_ms = MsSince(t0);

  std::optional<Accuracy> accuracy;
  double match_radius = 0.3 * prior->NearestNeighborPx();
  if (auto truth_path = flags->Get("truth")) {
    auto radius = flags->Double("match-radius", match_radius);
    if (!radius.ok()) return UsageError(std::string(radius.status().message()), kAnalyzeUsage);
    match_radius = *radius;
    auto truth = ReadTruthCsv(*truth_path);
    if (!truth.ok()) return Fail(truth.status());
    auto matched = MatchToTruth(points, *truth, match_radius);
    if (!matched.ok()) return Fail(matched.status());
    accuracy = *matched;
  } else if (flags->Get("match-radius")) {
    return UsageError("--match-radius needs --truth", kAnalyzeUsage);
  }

  double overlay_ms = 0.0;
  if (auto overlay_path = flags->Get("overlay")) {
    t0 = Clock::now();
    auto picture = RenderBlobOverlay(*frame, *blobs, OverlayOptions{});
    if (!picture.ok()) return Fail(picture.status());
    if (absl::Status s = EnsureParentDir(*overlay_path); !s.ok()) return Fail(s);
    if (absl::Status s = WritePng(*overlay_path, *picture); !s.ok()) return Fail(s);
    overlay_ms = MsSince(t0);
  }

  Json result;
  result["logstar_version"] = LOGSTAR_VERSION;
  result["image"] = {{"path", image_path},
                     {"width", raw->cols},
                     {"height", raw->rows},
                     {"dtype", DepthName(raw->depth())}};
  result["coordinates"] =
      "x = column, y = row, in pixels, origin at the centre of the top-left pixel; "
      "radius = sigma * sqrt(2)";
  result["prior"] = PriorToJson(*prior);
  result["normalization"] = {{"method", norm_name}};
  if (norm.method == NormalizeOptions::Method::kPercentile) {
    result["normalization"]["low_percentile"] = norm.low_percentile;
    result["normalization"]["high_percentile"] = norm.high_percentile;
  }
  result["parameters"] = {{"source", parameter_source},
                          {"min_sigma", log_options.scale.min_sigma},
                          {"max_sigma", log_options.scale.max_sigma},
                          {"num_sigma", log_options.scale.num_sigma},
                          {"threshold", log_options.detect.threshold},
                          {"overlap", log_options.detect.overlap},
                          {"log_scale", log_options.scale.log_scale},
                          {"exclude_border", log_options.scale.exclude_border}};
  Json atoms = Json::array();
  for (const Blob& b : *blobs) {
    atoms.push_back({{"x", b.x},
                     {"y", b.y},
                     {"sigma", b.sigma},
                     {"radius", b.sigma * std::sqrt(2.0)},
                     {"response", b.response}});
  }
  result["num_atoms"] = blobs->size();
  result["atoms"] = std::move(atoms);
  result["rewards"] = {{"qc", rewards->qc},
                       {"er", rewards->er},
                       {"num_found", rewards->num_found},
                       {"num_expected", rewards->num_expected},
                       {"num_erroneous", rewards->num_erroneous},
                       {"ds_px", rewards->ds_px}};
  if (accuracy) {
    result["accuracy"] = {{"truth", *flags->Get("truth")},
                          {"match_radius_px", match_radius},
                          {"num_true", accuracy->num_true},
                          {"true_positives", accuracy->true_positives},
                          {"precision", accuracy->precision},
                          {"recall", accuracy->recall},
                          {"f1", accuracy->f1},
                          {"rms_px", accuracy->rms_px}};
  }
  result["timings_ms"] = {{"load", load_ms},       {"normalize", normalize_ms},
                          {"log", log_ms},         {"rewards", rewards_ms},
                          {"overlay", overlay_ms}, {"total", MsSince(t_start)}};

  if (absl::Status s = EnsureParentDir(*out_path); !s.ok()) return Fail(s);
  if (absl::Status s = WriteTextFile(*out_path, result.dump(1) + "\n"); !s.ok()) return Fail(s);

  std::string vs_truth;
  if (accuracy) {
    vs_truth = absl::StrFormat("; vs truth: precision %.3f, recall %.3f, F1 %.3f",
                               accuracy->precision, accuracy->recall, accuracy->f1);
  }
  std::printf(
      "analyze: %s %dx%d: %zu atoms (expected %.1f), QC %.3f, ER %.3f%s; LoG %.1f ms, total "
      "%.1f ms -> %s\n",
      image_path.c_str(), raw->cols, raw->rows, blobs->size(), rewards->num_expected, rewards->qc,
      rewards->er, vs_truth.c_str(), log_ms, MsSince(t_start), out_path->c_str());
  return 0;
}

}  // namespace logstar::cli
