// `logstar replay`: sends a recorded stream (.lsr, clients/cpp/recording.h)
// to logstard at its recorded pace and reads every answer, through the C++
// client library's ReconnectingStream (--reconnect-s) and SharedMemoryRing
// (--shared-memory). Writes --results lines and --overlays as answers come
// and a summary at the end.
#include <sys/types.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <limits>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "absl/base/thread_annotations.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "clients/cli/analysis_json.h"
#include "clients/cli/commands.h"
#include "clients/cli/common.h"
#include "clients/cli/recording_flags.h"
#include "clients/cli/remote.h"
#include "clients/cpp/client.h"
#include "clients/cpp/reconnecting_stream.h"
#include "clients/cpp/recording.h"
#include "clients/cpp/shared_memory_ring.h"
#include "engine/base/mutex.h"
#include "engine/image/normalize.h"
#include "engine/physics/accuracy.h"

namespace logstar::cli {
namespace {

using Clock = std::chrono::steady_clock;
using Json = nlohmann::ordered_json;

constexpr char kReplayUsage[] =
    "usage: logstar replay S.lsr --server ADDR [--speed 1|N|max] [--loop K]\n"
    "                      [--results R.jsonl] [--overlays DIR] [--session ID]\n"
    "                      [--max-in-flight N] [--window PX] [--evals N] [--overload P]\n"
    "                      [--reconnect-s S] [--shared-memory [--shared-memory-mode M]]\n"
    "                      [--tls] [--tls-ca F] [--tls-cert F --tls-key F] [--token T]\n"
    "Sends a recorded stream to logstard at its original pace and reads every answer.\n"
    "  --speed S          1 = as recorded (default), N = N times faster, max = no waiting\n"
    "  --loop K           send the recording K times (default 1)\n"
    "  --results R.jsonl  one JSON line per frame: sequence, status, atoms, latency, windows\n"
    "                     (with their fronts; `logstar report` draws them)\n"
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

// ---------------------------------------------------------------- flags

// What the flags ask for.
struct ReplayRequest {
  std::string path;
  double speed = 1.0;  // 0: as fast as possible
  int64_t loops = 1;
  int max_in_flight = 4;
  double reconnect_s = 0.0;
  std::optional<mode_t> shared_memory_mode;  // set: --shared-memory
  ClientOptions client;
  std::optional<std::string> results, overlays, session;
};

// --shared-memory-mode: octal permissions.
absl::StatusOr<mode_t> ParseModeFlag(const Flags& flags) {
  const std::optional<std::string> text = flags.Get("shared-memory-mode");
  if (!text) return mode_t{0600};
  unsigned mode = 0;
  if (text->empty() || text->size() > 4 ||
      text->find_first_not_of("01234567") != std::string::npos ||
      std::sscanf(text->c_str(), "%o", &mode) != 1) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--shared-memory-mode must be octal permissions like 600 or 644, got '", *text, "'"));
  }
  return static_cast<mode_t>(mode);
}

// Every flag but the analysis settings; errors are usage errors.
absl::StatusOr<ReplayRequest> ParseReplayFlags(const Flags& flags) {
  if (flags.positional().size() != 1) {
    return absl::InvalidArgumentError("give exactly one recording S.lsr");
  }
  ReplayRequest r;
  r.path = flags.positional()[0];
  if (auto text = flags.Get("speed")) {
    if (*text == "max") {
      r.speed = 0.0;
    } else if (!absl::SimpleAtod(*text, &r.speed) || !(r.speed > 0) || !std::isfinite(r.speed)) {
      return absl::InvalidArgumentError(
          absl::StrCat("--speed must be a number > 0 or max, got '", *text, "'"));
    }
  }
  auto loops = flags.Int("loop", 1);
  auto window = flags.Int("max-in-flight", 4);
  if (!loops.ok() || *loops < 1)
    return absl::InvalidArgumentError("--loop must be an integer >= 1");
  if (!window.ok() || *window < 1 || *window > 1024) {
    return absl::InvalidArgumentError("--max-in-flight must be in [1, 1024]");
  }
  r.loops = *loops;
  r.max_in_flight = static_cast<int>(*window);
  auto reconnect_s = flags.Double("reconnect-s", 0.0);
  if (!reconnect_s.ok() || !(*reconnect_s >= 0) || *reconnect_s > 86400) {
    return absl::InvalidArgumentError("--reconnect-s must be a number of seconds in [0, 86400]");
  }
  r.reconnect_s = *reconnect_s;
  if (flags.Has("shared-memory")) {
    absl::StatusOr<mode_t> mode = ParseModeFlag(flags);
    if (!mode.ok()) return mode.status();
    r.shared_memory_mode = *mode;
  } else if (flags.Has("shared-memory-mode")) {
    return absl::InvalidArgumentError("--shared-memory-mode needs --shared-memory");
  }
  auto client = ClientOptionsFromFlags(ClientFlagsFrom(flags));
  if (!client.ok()) return client.status();
  r.client = *client;
  r.results = flags.Get("results");
  r.overlays = flags.Get("overlays");
  r.session = flags.Get("session");
  return r;
}

// The recording's settings with --window, --evals, --gmm and --overload.
absl::Status ApplySettingsFlags(const Flags& flags, double speed, v1::SessionSettings& settings) {
  if (absl::Status s = AddAnalysisFlags(flags, settings.mutable_analysis()); !s.ok()) return s;
  if (auto policy = flags.Get("overload")) {
    if (*policy == "block") {
      settings.set_overload_policy(v1::OVERLOAD_POLICY_BLOCK);
    } else if (*policy == "latest-wins") {
      settings.set_overload_policy(v1::OVERLOAD_POLICY_LATEST_WINS);
    } else if (*policy == "reject") {
      settings.set_overload_policy(v1::OVERLOAD_POLICY_REJECT);
    } else {
      return absl::InvalidArgumentError(
          absl::StrCat("--overload must be block, latest-wins or reject, got '", *policy, "'"));
    }
  } else if (speed == 0.0 && settings.overload_policy() == v1::OVERLOAD_POLICY_UNSPECIFIED) {
    // "As fast as the server takes them" is flow control, not a flood of drops.
    settings.set_overload_policy(v1::OVERLOAD_POLICY_BLOCK);
  }
  return absl::OkStatus();
}

// ---------------------------------------------------------------- answers

struct ReplayStats {
  Mutex mu;
  int64_t sent ABSL_GUARDED_BY(mu) = 0;
  int64_t results ABSL_GUARDED_BY(mu) = 0;
  int64_t dropped ABSL_GUARDED_BY(mu) = 0;
  int64_t failed ABSL_GUARDED_BY(mu) = 0;
  int64_t windows ABSL_GUARDED_BY(mu) = 0;
  int64_t hits ABSL_GUARDED_BY(mu) = 0;
  std::vector<double> latency_ms ABSL_GUARDED_BY(mu);
  std::vector<double> server_ms ABSL_GUARDED_BY(mu);
  double f1_sum ABSL_GUARDED_BY(mu) = 0.0;
  double f1_min ABSL_GUARDED_BY(mu) = 1.0;
  int64_t f1_count ABSL_GUARDED_BY(mu) = 0;
  // Over frames with the amorphous stage.
  double amorphous_area_sum ABSL_GUARDED_BY(mu) = 0.0;
  int64_t amorphous_frames ABSL_GUARDED_BY(mu) = 0;
  // Results whose prior disagrees with the frame's lattice, and the last
  // distinct warnings (printed once each in the summary).
  int64_t with_warnings ABSL_GUARDED_BY(mu) = 0;
  std::vector<std::string> warnings ABSL_GUARDED_BY(mu);
};

// What the reading side needs about a sent frame until it is answered.
struct SentFrame {
  uint64_t file_sequence = 0;
  int loop = 0;
  std::vector<PointXY> truth;
  int truth_amorphous = 0;  // truth atoms in amorphous material
  bool has_truth = false;
  std::shared_ptr<const v1::PixelData> pixels;  // for --overlays
};

// The reading side: per answer a --results line, the statistics and an
// overlay. Expect() is called by the sending thread before the frame goes
// out, Take() by the thread reading the stream's answers (one per frame).
class AnswerReader {
 public:
  AnswerReader(const v1::SessionSettings& settings, std::FILE* results,
               std::optional<std::string> overlays, ReplayStats& stats)
      : settings_(settings), results_(results), overlays_(std::move(overlays)), stats_(stats) {}

  void Expect(uint64_t sequence, SentFrame frame) ABSL_LOCKS_EXCLUDED(mu_) {
    MutexLock lock(&mu_);
    expected_[sequence] = std::move(frame);
  }

  void Take(const ReconnectingStream::Answer& a) ABSL_LOCKS_EXCLUDED(mu_, stats_.mu) {
    const v1::StreamResponse& r = a.response;
    SentFrame frame;
    {
      MutexLock lock(&mu_);
      auto it = expected_.find(r.sequence());
      if (it != expected_.end()) {
        frame = std::move(it->second);
        expected_.erase(it);
      }
    }
    Json line = {{"sequence", r.sequence()},
                 {"file_sequence", frame.file_sequence},
                 {"loop", frame.loop},
                 {"connection", a.connection},
                 {"latency_ms", a.latency_ms}};
    {
      MutexLock lock(&stats_.mu);
      stats_.latency_ms.push_back(a.latency_ms);
      if (r.has_result()) {
        TakeResult(r.result(), frame, line);
      } else if (r.has_dropped()) {
        ++stats_.dropped;
        line["status"] = "dropped";
        line["reason"] = v1::FrameDropped::Reason_Name(r.dropped().reason());
      } else if (r.has_error()) {
        ++stats_.failed;
        line["status"] = "error";
        line["code"] = r.error().code();
        line["message"] = r.error().message();
      }
    }
    if (r.has_result() && overlays_ && frame.pixels) {
      Keep(DrawOverlay(r.result(), *frame.pixels, r.sequence()));
    }
    if (results_ && std::fprintf(results_, "%s\n", line.dump().c_str()) < 0) {
      Keep(absl::DataLossError("--results: write failed"));
    }
  }

  // The first output error; read after the reading thread ended.
  const absl::Status& output_error() const { return output_error_; }

 private:
  void Keep(const absl::Status& s) {
    if (!s.ok() && output_error_.ok()) output_error_ = s;
  }

  // A result's line and statistics.
  void TakeResult(const v1::FrameResult& res, const SentFrame& frame, Json& line)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(stats_.mu) {
    ++stats_.results;
    stats_.hits += res.cache_hits();
    stats_.windows += res.cache_hits() + res.cache_misses() + res.cache_retunes();
    stats_.server_ms.push_back(res.latency().total_ms());
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
    line["server_decode_ms"] = res.latency().decode_ms();  // with --compress: decompressing
    // The windows as RESULT.json gives them (their fronts: `logstar report`).
    Json windows = Json::array();
    for (const WindowResult& w : AnalysisFromResult(res).windows) {
      windows.push_back(WindowToJson(w));
    }
    line["windows"] = std::move(windows);
    Json warnings = Json::array();
    for (const v1::PriorWarning& w : res.warnings()) {
      warnings.push_back({{"field", w.field()},
                          {"given", w.given()},
                          {"measured", w.measured()},
                          {"message", w.message()}});
      if (std::find(stats_.warnings.begin(), stats_.warnings.end(), w.message()) ==
          stats_.warnings.end()) {
        stats_.warnings.push_back(w.message());
      }
    }
    stats_.with_warnings += res.warnings_size() > 0 ? 1 : 0;
    line["warnings"] = std::move(warnings);
    if (res.prior_used().derived()) {
      line["prior_derived"] = {
          {"nearest_neighbor", res.prior_used().prior().nearest_neighbor_angstrom()},
          {"column_density", res.prior_used().prior().column_density_per_nm2()},
          {"pixel_units", res.prior_used().pixel_units()}};
    }
    if (res.has_amorphous()) TakeAmorphous(res, frame, line);
    if (frame.has_truth) {
      // The prior the frame ran with (an auto one is only known from it);
      // a server without prior_used: the header's.
      const v1::PhysicsPrior& prior =
          res.has_prior_used() ? res.prior_used().prior() : settings_.prior();
      const double nn = prior.nearest_neighbor_angstrom() / prior.pixel_size_angstrom();
      auto acc = MatchToTruth(points, frame.truth, 0.3 * nn);
      if (acc.ok()) {
        line["f1"] = acc->f1;
        stats_.f1_sum += acc->f1;
        stats_.f1_min = std::min(stats_.f1_min, acc->f1);
        ++stats_.f1_count;
      }
    }
  }

  // The amorphous stage's part of a result's line.
  void TakeAmorphous(const v1::FrameResult& res, const SentFrame& frame, Json& line)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(stats_.mu) {
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
    stats_.amorphous_area_sum += st.area_fraction();
    ++stats_.amorphous_frames;
    if (frame.has_truth && !frame.truth.empty()) {
      line["amorphous"]["truth_atom_share"] =
          static_cast<double>(frame.truth_amorphous) / frame.truth.size();
      line["amorphous"]["atom_share"] =
          res.atoms_size() > 0 ? static_cast<double>(amorphous_atoms) / res.atoms_size() : 0.0;
    }
  }

  // --overlays: the frame with its atoms (and amorphous regions) drawn.
  absl::Status DrawOverlay(const v1::FrameResult& res, const v1::PixelData& pixels,
                           uint64_t sequence) const {
    std::vector<Blob> blobs;
    for (const v1::Atom& atom : res.atoms()) {
      blobs.push_back(
          {.x = atom.x(), .y = atom.y(), .sigma = atom.sigma(), .response = atom.response()});
    }
    auto image = PixelsToImage(pixels);
    if (!image.ok()) return image.status();
    absl::StatusOr<cv::Mat> normalized = NormalizeFrame(*image, NormalizeOptions{});
    if (!normalized.ok()) return normalized.status();
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
    // Sublattices by the prior in use (an auto prior has none); the wire's
    // labels are 1-based, 0 = none.
    SublatticeMarks sublattices;
    for (const v1::SublatticePrior& p : res.prior_used().prior().sublattices()) {
      sublattices.names.push_back(p.name());
    }
    if (!sublattices.names.empty()) {
      for (const v1::Atom& atom : res.atoms()) {
        sublattices.labels.push_back(static_cast<int>(atom.sublattice()) - 1);
      }
    }
    // The windows by cache state, from the engine's view of the result.
    const FrameAnalysis analysis = AnalysisFromResult(res);
    const double pixel =
        res.prior_used().pixel_units() ? 0.0 : res.prior_used().prior().pixel_size_angstrom();
    OverlayOptions annotations =
        AnnotatedOverlay(static_cast<int64_t>(sequence), pixel, analysis.windows);
    annotations.fits = OverlayFits(analysis.atoms);
    return WriteOverlay(*normalized, blobs, marks,
                        absl::StrFormat("%s/frame_%06d.png", *overlays_, sequence), sublattices,
                        annotations);
  }

  const v1::SessionSettings& settings_;
  std::FILE* const results_;
  const std::optional<std::string> overlays_;
  ReplayStats& stats_;
  absl::Status output_error_;  // reading thread only
  Mutex mu_;
  std::map<uint64_t, SentFrame> expected_ ABSL_GUARDED_BY(mu_);
};

// Live progress on stderr: rewritten in place on a terminal, a line every
// 5 s in a log; the final line when stopped.
class Progress {
 public:
  explicit Progress(ReplayStats& stats) : stats_(stats), tty_(isatty(fileno(stderr))) {
    thread_ = std::thread([this] { Loop(); });
  }
  ~Progress() { Stop(); }

  void Stop() {
    if (!thread_.joinable()) return;
    done_ = true;
    thread_.join();
    if (tty_) std::fprintf(stderr, "\r%s\033[K\n", Line().c_str());
  }

 private:
  void Loop() {
    auto last = Clock::now();
    while (!done_.load()) {
      std::this_thread::sleep_for(std::chrono::milliseconds(250));
      if (tty_) {
        std::fprintf(stderr, "\r%s\033[K", Line().c_str());
      } else if (Clock::now() - last > std::chrono::seconds(5)) {
        std::fprintf(stderr, "%s\n", Line().c_str());
        last = Clock::now();
      }
    }
  }

  std::string Line() ABSL_LOCKS_EXCLUDED(stats_.mu) {
    MutexLock lock(&stats_.mu);
    const double s = std::chrono::duration<double>(Clock::now() - start_).count();
    const int64_t received = stats_.results + stats_.dropped + stats_.failed;
    return absl::StrFormat(
        "replay: sent %d, received %d, %.1f fps, latency p50 %.0f p99 %.0f ms, cache hits "
        "%.0f%%, dropped %d, failed %d",
        stats_.sent, received, s > 0 ? received / s : 0.0, Percentile(stats_.latency_ms, 50),
        Percentile(stats_.latency_ms, 99),
        stats_.windows > 0 ? 100.0 * stats_.hits / stats_.windows : 0.0, stats_.dropped,
        stats_.failed);
  }

  ReplayStats& stats_;
  const bool tty_;
  const Clock::time_point start_ = Clock::now();
  std::atomic<bool> done_{false};
  std::thread thread_;
};

// ---------------------------------------------------------------- sending

// --shared-memory: the ring, made and registered at the first frame that
// decodes (its size sets the slots'). Frames that do not decode or fit go
// in the message: the daemon then reports them as usual.
struct ReplayRing {
  mode_t mode = 0600;
  int slots = 0;                             // --max-in-flight
  std::unique_ptr<SharedMemoryRing> ring{};  // null until the first frame
  int64_t frames = 0, in_message = 0;
};

// Where the sending stopped, and why.
struct SendOutcome {
  absl::Status send_error, file_error;
  int64_t file_error_offset = -1;
  int64_t frames_per_loop = 0;
};

// Sends the recording: file order, at the recorded pace divided by
// --speed, --loop times; frames numbered anew, increasing across loops.
class Sender {
 public:
  Sender(const ReplayRequest& request, bool has_truth, ReconnectingStream& stream,
         AnswerReader& answers, ReplayStats& stats, std::optional<ReplayRing>& ring)
      : request_(request),
        has_truth_(has_truth),
        stream_(stream),
        answers_(answers),
        stats_(stats),
        ring_(ring) {}

  SendOutcome Run(std::unique_ptr<RecordingReader> reader) {
    SendOutcome out;
    for (int loop = 0; loop < request_.loops && out.send_error.ok() && out.file_error.ok();
         ++loop) {
      if (loop > 0) {
        auto again = RecordingReader::Open(request_.path);
        if (!again.ok()) {
          out.file_error = again.status();
          break;
        }
        reader = *std::move(again);
      }
      SendLoop(*reader, loop, out);
    }
    return out;
  }

 private:
  // One pass over the file.
  void SendLoop(RecordingReader& reader, int loop, SendOutcome& out) {
    const auto loop_start = Clock::now();
    int64_t first_offset = -1;
    for (;;) {
      v1::RecordedFrame rf;
      absl::StatusOr<bool> next = reader.Next(&rf);
      if (!next.ok()) {
        out.file_error = next.status();
        out.file_error_offset = reader.error_offset();
        return;
      }
      if (!*next) return;
      if (loop == 0) ++out.frames_per_loop;
      if (first_offset < 0) first_offset = rf.offset_ns();
      if (request_.speed > 0) {
        const double due_s = (rf.offset_ns() - first_offset) * 1e-9 / request_.speed;
        std::this_thread::sleep_until(loop_start + std::chrono::duration_cast<Clock::duration>(
                                                       std::chrono::duration<double>(due_s)));
      }
      if (absl::Status s = SendFrame(rf, loop); !s.ok()) {
        out.send_error = s;
        return;
      }
    }
  }

  absl::Status SendFrame(v1::RecordedFrame& rf, int loop) {
    SentFrame meta;
    meta.file_sequence = rf.frame().sequence();
    meta.loop = loop;
    meta.has_truth = has_truth_;
    for (const v1::TruthAtom& t : rf.truth()) {
      meta.truth.push_back({t.x(), t.y()});
      meta.truth_amorphous += t.amorphous();
    }
    v1::Frame frame = std::move(*rf.mutable_frame());
    frame.set_sequence(++sequence_);  // increasing across loops, as the server wants
    frame.clear_session_id();
    *frame.mutable_send_time() = ToProtoTime(absl::Now());
    if (request_.overlays) meta.pixels = std::make_shared<v1::PixelData>(frame.pixels());
    answers_.Expect(sequence_, std::move(meta));
    if (absl::Status s = Push(std::move(frame)); !s.ok()) return s;
    MutexLock lock(&stats_.mu);
    ++stats_.sent;
    return absl::OkStatus();
  }

  // Through the ring when there is one and the frame fits, else in the message.
  absl::Status Push(v1::Frame frame) {
    if (!ring_) return stream_.Push(std::move(frame));
    // The frame is already in wire form: checked as the daemon checks it
    // (DecodeFrame views the bytes, no copy), its bytes go to the slot as
    // they are.
    const bool decodes = DecodeFrame(frame, std::numeric_limits<int64_t>::max()).ok();
    const uint64_t bytes = decodes ? frame.pixels().data().size() : 0;
    if (ring_->ring == nullptr && bytes > 0) {
      if (absl::Status s = MakeRing(bytes); !s.ok()) return s;
    }
    if (bytes == 0 || bytes > ring_->ring->slot_bytes()) {
      ++ring_->in_message;
      return stream_.Push(std::move(frame));
    }
    if (absl::Status s = stream_.PushViaSharedMemory(std::move(frame)); !s.ok()) return s;
    ++ring_->frames;
    return absl::OkStatus();
  }

  absl::Status MakeRing(uint64_t slot_bytes) {
    auto ring = SharedMemoryRing::Create(
        {.slots = ring_->slots, .slot_bytes = slot_bytes, .mode = ring_->mode});
    if (!ring.ok()) {
      return absl::Status(
          ring.status().code(),
          absl::StrFormat("--shared-memory: %d slots (--max-in-flight) of %d bytes: %s",
                          ring_->slots, slot_bytes, ring.status().message()));
    }
    ring_->ring = *std::move(ring);
    if (absl::Status s = ring_->ring->Register(*stream_.client()); !s.ok()) {
      return absl::Status(s.code(), absl::StrCat("--shared-memory: ", s.message()));
    }
    stream_.UseSharedMemory(ring_->ring.get());
    return absl::OkStatus();
  }

  const ReplayRequest& request_;
  const bool has_truth_;
  ReconnectingStream& stream_;
  AnswerReader& answers_;
  ReplayStats& stats_;
  std::optional<ReplayRing>& ring_;
  uint64_t sequence_ = 0;
};

// ---------------------------------------------------------------- summary

void PrintReconnect(const ReconnectEvent& e) {
  std::fprintf(stderr,
               "replay: reconnected after %.1f s (session %s, %s), sending %zu unanswered frames "
               "again\n",
               e.outage_s, e.session_id.c_str(), e.resumed ? "resumed" : "new on this server",
               e.resending);
}

// The summary on stdout and the errors on stderr; returns the exit code.
int Summarize(const ReplayRequest& request, const std::string& session, ReplayStats& stats,
              const ReconnectingStream::Counters& counters, const std::optional<ReplayRing>& ring,
              const SendOutcome& sent, const absl::Status& final_status,
              const absl::Status& output_error, double elapsed) {
  // The threads that wrote the statistics have ended; the lock is for the
  // thread-safety analysis.
  MutexLock lock(&stats.mu);
  const int64_t answered = stats.results + stats.dropped + stats.failed;
  const int64_t lost = stats.sent - answered;
  std::printf("replay: %s -> logstard at %s, session %s\n", request.path.c_str(),
              request.client.address.c_str(), session.c_str());
  std::printf("  %-22s %lld (%lld per loop x %lld)\n", "frames sent",
              static_cast<long long>(stats.sent), static_cast<long long>(sent.frames_per_loop),
              static_cast<long long>(request.loops));
  std::printf("  %-22s %lld\n", "results", static_cast<long long>(stats.results));
  std::printf("  %-22s %lld\n", "dropped", static_cast<long long>(stats.dropped));
  std::printf("  %-22s %lld\n", "failed", static_cast<long long>(stats.failed));
  std::printf("  %-22s %lld\n", "lost (never answered)", static_cast<long long>(lost));
  if (request.reconnect_s > 0) {
    std::printf("  %-22s %lld (frames sent again %lld, duplicate answers ignored %lld)\n",
                "reconnects", static_cast<long long>(counters.reconnects),
                static_cast<long long>(counters.resent),
                static_cast<long long>(counters.duplicates));
  }
  if (ring) {
    const SharedMemoryRing* r = ring->ring.get();
    std::printf(
        "  %-22s %lld frames through region %s (%d slots of %llu bytes), %lld in the "
        "message\n",
        "shared memory", static_cast<long long>(ring->frames),
        r == nullptr ? "(none)" : r->region().c_str(), ring->slots,
        static_cast<unsigned long long>(r == nullptr ? 0 : r->slot_bytes()),
        static_cast<long long>(ring->in_message));
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
  std::printf("  %-22s %lld results\n", "prior warnings",
              static_cast<long long>(stats.with_warnings));
  for (const std::string& w : stats.warnings) {
    std::fprintf(stderr, "logstar: warning: prior: %s\n", w.c_str());
  }
  int rc = 0;
  if (!sent.file_error.ok()) {
    std::fprintf(stderr,
                 "logstar: error: %s; the %lld intact frames before byte offset %lld were sent\n",
                 std::string(sent.file_error.message()).c_str(),
                 static_cast<long long>(sent.frames_per_loop),
                 static_cast<long long>(sent.file_error_offset));
    rc = 1;
  }
  for (const absl::Status& s : {sent.send_error, final_status, output_error}) {
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

// The replay proper, once the stream is open: the answers' thread, the
// progress line, the sending, the end of the stream and the summary.
int Replay(const ReplayRequest& request, const v1::SessionSettings& settings, bool has_truth,
           std::unique_ptr<RecordingReader> reader, ReconnectingStream& stream,
           std::FILE* results) {
  const auto start = Clock::now();
  ReplayStats stats;
  std::optional<ReplayRing> ring;  // outlives the stream's use of it
  if (request.shared_memory_mode) {
    ring.emplace(ReplayRing{.mode = *request.shared_memory_mode, .slots = request.max_in_flight});
  }
  AnswerReader answers(settings, results, request.overlays, stats);
  std::thread reading([&] {
    while (std::optional<ReconnectingStream::Answer> a = stream.Read()) answers.Take(*a);
  });
  Progress progress(stats);
  const SendOutcome sent =
      Sender(request, has_truth, stream, answers, stats, ring).Run(std::move(reader));
  const absl::Status final_status = stream.Finish();
  reading.join();
  if (ring && ring->ring != nullptr) {
    // Every frame is answered or lost: the daemon may let go of the buffer.
    (void)ring->ring->Close(stream.client());
  }
  progress.Stop();
  absl::Status output_error = answers.output_error();
  if (results && std::fclose(results) != 0 && output_error.ok()) {
    output_error = absl::DataLossError("--results: close failed");
  }
  const double elapsed = std::chrono::duration<double>(Clock::now() - start).count();
  return Summarize(request, stream.session_id(), stats, stream.counters(), ring, sent, final_status,
                   output_error, elapsed);
}

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
  absl::StatusOr<ReplayRequest> request = ParseReplayFlags(*flags);
  if (!request.ok()) return UsageError(std::string(request.status().message()), kReplayUsage);
  auto reader = RecordingReader::Open(request->path);
  if (!reader.ok()) return Fail(reader.status());
  v1::SessionSettings settings = (*reader)->header().settings();
  if (absl::Status s = ApplySettingsFlags(*flags, request->speed, settings); !s.ok()) {
    return UsageError(std::string(s.message()), kReplayUsage);
  }
  const bool has_truth = (*reader)->header().has_truth();
  std::FILE* results = nullptr;
  if (request->results) {
    if (absl::Status s = EnsureParentDir(*request->results); !s.ok()) return Fail(s);
    results = std::fopen(request->results->c_str(), "w");
    if (results == nullptr) {
      return Fail(absl::PermissionDeniedError(
          absl::StrCat(*request->results, ": cannot open for writing")));
    }
  }
  if (absl::Status s = CheckListening(ClientFlagsFrom(*flags), request->client); !s.ok()) {
    if (results) std::fclose(results);
    return Fail(s);
  }
  auto stream = ReconnectingStream::Open(request->client,
                                         {.session_id = request->session.value_or(""),
                                          .settings = settings,
                                          .max_in_flight = request->max_in_flight},
                                         {.reconnect_s = request->reconnect_s,
                                          .budget_name = "--reconnect-s",
                                          .on_reconnect = PrintReconnect});
  if (!stream.ok()) {
    if (results) std::fclose(results);
    return Fail(stream.status());
  }
  return Replay(*request, settings, has_truth, *std::move(reader), **stream, results);
}

}  // namespace logstar::cli
