// `logstar synth`: a generated HAADF-like frame with its ground truth
// (engine/image/synth.h) as a directory, or with --frames a drifting, noisy
// stream of them as a recording (.lsr, clients/cpp/recording.h).
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "clients/cli/commands.h"
#include "clients/cli/common.h"
#include "clients/cli/prior.h"
#include "clients/cli/recording_flags.h"
#include "clients/cli/remote.h"
#include "clients/cpp/recording.h"
#include "engine/base/status_macros.h"
#include "engine/image/synth.h"

namespace logstar::cli {
namespace {

using Clock = std::chrono::steady_clock;

// The scene flags of a single frame (the ranges are SynthOptions::Validate()'s).
absl::Status ParseSceneFlags(const Flags& flags, SynthOptions* options) {
  if (std::optional<std::string> scene = flags.Get("scene")) {
    LOGSTAR_ASSIGN_OR_RETURN(options->scene, ParseSynthScene(*scene));
  }
  LOGSTAR_ASSIGN_OR_RETURN(options->crystal_fraction,
                           flags.Double("crystal-fraction", options->crystal_fraction));
  LOGSTAR_ASSIGN_OR_RETURN(options->ab_brightness_ratio,
                           flags.Double("ab-ratio", options->ab_brightness_ratio));
  if (std::optional<std::string> second = flags.Get("interface-lattice")) {
    LOGSTAR_ASSIGN_OR_RETURN(options->interface_lattice, ParseSynthLattice(*second));
  }
  LOGSTAR_ASSIGN_OR_RETURN(options->interface_rotation_deg,
                           flags.Double("interface-rotation", options->interface_rotation_deg));
  return absl::OkStatus();
}

constexpr char kSynthUsage[] =
    "usage: logstar synth --out DIR [--size N] [--lattice ybco|perovskite|hex] [--noise L]\n"
    "                     [--amorphous F] [--seed S] [--drift D] [--dose C] [--pixel-size A]\n"
    "                     [--scene crystal|nanoparticle|edge|support|interface]\n"
    "                     [--crystal-fraction F] [--ab-ratio R]\n"
    "                     [--interface-lattice ybco|perovskite|hex] [--interface-rotation DEG]\n"
    "  --size N        frame side in pixels (default 256)\n"
    "  --noise L       Gaussian noise, std = L x dynamic range of the clean frame (default 0.1)\n"
    "  --amorphous F   share of the frame that is amorphous (default 0; scene crystal only)\n"
    "  --drift D       horizontal scan drift, pixels from first to last row (default 0)\n"
    "  --dose C        Poisson counts at the brightest pixel; 0 = none (default 0)\n"
    "  --pixel-size A  angstrom per pixel (default: 0.125, hex 0.078)\n"
    "  --scene S       crystal (whole frame, default), nanoparticle (in vacuum), edge (crystal\n"
    "                  ending along a straight line), support (a particle on an amorphous film\n"
    "                  with light atoms), interface (two crystals meeting along a line)\n"
    "  --crystal-fraction F  share of the frame the (first) crystal covers, [0.05, 0.95]\n"
    "                  (default 0.4; scenes other than crystal)\n"
    "  --ab-ratio R    A/B column brightness ratio for perovskite and hex, 0 = Z^1.7 or\n"
    "                  [1, 10] (default 0)\n"
    "  --interface-lattice L, --interface-rotation DEG  the second crystal of the interface\n"
    "                  scene (default: --lattice, rotated by 30 degrees)\n"
    "Writes DIR/image.npy, meta.json, atoms.csv (x, y, element, intensity, sigma_px, amorphous,\n"
    "sublattice, crystal), amorphous_mask.npy, crystalline_mask.npy, support_atoms.csv and\n"
    "prior.json (the first crystal's prior with its sublattices: names, densities and relative\n"
    "brightness, brightest first, as meta.json describes them).\n";

constexpr char kSynthStreamUsage[] =
    "usage: logstar synth --frames K --out S.lsr [--size N] [--lattice ybco|perovskite|hex]\n"
    "                     [--noise L] [--amorphous F] [--seed S] [--drift D]\n"
    "                     [--stage-drift DX,DY] [--fps F] [--pixel-size A] [--window PX]\n"
    "                     [--evals N] [--gmm]\n"
    "A drifting, noisy stream of K generated frames with their ground truth, as a recording.\n"
    "  --stage-drift DX,DY  the field of view moves DX, DY px per frame (default 0.6,0.4),\n"
    "                       in whole pixels (rounded), so the truth stays exact\n"
    "  --noise L            Gaussian noise per frame, std = L x the frame's clean range\n"
    "  --fps F              frame rate of the timing (default 10)\n"
    "  the other options as for a single frame; --window, --evals and --gmm (the amorphous\n"
    "  stage) go into the header\n";

// synth --frames: the stream's shape from the flags.
struct StreamRequest {
  SynthOptions options;  // the clean field (noise 0) the frames are cut from
  int64_t frames = 0;
  int size = 0;                  // frame side, px
  double noise = 0.0;            // per frame, x the field's clean range
  double stage[2] = {0.6, 0.4};  // px per frame
  double fps = 10.0;
  int margin_x = 0, margin_y = 0;  // the field's border beyond the first frame
  std::string out;
};

absl::StatusOr<StreamRequest> ParseStreamFlags(const Flags& flags) {
  if (!flags.positional().empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("unexpected argument '", flags.positional()[0], "'"));
  }
  if (!flags.Has("out")) return absl::InvalidArgumentError("--out S.lsr is required");
  StreamRequest r;
  r.out = *flags.Get("out");
  auto k = flags.Int("frames", 0);
  auto size = flags.Int("size", 256);
  auto noise = flags.Double("noise", r.options.noise);
  auto amorphous = flags.Double("amorphous", 0.0);
  auto seed = flags.Int("seed", 0);
  auto drift = flags.Double("drift", 0.0);
  auto fps = flags.Double("fps", 10.0);
  auto pixel = flags.Double("pixel-size", 0.0);
  for (const absl::Status& s : {k.status(), size.status(), noise.status(), amorphous.status(),
                                seed.status(), drift.status(), fps.status(), pixel.status()}) {
    if (!s.ok()) return s;
  }
  if (auto text = flags.Get("stage-drift")) {
    std::vector<std::string> parts = absl::StrSplit(*text, ',');
    if (parts.size() != 2 || !absl::SimpleAtod(parts[0], &r.stage[0]) ||
        !absl::SimpleAtod(parts[1], &r.stage[1]) || !std::isfinite(r.stage[0]) ||
        !std::isfinite(r.stage[1]) || std::abs(r.stage[0]) > 64 || std::abs(r.stage[1]) > 64) {
      return absl::InvalidArgumentError(
          absl::StrCat("--stage-drift needs DX,DY in px per frame, |.| <= 64; got '", *text, "'"));
    }
  }
  if (*k < 1 || *k > 100000) return absl::InvalidArgumentError("--frames must be in [1, 100000]");
  if (*size < 8 || *size > 4096) return absl::InvalidArgumentError("--size must be in [8, 4096]");
  if (*seed < 0) return absl::InvalidArgumentError("--seed must be >= 0");
  if (*fps <= 0) return absl::InvalidArgumentError("--fps must be > 0");
  if (*noise < 0 || *noise > 1) return absl::InvalidArgumentError("--noise must be in [0, 1]");
  r.frames = *k;
  r.size = static_cast<int>(*size);
  r.noise = *noise;
  r.fps = *fps;
  // One clean field larger than a frame by the whole drift; each frame is a
  // crop of it moved by the stage drift, with its own noise.
  r.margin_x = static_cast<int>(std::ceil(std::abs(r.stage[0]) * (r.frames - 1))) + 1;
  r.margin_y = static_cast<int>(std::ceil(std::abs(r.stage[1]) * (r.frames - 1))) + 1;
  r.options.width = r.size + 2 * r.margin_x;
  r.options.height = r.size + 2 * r.margin_y;
  r.options.noise = 0.0;
  r.options.amorphous_fraction = *amorphous;
  r.options.seed = static_cast<uint64_t>(*seed);
  r.options.drift_px = *drift;
  r.options.pixel_size_angstrom = *pixel;
  return r;
}

// The header: what the stream is, its prior and (--window, --evals, --gmm)
// analysis settings.
absl::StatusOr<v1::RecordingHeader> StreamHeader(const Flags& flags, const StreamRequest& r,
                                                 const SynthFrame& field) {
  v1::RecordingHeader header;
  header.set_created_by(absl::StrCat("logstar synth ", LOGSTAR_VERSION));
  header.set_description(absl::StrFormat(
      "synthetic %s stream: %lld frames %dx%d, noise %.3g, stage drift %.3g,%.3g "
      "px/frame, seed %lld",
      SynthLatticeName(r.options.lattice), static_cast<long long>(r.frames), r.size, r.size,
      r.noise, r.stage[0], r.stage[1], static_cast<long long>(r.options.seed)));
  *header.mutable_created() = ToProtoTime(absl::Now());
  header.set_has_truth(true);
  *header.mutable_settings()->mutable_prior() = PriorToProto(SynthPriorWithSublattices(field));
  if (absl::Status s = AddAnalysisFlags(flags, header.mutable_settings()->mutable_analysis());
      !s.ok()) {
    return s;
  }
  return header;
}

// Frame i: the field's crop at the stage position, its own noise, and the
// truth: the field's atoms whose centres fall on the frame's pixels.
absl::StatusOr<v1::RecordedFrame> StreamFrame(const StreamRequest& r, const SynthFrame& field,
                                              int i, std::mt19937_64& rng) {
  const int n = r.size;
  const int x0 = r.margin_x + static_cast<int>(std::lround(r.stage[0] * i));
  const int y0 = r.margin_y + static_cast<int>(std::lround(r.stage[1] * i));
  cv::Mat image = field.image(cv::Rect(x0, y0, n, n)).clone();
  double lo, hi;
  cv::minMaxLoc(image, &lo, &hi);
  std::normal_distribution<float> gauss(0.0f, static_cast<float>(r.noise * (hi - lo)));
  for (int y = 0; y < n; ++y) {
    float* row = image.ptr<float>(y);
    for (int x = 0; x < n; ++x) row[x] += gauss(rng);
  }
  v1::RecordedFrame f;
  f.set_offset_ns(static_cast<int64_t>(std::llround(1e9 * i / r.fps)));
  f.mutable_frame()->set_sequence(i + 1);
  f.mutable_frame()->set_channel("HAADF");
  f.mutable_frame()->set_pixel_size_x_angstrom(field.prior.pixel_size_angstrom);
  f.mutable_frame()->set_pixel_size_y_angstrom(field.prior.pixel_size_angstrom);
  auto pixels = ImageToPixels(image);
  if (!pixels.ok()) return pixels.status();
  *f.mutable_frame()->mutable_pixels() = *std::move(pixels);
  for (const SynthAtom& a : field.atoms) {
    const double x = a.x - x0, y = a.y - y0;
    if (x < -0.5 || y < -0.5 || x >= n - 0.5 || y >= n - 0.5) continue;
    v1::TruthAtom* t = f.add_truth();
    t->set_x(x);
    t->set_y(y);
    t->set_amorphous(a.amorphous);
  }
  return f;
}

}  // namespace

int RunSynthStream(const std::vector<std::string>& args) {
  auto flags = Flags::Parse(args,
                            {"frames", "out", "size", "lattice", "noise", "amorphous", "seed",
                             "drift", "stage-drift", "fps", "pixel-size", "window", "evals"},
                            {"gmm"});
  if (!flags.ok()) return UsageError(std::string(flags.status().message()), kSynthStreamUsage);
  if (flags->help()) {
    std::fputs(kSynthStreamUsage, stdout);
    return 0;
  }
  absl::StatusOr<StreamRequest> r = ParseStreamFlags(*flags);
  if (!r.ok()) return UsageError(std::string(r.status().message()), kSynthStreamUsage);
  auto lattice = ParseSynthLattice(flags->Get("lattice").value_or("ybco"));
  if (!lattice.ok()) return Fail(lattice.status());
  r->options.lattice = *lattice;
  if (r->options.width > 8192 || r->options.height > 8192) {
    return UsageError("--stage-drift x --frames moves the view too far (field > 8192 px)",
                      kSynthStreamUsage);
  }
  auto field = Synthesize(r->options);
  if (!field.ok()) return Fail(field.status());
  absl::StatusOr<v1::RecordingHeader> header = StreamHeader(*flags, *r, *field);
  if (!header.ok()) return UsageError(std::string(header.status().message()), kSynthStreamUsage);
  if (absl::Status s = EnsureParentDir(r->out); !s.ok()) return Fail(s);
  auto writer = RecordingWriter::Create(r->out, *header);
  if (!writer.ok()) return Fail(writer.status());

  std::mt19937_64 rng(r->options.seed * 0x9E3779B97F4A7C15ull + 1);
  size_t atoms = 0;
  for (int i = 0; i < r->frames; ++i) {
    absl::StatusOr<v1::RecordedFrame> f = StreamFrame(*r, *field, i, rng);
    if (!f.ok()) return Fail(f.status());
    atoms += f->truth_size();
    if (absl::Status s = (*writer)->Append(*f); !s.ok()) return Fail(s);
  }
  if (absl::Status s = (*writer)->Close(); !s.ok()) return Fail(s);
  std::printf("synth: %lld frames %dx%d %s, %.4f A/px, noise %.2f, %zu true atoms -> %s\n",
              static_cast<long long>(r->frames), r->size, r->size, SynthLatticeName(*lattice),
              field->prior.pixel_size_angstrom, r->noise, atoms, r->out.c_str());
  return 0;
}

int RunSynth(const std::vector<std::string>& args) {
  // --frames K makes a recorded stream instead of one frame's directory.
  for (const std::string& a : args) {
    if (a == "--frames" || a.rfind("--frames=", 0) == 0) return RunSynthStream(args);
  }
  auto flags = Flags::Parse(
      args, {"out", "size", "lattice", "noise", "amorphous", "seed", "drift", "dose", "pixel-size",
             "scene", "crystal-fraction", "ab-ratio", "interface-lattice", "interface-rotation"});
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
  if (absl::Status s = ParseSceneFlags(*flags, &options); !s.ok()) return Fail(s);

  const auto t0 = Clock::now();
  absl::StatusOr<SynthFrame> frame = Synthesize(options);
  if (!frame.ok()) return Fail(frame.status());
  if (absl::Status s = WriteSynthFrame(*frame, *out); !s.ok()) return Fail(s);
  const std::string prior_path = (std::filesystem::path(*out) / "prior.json").string();
  const PhysicsPrior prior = SynthPriorWithSublattices(*frame);
  // What a reader of prior.json gets must pass the readers' checks.
  if (absl::Status s = prior.Validate(); !s.ok()) return Fail(s);
  if (absl::Status s = WriteTextFile(prior_path, PriorToJson(prior).dump(1) + "\n"); !s.ok()) {
    return Fail(s);
  }
  size_t amorphous_atoms = 0;
  for (const SynthAtom& a : frame->atoms) amorphous_atoms += a.amorphous ? 1 : 0;
  const std::string support =
      frame->support_atoms.empty()
          ? ""
          : absl::StrCat(", ", frame->support_atoms.size(), " support atoms");
  std::printf(
      "synth: %dx%d %s %s frame, %.4f A/px, noise %.2f, %zu atoms (%zu amorphous%s) -> %s "
      "(%.0f ms)\n",
      frame->image.cols, frame->image.rows, SynthLatticeName(options.lattice),
      SynthSceneName(options.scene), frame->prior.pixel_size_angstrom, options.noise,
      frame->atoms.size(), amorphous_atoms, support.c_str(), out->c_str(), MsSince(t0));
  return 0;
}

}  // namespace logstar::cli
