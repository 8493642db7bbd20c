// record, synth --frames, replay and status: the subcommands that make
// recorded streams (.lsr, clients/cpp/recording.h) and talk to logstard
// (clients/cpp/client.h).
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <limits>
#include <map>
#include <mutex>
#include <optional>
#include <random>
#include <thread>
#include <vector>

#include <google/protobuf/util/json_util.h>
#include <nlohmann/json.hpp>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "clients/cli/commands.h"
#include "clients/cli/common.h"
#include "clients/cli/remote.h"
#include "clients/cpp/client.h"
#include "clients/cpp/recording.h"
#include "clients/cpp/shared_memory.h"
#include "engine/physics/accuracy.h"
#include "engine/image/image_io.h"
#include "engine/image/normalize.h"
#include "engine/image/synth.h"

namespace logstar::cli {
namespace {

using Clock = std::chrono::steady_clock;
using Json = nlohmann::ordered_json;

google::protobuf::Timestamp Now() {
  const absl::Time t = absl::Now();
  google::protobuf::Timestamp ts;
  ts.set_seconds(absl::ToUnixSeconds(t));
  ts.set_nanos(
      static_cast<int32_t>((t - absl::FromUnixSeconds(ts.seconds())) / absl::Nanoseconds(1)));
  return ts;
}

// Analysis settings a recording's header carries: --window and --evals.
absl::Status AddAnalysisFlags(const Flags& flags, v1::AnalysisSettings* a) {
  if (flags.Has("window")) {
    auto w = flags.Int("window", 0);
    if (!w.ok()) return w.status();
    if (*w != 0 && (*w < 16 || *w > 65536)) {
      return absl::InvalidArgumentError(
          absl::StrCat("--window must be 0 (the whole frame) or in [16, 65536] px, got ", *w));
    }
    a->set_window(static_cast<int>(*w));
  }
  if (flags.Has("evals")) {
    auto e = flags.Int("evals", 0);
    if (!e.ok()) return e.status();
    if (*e < 1 || *e > 10000) {
      return absl::InvalidArgumentError(absl::StrCat("--evals must be in [1, 10000], got ", *e));
    }
    a->set_evaluations(static_cast<int>(*e));
  }
  if (flags.Has("gmm")) a->mutable_amorphous()->set_enabled(true);
  return absl::OkStatus();
}

ClientFlags GetClientFlags(const Flags& flags) {
  return ClientFlags{.server = flags.Get("server"),
                     .tls_ca = flags.Get("tls-ca"),
                     .tls_cert = flags.Get("tls-cert"),
                     .tls_key = flags.Get("tls-key"),
                     .token = flags.Get("token"),
                     .token_file = flags.Get("token-file"),
                     .connect_timeout = flags.Get("connect-timeout"),
                     .tls = flags.Has("tls")};
}
const std::set<std::string> kClientFlagNames = {"server", "tls-ca",     "tls-cert",       "tls-key",
                                                "token",  "token-file", "connect-timeout"};

std::set<std::string> With(std::set<std::string> a, const std::set<std::string>& b) {
  a.insert(b.begin(), b.end());
  return a;
}

// ---------------------------------------------------------------- record

constexpr char kRecordUsage[] =
    "usage: logstar record --from DIR|GLOB --prior PRIOR.json --out S.lsr [--fps F]\n"
    "                      [--window PX] [--evals N] [--description TEXT]\n"
    "Writes the frames (.npy, .tif/.tiff, .png; a directory in name order or a quoted glob)\n"
    "as a recorded stream that `logstar replay` sends to logstard.\n"
    "  --fps F         frame rate for the replay timing (default 10)\n"
    "  --window, --evals  analysis settings stored in the header (default: the daemon's)\n"
    "  --gmm              the header asks for the amorphous stage too\n";

}  // namespace

int RunRecord(const std::vector<std::string>& args) {
  auto flags = Flags::Parse(args, {"from", "prior", "out", "fps", "window", "evals", "description"},
                            {"gmm"});
  if (!flags.ok()) return UsageError(std::string(flags.status().message()), kRecordUsage);
  if (flags->help()) {
    std::fputs(kRecordUsage, stdout);
    return 0;
  }
  if (!flags->positional().empty()) {
    return UsageError(absl::StrCat("unexpected argument '", flags->positional()[0], "'"),
                      kRecordUsage);
  }
  for (const char* required : {"from", "prior", "out"}) {
    if (!flags->Has(required)) {
      return UsageError(absl::StrCat("--", required, " is required"), kRecordUsage);
    }
  }
  auto fps = flags->Double("fps", 10.0);
  if (!fps.ok()) return UsageError(std::string(fps.status().message()), kRecordUsage);
  if (*fps <= 0) return UsageError("--fps must be > 0", kRecordUsage);
  v1::RecordingHeader header;
  header.set_created_by(absl::StrCat("logstar record ", LOGSTAR_VERSION));
  header.set_description(flags->Get("description").value_or(""));
  *header.mutable_created() = Now();
  if (absl::Status s = AddAnalysisFlags(*flags, header.mutable_settings()->mutable_analysis());
      !s.ok()) {
    return UsageError(std::string(s.message()), kRecordUsage);
  }
  auto prior_text = ReadTextFile(*flags->Get("prior"));
  if (!prior_text.ok()) return Fail(prior_text.status());
  auto prior = ParsePrior(*prior_text, *flags->Get("prior"));
  if (!prior.ok()) return Fail(prior.status());
  *header.mutable_settings()->mutable_prior() = PriorToProto(*prior);
  auto paths = ListFrames(*flags->Get("from"));
  if (!paths.ok()) return Fail(paths.status());

  const std::string out = *flags->Get("out");
  if (absl::Status s = EnsureParentDir(out); !s.ok()) return Fail(s);
  auto writer = RecordingWriter::Create(out, header);
  if (!writer.ok()) return Fail(writer.status());
  for (size_t i = 0; i < paths->size(); ++i) {
    auto image = LoadFrame((*paths)[i]);
    if (!image.ok()) return Fail(image.status());
    auto pixels = ImageToPixels(*image);
    if (!pixels.ok()) {
      return Fail(
          absl::InvalidArgumentError(absl::StrCat((*paths)[i], ": ", pixels.status().message())));
    }
    v1::RecordedFrame f;
    f.set_offset_ns(static_cast<int64_t>(std::llround(1e9 * static_cast<double>(i) / *fps)));
    f.mutable_frame()->set_sequence(i + 1);
    f.mutable_frame()->set_pixel_size_x_angstrom(prior->pixel_size_angstrom);
    f.mutable_frame()->set_pixel_size_y_angstrom(prior->pixel_size_angstrom);
    *f.mutable_frame()->mutable_pixels() = *std::move(pixels);
    if (absl::Status s = (*writer)->Append(f); !s.ok()) return Fail(s);
  }
  if (absl::Status s = (*writer)->Close(); !s.ok()) return Fail(s);
  std::printf("record: %zu frames at %.3g fps -> %s (%lld bytes)\n", paths->size(), *fps,
              out.c_str(), static_cast<long long>((*writer)->bytes_written()));
  return 0;
}

// ---------------------------------------------------------------- synth --frames

namespace {

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
  if (!flags->positional().empty()) {
    return UsageError(absl::StrCat("unexpected argument '", flags->positional()[0], "'"),
                      kSynthStreamUsage);
  }
  if (!flags->Has("out")) return UsageError("--out S.lsr is required", kSynthStreamUsage);
  SynthOptions options;
  auto k = flags->Int("frames", 0);
  auto size = flags->Int("size", 256);
  auto noise = flags->Double("noise", options.noise);
  auto amorphous = flags->Double("amorphous", 0.0);
  auto seed = flags->Int("seed", 0);
  auto drift = flags->Double("drift", 0.0);
  auto fps = flags->Double("fps", 10.0);
  auto pixel = flags->Double("pixel-size", 0.0);
  for (const absl::Status& s : {k.status(), size.status(), noise.status(), amorphous.status(),
                                seed.status(), drift.status(), fps.status(), pixel.status()}) {
    if (!s.ok()) return UsageError(std::string(s.message()), kSynthStreamUsage);
  }
  double stage[2] = {0.6, 0.4};
  if (auto text = flags->Get("stage-drift")) {
    std::vector<std::string> parts = absl::StrSplit(*text, ',');
    if (parts.size() != 2 || !absl::SimpleAtod(parts[0], &stage[0]) ||
        !absl::SimpleAtod(parts[1], &stage[1]) || !std::isfinite(stage[0]) ||
        !std::isfinite(stage[1]) || std::abs(stage[0]) > 64 || std::abs(stage[1]) > 64) {
      return UsageError(
          absl::StrCat("--stage-drift needs DX,DY in px per frame, |.| <= 64; got '", *text, "'"),
          kSynthStreamUsage);
    }
  }
  if (*k < 1 || *k > 100000)
    return UsageError("--frames must be in [1, 100000]", kSynthStreamUsage);
  if (*size < 8 || *size > 4096)
    return UsageError("--size must be in [8, 4096]", kSynthStreamUsage);
  if (*seed < 0) return UsageError("--seed must be >= 0", kSynthStreamUsage);
  if (*fps <= 0) return UsageError("--fps must be > 0", kSynthStreamUsage);
  if (*noise < 0 || *noise > 1) return UsageError("--noise must be in [0, 1]", kSynthStreamUsage);
  auto lattice = ParseSynthLattice(flags->Get("lattice").value_or("ybco"));
  if (!lattice.ok()) return Fail(lattice.status());

  // One clean field larger than a frame by the whole drift; each frame is a
  // crop of it moved by the stage drift, with its own noise.
  const int n = static_cast<int>(*size);
  const int margin_x = static_cast<int>(std::ceil(std::abs(stage[0]) * (*k - 1))) + 1;
  const int margin_y = static_cast<int>(std::ceil(std::abs(stage[1]) * (*k - 1))) + 1;
  options.width = n + 2 * margin_x;
  options.height = n + 2 * margin_y;
  if (options.width > 8192 || options.height > 8192) {
    return UsageError("--stage-drift x --frames moves the view too far (field > 8192 px)",
                      kSynthStreamUsage);
  }
  options.lattice = *lattice;
  options.noise = 0.0;
  options.amorphous_fraction = *amorphous;
  options.seed = static_cast<uint64_t>(*seed);
  options.drift_px = *drift;
  options.pixel_size_angstrom = *pixel;
  auto field = Synthesize(options);
  if (!field.ok()) return Fail(field.status());

  v1::RecordingHeader header;
  header.set_created_by(absl::StrCat("logstar synth ", LOGSTAR_VERSION));
  header.set_description(
      absl::StrFormat("synthetic %s stream: %lld frames %dx%d, noise %.3g, stage drift %.3g,%.3g "
                      "px/frame, seed %lld",
                      SynthLatticeName(*lattice), static_cast<long long>(*k), n, n, *noise,
                      stage[0], stage[1], static_cast<long long>(*seed)));
  *header.mutable_created() = Now();
  header.set_has_truth(true);
  *header.mutable_settings()->mutable_prior() = PriorToProto(field->prior);
  if (absl::Status s = AddAnalysisFlags(*flags, header.mutable_settings()->mutable_analysis());
      !s.ok()) {
    return UsageError(std::string(s.message()), kSynthStreamUsage);
  }
  const std::string out = *flags->Get("out");
  if (absl::Status s = EnsureParentDir(out); !s.ok()) return Fail(s);
  auto writer = RecordingWriter::Create(out, header);
  if (!writer.ok()) return Fail(writer.status());

  std::mt19937_64 rng(static_cast<uint64_t>(*seed) * 0x9E3779B97F4A7C15ull + 1);
  size_t atoms = 0;
  for (int i = 0; i < *k; ++i) {
    const int x0 = margin_x + static_cast<int>(std::lround(stage[0] * i));
    const int y0 = margin_y + static_cast<int>(std::lround(stage[1] * i));
    cv::Mat image = field->image(cv::Rect(x0, y0, n, n)).clone();
    double lo, hi;
    cv::minMaxLoc(image, &lo, &hi);
    std::normal_distribution<float> gauss(0.0f, static_cast<float>(*noise * (hi - lo)));
    for (int y = 0; y < n; ++y) {
      float* row = image.ptr<float>(y);
      for (int x = 0; x < n; ++x) row[x] += gauss(rng);
    }
    v1::RecordedFrame f;
    f.set_offset_ns(static_cast<int64_t>(std::llround(1e9 * i / *fps)));
    f.mutable_frame()->set_sequence(i + 1);
    f.mutable_frame()->set_channel("HAADF");
    f.mutable_frame()->set_pixel_size_x_angstrom(field->prior.pixel_size_angstrom);
    f.mutable_frame()->set_pixel_size_y_angstrom(field->prior.pixel_size_angstrom);
    auto pixels = ImageToPixels(image);
    if (!pixels.ok()) return Fail(pixels.status());
    *f.mutable_frame()->mutable_pixels() = *std::move(pixels);
    // The truth: the field's atoms whose centres fall on the frame's pixels.
    for (const SynthAtom& a : field->atoms) {
      const double x = a.x - x0, y = a.y - y0;
      if (x < -0.5 || y < -0.5 || x >= n - 0.5 || y >= n - 0.5) continue;
      v1::TruthAtom* t = f.add_truth();
      t->set_x(x);
      t->set_y(y);
      t->set_amorphous(a.amorphous);
      ++atoms;
    }
    if (absl::Status s = (*writer)->Append(f); !s.ok()) return Fail(s);
  }
  if (absl::Status s = (*writer)->Close(); !s.ok()) return Fail(s);
  std::printf("synth: %lld frames %dx%d %s, %.4f A/px, noise %.2f, %zu true atoms -> %s\n",
              static_cast<long long>(*k), n, n, SynthLatticeName(*lattice),
              field->prior.pixel_size_angstrom, *noise, atoms, out.c_str());
  return 0;
}

// ---------------------------------------------------------------- replay

namespace {

constexpr char kReplayUsage[] =
    "usage: logstar replay S.lsr --server ADDR [--speed 1|N|max] [--loop K]\n"
    "                      [--results R.jsonl] [--overlays DIR] [--session ID]\n"
    "                      [--max-in-flight N] [--window PX] [--evals N] [--overload P]\n"
    "                      [--reconnect-s S] [--shared-memory [--shared-memory-mode M]]\n"
    "                      [--tls] [--tls-ca F] [--tls-cert F --tls-key F] [--token T]\n"
    "Sends a recorded stream to logstard at its original pace and reads every answer.\n"
    "  --speed S          1 = as recorded (default), N = N times faster, max = no waiting\n"
    "  --loop K           send the recording K times (default 1)\n"
    "  --results R.jsonl  one JSON line per frame: sequence, status, atoms, latency\n"
    "  --overlays DIR     a PNG per analysed frame with its atoms drawn\n"
    "  --session ID       the session to open or resume (default: a new one)\n"
    "  --max-in-flight N  frames sent but not answered (default 4)\n"
    "  --window, --evals  override the recording's analysis settings\n"
    "  --gmm              also find amorphous regions (the session's amorphous stage)\n"
    "  --overload P       block, latest-wins or reject: the session's overload policy\n"
    "                     (default: the recording's; block with --speed max)\n"
    "  --reconnect-s S    when the server goes away (UNAVAILABLE), reconnect for up to S s\n"
    "                     per outage (backoff 0.2 s doubling to 2 s), resume the same session\n"
    "                     and re-send the frames not yet answered (default 0: give up)\n"
    "  --shared-memory    pixels through a POSIX shared memory buffer registered with the\n"
    "                     daemon (same host only) instead of in the messages: --max-in-flight\n"
    "                     slots of the first frame's size, a slot written again only after its\n"
    "                     frame was answered; frames that do not fit or do not decode go in\n"
    "                     the message\n"
    "  --shared-memory-mode M  the buffer's permissions, octal (default 600: a daemon of the\n"
    "                     same user; 644 for one running as another user, e.g. systemd's)\n"
    "Exit code 0 when every frame got a result; 1 when frames were dropped, failed or lost,\n"
    "the recording is damaged (its intact frames are still sent) or the server is down.\n";

double Percentile(std::vector<double> v, double p) {
  if (v.empty()) return 0.0;
  std::sort(v.begin(), v.end());
  const size_t i = std::min(v.size() - 1, static_cast<size_t>(std::ceil(p / 100.0 * v.size())) - 1);
  return v[i];
}

struct ReplayStats {
  std::mutex mu;
  int64_t sent = 0, results = 0, dropped = 0, failed = 0;
  // Reconnects: streams re-opened, frames sent again, answers already had.
  int64_t reconnects = 0, resent = 0, duplicates = 0;
  int64_t windows = 0, hits = 0;
  std::vector<double> latency_ms;
  std::vector<double> server_ms;
  double f1_sum = 0.0, f1_min = 1.0;
  int64_t f1_count = 0;
  double amorphous_area_sum = 0.0;  // over frames with the amorphous stage
  int64_t amorphous_frames = 0;
};

// What the reader thread needs about a sent frame until it is answered.
struct SentFrame {
  uint64_t file_sequence = 0;
  int loop = 0;
  std::vector<PointXY> truth;
  int truth_amorphous = 0;  // truth atoms in amorphous material
  bool has_truth = false;
  std::shared_ptr<const v1::PixelData> pixels;  // for --overlays
  // With --reconnect-s: the frame itself, to send again on a new stream.
  std::optional<v1::Frame> frame;
};

bool Retryable(const absl::Status& s) { return absl::IsUnavailable(s); }

// --shared-memory: a ring of slots in one buffer, made and registered at the
// first frame (its size sets the slots'). A slot is written again only after
// the frame in it was answered: the daemon reads a frame's bytes when it
// analyses it. Only the sending thread uses it (and reconnects, which run
// there).
struct ReplaySharedMemory {
  mode_t mode = 0600;
  int slots = 0;
  uint64_t slot_bytes = 0;
  std::unique_ptr<SharedMemoryBuffer> buffer;  // null until the first frame
  std::string region;                          // its name on the daemon
  std::vector<uint64_t> owner;                 // per slot: the sequence in it, 0 = none
  int next = 0;                                // the slot the next frame takes
  int64_t frames = 0, in_message = 0;
};

}  // namespace

int RunReplay(const std::vector<std::string>& args) {
  auto flags =
      Flags::Parse(args,
                   With({"speed", "loop", "results", "overlays", "session", "max-in-flight",
                         "window", "evals", "overload", "reconnect-s", "shared-memory-mode"},
                        kClientFlagNames),
                   {"tls", "gmm", "shared-memory"});
  if (!flags.ok()) return UsageError(std::string(flags.status().message()), kReplayUsage);
  if (flags->help()) {
    std::fputs(kReplayUsage, stdout);
    std::fputs(kClientFlagsUsage, stdout);
    return 0;
  }
  if (flags->positional().size() != 1) {
    return UsageError("give exactly one recording S.lsr", kReplayUsage);
  }
  const std::string path = flags->positional()[0];
  double speed = 1.0;  // 0: as fast as possible
  if (auto text = flags->Get("speed")) {
    if (*text == "max") {
      speed = 0.0;
    } else if (!absl::SimpleAtod(*text, &speed) || !(speed > 0) || !std::isfinite(speed)) {
      return UsageError(absl::StrCat("--speed must be a number > 0 or max, got '", *text, "'"),
                        kReplayUsage);
    }
  }
  auto loops = flags->Int("loop", 1);
  auto window = flags->Int("max-in-flight", 4);
  if (!loops.ok() || *loops < 1) return UsageError("--loop must be an integer >= 1", kReplayUsage);
  if (!window.ok() || *window < 1 || *window > 1024) {
    return UsageError("--max-in-flight must be in [1, 1024]", kReplayUsage);
  }
  auto reconnect_s = flags->Double("reconnect-s", 0.0);
  if (!reconnect_s.ok() || !(*reconnect_s >= 0) || *reconnect_s > 86400) {
    return UsageError("--reconnect-s must be a number of seconds in [0, 86400]", kReplayUsage);
  }
  std::optional<ReplaySharedMemory> shm;
  if (flags->Has("shared-memory")) {
    shm.emplace();
    shm->slots = static_cast<int>(*window);
    shm->owner.assign(shm->slots, 0);
    if (auto text = flags->Get("shared-memory-mode")) {
      unsigned mode = 0;
      if (text->empty() || text->size() > 4 ||
          text->find_first_not_of("01234567") != std::string::npos ||
          std::sscanf(text->c_str(), "%o", &mode) != 1) {
        return UsageError(
            absl::StrCat("--shared-memory-mode must be octal permissions like 600 or 644, got '",
                         *text, "'"),
            kReplayUsage);
      }
      shm->mode = static_cast<mode_t>(mode);
    }
  } else if (flags->Has("shared-memory-mode")) {
    return UsageError("--shared-memory-mode needs --shared-memory", kReplayUsage);
  }
  auto client_options = ClientOptionsFromFlags(GetClientFlags(*flags));
  if (!client_options.ok()) {
    return UsageError(std::string(client_options.status().message()), kReplayUsage);
  }

  auto reader = RecordingReader::Open(path);
  if (!reader.ok()) return Fail(reader.status());
  v1::SessionSettings settings = (*reader)->header().settings();
  if (absl::Status s = AddAnalysisFlags(*flags, settings.mutable_analysis()); !s.ok()) {
    return UsageError(std::string(s.message()), kReplayUsage);
  }
  if (auto policy = flags->Get("overload")) {
    if (*policy == "block") {
      settings.set_overload_policy(v1::OVERLOAD_POLICY_BLOCK);
    } else if (*policy == "latest-wins") {
      settings.set_overload_policy(v1::OVERLOAD_POLICY_LATEST_WINS);
    } else if (*policy == "reject") {
      settings.set_overload_policy(v1::OVERLOAD_POLICY_REJECT);
    } else {
      return UsageError(
          absl::StrCat("--overload must be block, latest-wins or reject, got '", *policy, "'"),
          kReplayUsage);
    }
  } else if (speed == 0.0 && settings.overload_policy() == v1::OVERLOAD_POLICY_UNSPECIFIED) {
    // "As fast as the server takes them" is flow control, not a flood of drops.
    settings.set_overload_policy(v1::OVERLOAD_POLICY_BLOCK);
  }
  const bool has_truth = (*reader)->header().has_truth();

  std::FILE* results = nullptr;
  if (auto r = flags->Get("results")) {
    if (absl::Status s = EnsureParentDir(*r); !s.ok()) return Fail(s);
    results = std::fopen(r->c_str(), "w");
    if (results == nullptr) {
      return Fail(absl::PermissionDeniedError(absl::StrCat(*r, ": cannot open for writing")));
    }
  }
  const std::optional<std::string> overlays = flags->Get("overlays");

  auto connected = Client::Connect(*client_options);
  if (!connected.ok()) {
    if (results) std::fclose(results);
    return Fail(connected.status());
  }
  const StreamOptions stream_options{.session_id = flags->Get("session").value_or(""),
                                     .settings = settings,
                                     .max_in_flight = static_cast<int>(*window)};
  auto opened = (*connected)->OpenStream(stream_options);
  if (!opened.ok()) {
    if (results) std::fclose(results);
    return Fail(opened.status());
  }
  // The stream of the current connection; a reconnect replaces both (the
  // stream first: it must not outlive its client).
  std::unique_ptr<Client> client = *std::move(connected);
  std::unique_ptr<Stream> stream = *std::move(opened);
  int connection = 0;
  // A reconnect resumes this id, also when the server chose it.
  const std::string session = stream->opened().session_id();

  ReplayStats stats;
  std::mutex sent_mu;
  std::condition_variable answered_cv;  // a frame left sent_frames, or a reader ended
  std::map<uint64_t, SentFrame> sent_frames;
  bool reader_done = false;  // the current connection's answers are all read; guarded by sent_mu
  const auto start = Clock::now();
  const bool tty = isatty(fileno(stderr));
  std::atomic<bool> done{false};
  auto progress_line = [&] {
    std::lock_guard<std::mutex> lock(stats.mu);
    const double s = std::chrono::duration<double>(Clock::now() - start).count();
    return absl::StrFormat(
        "replay: sent %d, received %d, %.1f fps, latency p50 %.0f p99 %.0f ms, cache hits %.0f%%, "
        "dropped %d, failed %d",
        stats.sent, stats.results + stats.dropped + stats.failed,
        s > 0 ? (stats.results + stats.dropped + stats.failed) / s : 0.0,
        Percentile(stats.latency_ms, 50), Percentile(stats.latency_ms, 99),
        stats.windows > 0 ? 100.0 * stats.hits / stats.windows : 0.0, stats.dropped, stats.failed);
  };
  // Live progress: rewritten in place on a terminal, a line every 5 s in a log.
  std::thread progress([&] {
    auto last = Clock::now();
    while (!done.load()) {
      std::this_thread::sleep_for(std::chrono::milliseconds(250));
      if (tty) {
        std::fprintf(stderr, "\r%s\033[K", progress_line().c_str());
      } else if (Clock::now() - last > std::chrono::seconds(5)) {
        std::fprintf(stderr, "%s\n", progress_line().c_str());
        last = Clock::now();
      }
    }
  });

  absl::Status output_error;
  // Reads one connection's answers; `k` numbers the connection in --results.
  auto read_answers = [&](Stream* s, int k) {
    while (std::optional<StreamAnswer> a = s->Read()) {
      const v1::StreamResponse& r = a->response;
      SentFrame frame;
      {
        std::lock_guard<std::mutex> lock(sent_mu);
        auto it = sent_frames.find(r.sequence());
        if (it == sent_frames.end()) {
          // Answered already (sent again after a reconnect): counted once.
          std::lock_guard<std::mutex> stats_lock(stats.mu);
          ++stats.duplicates;
          continue;
        }
        frame = std::move(it->second);
        sent_frames.erase(it);
        answered_cv.notify_all();
      }
      Json line = {{"sequence", r.sequence()},
                   {"file_sequence", frame.file_sequence},
                   {"loop", frame.loop},
                   {"connection", k},
                   {"latency_ms", a->latency_ms}};
      std::lock_guard<std::mutex> lock(stats.mu);
      stats.latency_ms.push_back(a->latency_ms);
      if (r.has_result()) {
        const v1::FrameResult& res = r.result();
        ++stats.results;
        stats.hits += res.cache_hits();
        stats.windows += res.cache_hits() + res.cache_misses() + res.cache_retunes();
        stats.server_ms.push_back(res.latency().total_ms());
        line["status"] = "result";
        Json atoms = Json::array();
        std::vector<PointXY> points;
        for (const v1::Atom& atom : res.atoms()) {
          atoms.push_back({atom.x(), atom.y(), atom.sigma()});
          points.push_back({atom.x(), atom.y()});
        }
        line["num_atoms"] = res.atoms_size();
        line["atoms_xy_sigma"] = std::move(atoms);
        line["rewards"] = {{"qc", res.rewards().qc()}, {"er", res.rewards().er()}};
        line["cache"] = {{"hits", res.cache_hits()},
                         {"misses", res.cache_misses()},
                         {"retunes", res.cache_retunes()}};
        line["server_total_ms"] = res.latency().total_ms();
        if (res.has_amorphous()) {
          int amorphous_atoms = 0;
          for (const v1::Atom& atom : res.atoms()) amorphous_atoms += atom.amorphous();
          const v1::AmorphousStage& st = res.amorphous();
          line["amorphous"] = {{"regions", res.amorphous_regions_size()},
                               {"area_fraction", st.area_fraction()},
                               {"atoms", amorphous_atoms},
                               {"cache",
                                {{"hits", st.cache_hits()},
                                 {"misses", st.cache_misses()},
                                 {"retunes", st.cache_retunes()},
                                 {"skipped", st.skipped()}}},
                               {"ms", res.latency().gmm_ms()}};
          stats.amorphous_area_sum += st.area_fraction();
          ++stats.amorphous_frames;
          if (frame.has_truth && !frame.truth.empty()) {
            line["amorphous"]["truth_atom_share"] =
                static_cast<double>(frame.truth_amorphous) / frame.truth.size();
            line["amorphous"]["atom_share"] =
                res.atoms_size() > 0 ? static_cast<double>(amorphous_atoms) / res.atoms_size()
                                     : 0.0;
          }
        }
        if (frame.has_truth) {
          const double nn =
              settings.prior().nearest_neighbor_angstrom() / settings.prior().pixel_size_angstrom();
          auto acc = MatchToTruth(points, frame.truth, 0.3 * nn);
          if (acc.ok()) {
            line["f1"] = acc->f1;
            stats.f1_sum += acc->f1;
            stats.f1_min = std::min(stats.f1_min, acc->f1);
            ++stats.f1_count;
          }
        }
        if (overlays && frame.pixels) {
          std::vector<Blob> blobs;
          for (const v1::Atom& atom : res.atoms()) {
            blobs.push_back(
                {.x = atom.x(), .y = atom.y(), .sigma = atom.sigma(), .response = atom.response()});
          }
          auto image = PixelsToImage(*frame.pixels);
          absl::StatusOr<cv::Mat> normalized =
              image.ok() ? NormalizeFrame(*image, NormalizeOptions{}) : image.status();
          AmorphousMarks marks;
          if (res.has_amorphous()) {
            for (const v1::Atom& atom : res.atoms()) marks.amorphous.push_back(atom.amorphous());
            for (const v1::AmorphousRegion& g : res.amorphous_regions()) {
              std::vector<PointXY>& outline = marks.outlines.emplace_back();
              for (int k = 0; k < std::min(g.contour_x_size(), g.contour_y_size()); ++k) {
                outline.push_back({g.contour_x(k), g.contour_y(k)});
              }
            }
          }
          absl::Status st =
              normalized.ok()
                  ? WriteOverlay(*normalized, blobs, marks,
                                 absl::StrFormat("%s/frame_%06d.png", *overlays, r.sequence()))
                  : normalized.status();
          if (!st.ok() && output_error.ok()) output_error = st;
        }
      } else if (r.has_dropped()) {
        ++stats.dropped;
        line["status"] = "dropped";
        line["reason"] = v1::FrameDropped::Reason_Name(r.dropped().reason());
      } else if (r.has_error()) {
        ++stats.failed;
        line["status"] = "error";
        line["code"] = r.error().code();
        line["message"] = r.error().message();
      }
      if (results && std::fprintf(results, "%s\n", line.dump().c_str()) < 0 && output_error.ok()) {
        output_error = absl::DataLossError("--results: write failed");
      }
    }
    std::lock_guard<std::mutex> lock(sent_mu);
    reader_done = true;
    answered_cv.notify_all();
  };
  std::thread answers([&, s = stream.get()] { read_answers(s, 0); });

  auto unanswered = [&] {
    std::lock_guard<std::mutex> lock(sent_mu);
    return !sent_frames.empty();
  };
  // After the stream failed with `why`: ends it (its answers are read to the
  // end), then, with --reconnect-s and a retryable error, reconnects with
  // backoff until the budget of this outage is spent, resumes the session
  // and sends again every frame not answered. Returns the error to give up on.
  auto reconnect = [&](absl::Status why) -> absl::Status {
    if (*reconnect_s <= 0 || !Retryable(why)) return why;
    const auto outage = Clock::now();
    double backoff_s = 0.2;
    for (;;) {
      if (stream != nullptr) (void)stream->Finish();
      if (answers.joinable()) answers.join();
      stream.reset();
      client.reset();
      const double left =
          *reconnect_s - std::chrono::duration<double>(Clock::now() - outage).count();
      if (left <= 0) {
        return absl::UnavailableError(
            absl::StrFormat("gave up reconnecting to session %s after %.3g s (--reconnect-s): %s",
                            session, *reconnect_s, why.message()));
      }
      std::this_thread::sleep_for(std::chrono::duration<double>(std::min(backoff_s, left)));
      backoff_s = std::min(2 * backoff_s, 2.0);
      ClientOptions options = *client_options;
      options.connect_timeout_s = std::max(0.1, std::min(left, options.connect_timeout_s));
      auto c = Client::Connect(options);
      if (!c.ok()) {
        why = c.status();
        if (!Retryable(why)) return why;
        continue;
      }
      StreamOptions resume = stream_options;
      resume.session_id = session;
      auto s = (*c)->OpenStream(resume);
      if (!s.ok()) {
        why = s.status();
        if (!Retryable(why)) return why;
        continue;
      }
      // A restarted daemon forgot the region: register it again before the
      // frames that use it are sent again.
      if (shm && shm->buffer != nullptr) {
        auto registered = (*c)->RegisterSharedMemory(shm->region, *shm->buffer);
        if (!registered.ok()) {
          why = registered.status();
          if (!Retryable(why)) return why;
          continue;
        }
      }
      client = *std::move(c);
      stream = *std::move(s);
      ++connection;
      {
        std::lock_guard<std::mutex> lock(sent_mu);
        reader_done = false;
      }
      answers = std::thread([&, s = stream.get(), k = connection] { read_answers(s, k); });
      std::vector<v1::Frame> again;
      {
        std::lock_guard<std::mutex> lock(sent_mu);
        for (const auto& [sequence, sent] : sent_frames) {
          if (sent.frame) again.push_back(*sent.frame);
        }
      }
      std::fprintf(stderr,
                   "replay: reconnected after %.1f s (session %s, %s), sending %zu unanswered "
                   "frames again\n",
                   std::chrono::duration<double>(Clock::now() - outage).count(), session.c_str(),
                   stream->opened().resumed() ? "resumed" : "new on this server", again.size());
      {
        std::lock_guard<std::mutex> lock(stats.mu);
        ++stats.reconnects;
      }
      absl::Status pushed;
      for (v1::Frame& f : again) {
        pushed = stream->Push(std::move(f));
        if (!pushed.ok()) break;
        std::lock_guard<std::mutex> lock(stats.mu);
        ++stats.resent;
      }
      if (pushed.ok()) return absl::OkStatus();
      why = pushed;  // down again at once: same outage, same budget
      if (!Retryable(why)) return why;
    }
  };

  // --shared-memory: puts the frame's pixels into the next slot of the ring
  // (making and registering the buffer at the first frame), waiting until
  // the slot's last frame was answered. A frame that does not decode or fit
  // stays as it is, in the message: the daemon then reports it as usual.
  auto to_shared_memory = [&](v1::Frame& frame) -> absl::Status {
    // The frame is already in wire form: checked as the daemon checks it
    // (DecodeFrame views the bytes, no copy), its bytes go to the slot as
    // they are.
    const bool decodes = server::DecodeFrame(frame, std::numeric_limits<int64_t>::max()).ok();
    const uint64_t bytes = decodes ? frame.pixels().data().size() : 0;
    if (shm->buffer == nullptr && bytes > 0) {
      shm->slot_bytes = bytes;
      auto buffer = SharedMemoryBuffer::Create(shm->slots * bytes, {.mode = shm->mode});
      if (!buffer.ok()) {
        return absl::Status(
            buffer.status().code(),
            absl::StrFormat("--shared-memory: %d slots (--max-in-flight) of %d bytes: %s",
                            shm->slots, bytes, buffer.status().message()));
      }
      shm->buffer = *std::move(buffer);
      shm->region = shm->buffer->key().substr(1);  // "logstar-<pid>-<hex>": a valid name
      auto registered = client->RegisterSharedMemory(shm->region, *shm->buffer);
      if (!registered.ok()) {
        return absl::Status(registered.status().code(),
                            absl::StrCat("--shared-memory: ", registered.status().message()));
      }
    }
    if (bytes == 0 || bytes > shm->slot_bytes) {
      ++shm->in_message;
      return absl::OkStatus();
    }
    const int slot = shm->next;
    for (;;) {
      {
        std::unique_lock<std::mutex> lock(sent_mu);
        answered_cv.wait(lock,
                         [&] { return !sent_frames.contains(shm->owner[slot]) || reader_done; });
        if (!sent_frames.contains(shm->owner[slot])) break;
      }
      // The stream ended with the slot's frame unanswered: as a failed Push,
      // reconnect (which sends it again) or give up.
      absl::Status why = stream->Finish();
      if (why.ok()) why = absl::UnavailableError("the server ended the stream");
      if (absl::Status s = reconnect(why); !s.ok()) return s;
    }
    const uint64_t offset = slot * shm->slot_bytes;
    std::memcpy(shm->buffer->data() + offset, frame.pixels().data().data(), bytes);
    v1::SharedMemoryRef* ref = frame.mutable_pixels()->mutable_shared_memory();  // drops the data
    ref->set_region(shm->region);
    ref->set_offset(offset);
    shm->owner[slot] = frame.sequence();
    shm->next = (slot + 1) % shm->slots;
    ++shm->frames;
    return absl::OkStatus();
  };

  // Send: file order, at the recorded pace divided by --speed, --loop times.
  absl::Status send_error, file_error;
  int64_t file_error_offset = -1;
  uint64_t sequence = 0;
  int64_t frames_per_loop = 0;
  for (int loop = 0; loop < *loops && send_error.ok() && file_error.ok(); ++loop) {
    if (loop > 0) {
      auto again = RecordingReader::Open(path);
      if (!again.ok()) {
        file_error = again.status();
        break;
      }
      *reader = *std::move(again);
    }
    const auto loop_start = Clock::now();
    int64_t first_offset = -1;
    for (;;) {
      v1::RecordedFrame rf;
      absl::StatusOr<bool> next = (*reader)->Next(&rf);
      if (!next.ok()) {
        file_error = next.status();
        file_error_offset = (*reader)->error_offset();
        break;
      }
      if (!*next) break;
      if (loop == 0) ++frames_per_loop;
      if (first_offset < 0) first_offset = rf.offset_ns();
      if (speed > 0) {
        const double due_s = (rf.offset_ns() - first_offset) * 1e-9 / speed;
        std::this_thread::sleep_until(loop_start + std::chrono::duration_cast<Clock::duration>(
                                                       std::chrono::duration<double>(due_s)));
      }
      SentFrame meta;
      meta.file_sequence = rf.frame().sequence();
      meta.loop = loop;
      meta.has_truth = has_truth;
      for (const v1::TruthAtom& t : rf.truth()) {
        meta.truth.push_back({t.x(), t.y()});
        meta.truth_amorphous += t.amorphous();
      }
      v1::Frame frame = std::move(*rf.mutable_frame());
      frame.set_sequence(++sequence);  // increasing across loops, as the server wants
      frame.clear_session_id();
      *frame.mutable_send_time() = Now();
      if (overlays) meta.pixels = std::make_shared<v1::PixelData>(frame.pixels());
      if (shm) {
        if (absl::Status s = to_shared_memory(frame); !s.ok()) {
          send_error = s;
          break;
        }
      }
      if (*reconnect_s > 0) meta.frame = frame;  // at most --max-in-flight kept
      {
        std::lock_guard<std::mutex> lock(sent_mu);
        sent_frames[sequence] = std::move(meta);
      }
      if (absl::Status s = stream->Push(std::move(frame)); !s.ok()) {
        // The frame stays unanswered in sent_frames: a reconnect sends it again.
        if (s = reconnect(s); !s.ok()) {
          send_error = s;
          break;
        }
      }
      std::lock_guard<std::mutex> lock(stats.mu);
      ++stats.sent;
    }
  }
  absl::Status final_status = stream != nullptr ? stream->Finish() : absl::OkStatus();
  if (answers.joinable()) answers.join();
  // Lost at the end: reconnect and wait for the answers still missing.
  while (!final_status.ok() && send_error.ok() && *reconnect_s > 0 && Retryable(final_status) &&
         unanswered()) {
    if (absl::Status s = reconnect(final_status); !s.ok()) {
      final_status = s;
      break;
    }
    final_status = stream->Finish();
    answers.join();
  }
  // A server that ended the stream (shutdown) after answering every frame
  // left nothing to resume: with --reconnect-s that is a complete replay.
  if (*reconnect_s > 0 && Retryable(final_status) && send_error.ok() && !unanswered()) {
    final_status = absl::OkStatus();
  }
  if (shm && shm->buffer != nullptr && client != nullptr) {
    // Every frame is answered or lost: the daemon may let go of the buffer.
    (void)client->UnregisterSharedMemory(shm->region);
  }
  done = true;
  progress.join();
  if (tty) std::fprintf(stderr, "\r%s\033[K\n", progress_line().c_str());
  if (results && std::fclose(results) != 0 && output_error.ok()) {
    output_error = absl::DataLossError("--results: close failed");
  }

  const double elapsed = std::chrono::duration<double>(Clock::now() - start).count();
  const int64_t answered = stats.results + stats.dropped + stats.failed;
  const int64_t lost = stats.sent - answered;
  std::printf("replay: %s -> logstard at %s, session %s\n", path.c_str(),
              client_options->address.c_str(), session.c_str());
  std::printf("  %-22s %lld (%lld per loop x %lld)\n", "frames sent",
              static_cast<long long>(stats.sent), static_cast<long long>(frames_per_loop),
              static_cast<long long>(*loops));
  std::printf("  %-22s %lld\n", "results", static_cast<long long>(stats.results));
  std::printf("  %-22s %lld\n", "dropped", static_cast<long long>(stats.dropped));
  std::printf("  %-22s %lld\n", "failed", static_cast<long long>(stats.failed));
  std::printf("  %-22s %lld\n", "lost (never answered)", static_cast<long long>(lost));
  if (*reconnect_s > 0) {
    std::printf("  %-22s %lld (frames sent again %lld, duplicate answers ignored %lld)\n",
                "reconnects", static_cast<long long>(stats.reconnects),
                static_cast<long long>(stats.resent), static_cast<long long>(stats.duplicates));
  }
  if (shm) {
    std::printf(
        "  %-22s %lld frames through region %s (%d slots of %llu bytes), %lld in the "
        "message\n",
        "shared memory", static_cast<long long>(shm->frames),
        shm->region.empty() ? "(none)" : shm->region.c_str(), shm->slots,
        static_cast<unsigned long long>(shm->slot_bytes), static_cast<long long>(shm->in_message));
  }
  std::printf("  %-22s %.2f frames/s over %.1f s\n", "throughput",
              elapsed > 0 ? answered / elapsed : 0.0, elapsed);
  std::printf("  %-22s p50 %.1f  p99 %.1f ms (push to answer)\n", "latency",
              Percentile(stats.latency_ms, 50), Percentile(stats.latency_ms, 99));
  std::printf("  %-22s p50 %.1f  p99 %.1f ms\n", "server time", Percentile(stats.server_ms, 50),
              Percentile(stats.server_ms, 99));
  std::printf("  %-22s %.1f %% of %lld windows\n", "cache hit rate",
              stats.windows > 0 ? 100.0 * stats.hits / stats.windows : 0.0,
              static_cast<long long>(stats.windows));
  if (stats.f1_count > 0) {
    std::printf("  %-22s mean %.3f, min %.3f\n", "F1 vs truth", stats.f1_sum / stats.f1_count,
                stats.f1_min);
  }
  if (stats.amorphous_frames > 0) {
    std::printf("  %-22s mean %.3f of the frame\n", "amorphous area",
                stats.amorphous_area_sum / stats.amorphous_frames);
  }
  int rc = 0;
  if (!file_error.ok()) {
    std::fprintf(stderr,
                 "logstar: error: %s; the %lld intact frames before byte offset %lld were sent\n",
                 std::string(file_error.message()).c_str(), static_cast<long long>(frames_per_loop),
                 static_cast<long long>(file_error_offset));
    rc = 1;
  }
  for (const absl::Status& s : {send_error, final_status, output_error}) {
    if (!s.ok()) {
      std::fprintf(stderr, "logstar: error: %s\n", std::string(s.message()).c_str());
      rc = 1;
      break;
    }
  }
  if (stats.dropped + stats.failed + lost > 0) {
    std::fprintf(stderr, "logstar: error: %lld frames dropped, %lld failed, %lld lost\n",
                 static_cast<long long>(stats.dropped), static_cast<long long>(stats.failed),
                 static_cast<long long>(lost));
    rc = 1;
  }
  return rc;
}

// ---------------------------------------------------------------- status

namespace {

constexpr char kStatusUsage[] =
    "usage: logstar status --server ADDR [--session ID]... [--tls ...] [--token T]\n"
    "Health of logstard and of its analysis service, then one line per session the\n"
    "server holds (attached streams, time since last use, frame counters, window cache\n"
    "and amorphous-stage cache counters) and their total; with --session, that\n"
    "session's settings and cache contents too.\n"
    "Exit code 0 when both are SERVING and every listing succeeded; 1 otherwise.\n";

// Seconds since a server timestamp, by this machine's clock (the daemon's
// and the client's clocks may differ a little; never negative).
double SecondsSince(const google::protobuf::Timestamp& t) {
  const absl::Time then = absl::FromUnixSeconds(t.seconds()) + absl::Nanoseconds(t.nanos());
  return std::max(0.0, absl::ToDoubleSeconds(absl::Now() - then));
}

std::string SessionRow(const std::string& id, int id_width, const std::string& streams,
                       const std::string& idle, const v1::SessionCounters& c) {
  return absl::StrFormat("  %-*s %7s %9s %9u %9u %8u %7u %7u %7u %8u %8u %8u %8u\n", id_width, id,
                         streams, idle, c.frames_received(), c.frames_analysed(),
                         c.frames_dropped(), c.frames_failed(), c.cache_hits(), c.cache_misses(),
                         c.cache_retunes(), c.amorphous_hits(), c.amorphous_misses(),
                         c.amorphous_retunes());
}

// The table of every session and their total. Returns false when the
// listing failed (reported on stderr).
bool PrintSessionTable(Client& client) {
  auto list = client.ListSessions();
  if (!list.ok()) {
    if (absl::IsUnimplemented(list.status())) {
      // A daemon older than ListSessions: health still says what it can.
      std::printf("sessions: not listed (this logstard has no ListSessions; use --session ID)\n");
      return true;
    }
    std::fprintf(stderr, "logstar: error: %s\n", std::string(list.status().message()).c_str());
    return false;
  }
  std::printf("sessions: %zu (counters since each session was created)\n", list->size());
  if (list->empty()) return true;
  int id_width = 7;  // "session"
  for (const v1::SessionInfo& info : *list) {
    id_width = std::max(id_width, static_cast<int>(info.session_id().size()));
  }
  // Two header lines: the column groups, then the columns.
  std::printf("  %-*s %7s %9s %-36s %-23s %s\n", id_width, "", "", "", "frames", "cache (windows)",
              "amorphous cache (windows)");
  std::printf("  %-*s %7s %9s %9s %9s %8s %7s %7s %7s %8s %8s %8s %8s\n", id_width, "session",
              "streams", "idle", "received", "analysed", "dropped", "failed", "hits", "misses",
              "retunes", "hits", "misses", "retunes");
  v1::SessionCounters total;
  int total_streams = 0;
  for (const v1::SessionInfo& info : *list) {
    const v1::SessionCounters& c = info.counters();
    total.set_frames_received(total.frames_received() + c.frames_received());
    total.set_frames_analysed(total.frames_analysed() + c.frames_analysed());
    total.set_frames_dropped(total.frames_dropped() + c.frames_dropped());
    total.set_frames_failed(total.frames_failed() + c.frames_failed());
    total.set_cache_hits(total.cache_hits() + c.cache_hits());
    total.set_cache_misses(total.cache_misses() + c.cache_misses());
    total.set_cache_retunes(total.cache_retunes() + c.cache_retunes());
    total.set_amorphous_hits(total.amorphous_hits() + c.amorphous_hits());
    total.set_amorphous_misses(total.amorphous_misses() + c.amorphous_misses());
    total.set_amorphous_retunes(total.amorphous_retunes() + c.amorphous_retunes());
    total_streams += info.attached_streams();
    std::fputs(SessionRow(info.session_id(), id_width, absl::StrCat(info.attached_streams()),
                          absl::StrFormat("%.1f s", SecondsSince(info.last_active())), c)
                   .c_str(),
               stdout);
  }
  std::fputs(SessionRow("total", id_width, absl::StrCat(total_streams), "", total).c_str(), stdout);
  return true;
}

}  // namespace

int RunStatus(const std::vector<std::string>& args) {
  // --session may repeat: collect those before the one-value-per-flag parser.
  std::vector<std::string> sessions, rest;
  for (size_t i = 0; i < args.size(); ++i) {
    if (args[i] == "--session" && i + 1 < args.size()) {
      sessions.push_back(args[++i]);
    } else if (args[i].rfind("--session=", 0) == 0) {
      sessions.push_back(args[i].substr(10));
    } else {
      rest.push_back(args[i]);
    }
  }
  auto flags = Flags::Parse(rest, kClientFlagNames, {"tls"});
  if (!flags.ok()) return UsageError(std::string(flags.status().message()), kStatusUsage);
  if (flags->help()) {
    std::fputs(kStatusUsage, stdout);
    std::fputs(kClientFlagsUsage, stdout);
    return 0;
  }
  if (!flags->positional().empty()) {
    return UsageError(absl::StrCat("unexpected argument '", flags->positional()[0], "'"),
                      kStatusUsage);
  }
  auto options = ClientOptionsFromFlags(GetClientFlags(*flags));
  if (!options.ok()) return UsageError(std::string(options.status().message()), kStatusUsage);
  auto client = Client::Connect(*options);
  if (!client.ok()) return Fail(client.status());
  int rc = 0;
  std::printf("logstard at %s\n", options->address.c_str());
  for (const std::string service : {"", "logstar.v1.LogStar"}) {
    auto health = (*client)->Health(service);
    if (!health.ok()) return Fail(health.status());
    std::printf("  %-24s %s\n", service.empty() ? "health (server)" : "health (logstar.v1.LogStar)",
                ServingStatusName(*health));
    if (*health != ServingStatus::kServing) rc = 1;
  }
  if (!PrintSessionTable(**client)) rc = 1;
  for (const std::string& id : sessions) {
    auto info = (*client)->GetSession(id, /*include_cache=*/true);
    if (!info.ok()) {
      std::fprintf(stderr, "logstar: error: %s\n", std::string(info.status().message()).c_str());
      rc = 1;
      continue;
    }
    const v1::SessionCounters& c = info->counters();
    int tuned = 0;
    for (const v1::CachedWindow& w : info->cache().windows()) tuned += w.tuned();
    std::printf("session %s\n", id.c_str());
    std::printf("  %-24s %d\n", "attached streams", info->attached_streams());
    std::printf("  %-24s received %llu, analysed %llu, dropped %llu, failed %llu\n", "frames",
                static_cast<unsigned long long>(c.frames_received()),
                static_cast<unsigned long long>(c.frames_analysed()),
                static_cast<unsigned long long>(c.frames_dropped()),
                static_cast<unsigned long long>(c.frames_failed()));
    std::printf("  %-24s hits %llu, misses %llu, re-tunes %llu\n", "cache (windows)",
                static_cast<unsigned long long>(c.cache_hits()),
                static_cast<unsigned long long>(c.cache_misses()),
                static_cast<unsigned long long>(c.cache_retunes()));
    std::printf("  %-24s hits %llu, misses %llu, re-tunes %llu\n", "amorphous cache",
                static_cast<unsigned long long>(c.amorphous_hits()),
                static_cast<unsigned long long>(c.amorphous_misses()),
                static_cast<unsigned long long>(c.amorphous_retunes()));
    std::printf("  %-24s %d of %d windows tuned (%ux%u frames)\n", "cache contents", tuned,
                info->cache().windows_size(), info->cache().width(), info->cache().height());
    std::printf("  %-24s %.4f A/px, window %d, evaluations %d\n", "settings",
                info->settings().prior().pixel_size_angstrom(),
                info->settings().analysis().window(), info->settings().analysis().evaluations());
  }
  return rc;
}

}  // namespace logstar::cli
