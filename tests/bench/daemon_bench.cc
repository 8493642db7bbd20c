// End-to-end latency and throughput of logstard over loopback against the
// in-process engine on the same frames: what transport and queueing add.
//
// For each frame size: the same settings and the same generated frames go
// (a) straight to a LogStarAnalyzer and (b) through a Stream RPC to a
// LogStarServer, by one or more transports (--transport, a comma list):
//   tcp   pixels in the message over TCP loopback (the default);
//   unix  pixels in the message over a Unix socket;
//   shm   pixels in one shared memory buffer (clients/cpp/shared_memory.h)
//         registered once, frames at different offsets in it (a ring of 4
//         slots), the messages over TCP loopback. Each timed frame includes
//         copying its pixels into the buffer: a real client has its frame in
//         its own memory unless it acquires straight into the buffer.
//   memfd as shm, in a sealed memory file (clients/cpp/memfd_buffer.h)
//         handed to a daemon on a Unix socket, which reads the frames in
//         place without a copy; the messages over that Unix socket.
//   memfd-inplace
//         as memfd, but the frames are where the client acquired them: each
//         of the (four) generated frames is written into a slot of its own
//         (SharedSlot, clients/cpp/shared_memory.h) before the clock runs,
//         as a camera or reader writing straight into the buffer would, and
//         a frame's message points there: no copy on either side.
// With several transports each frame size and dtype runs them one after
// the other, so they see the machine in the same state. Pixels as float32 (16 MiB at 2048²)
// and as uint16 detector counts (half the bytes; most detectors' native
// type): the transport's share scales with the bytes. The first frame tunes
// every window and is not timed (both caches then hold the same
// parameters); the timed frames are the steady state of a live stream.
// Latency is closed-loop (one frame in flight: send to result received),
// engine and daemon taking turns frame by frame; throughput is open-loop
// (all frames sent at once, block policy).
//
//   daemon_bench [--sizes=512,2048] [--dtypes=float32,uint16] [--frames=30]
//                [--window=256] [--evals=20]
//                [--transport=tcp|unix|shm|memfd|memfd-inplace[,...]]
//                [--json=FILE]
//
// Besides the p50 difference (the target's figure) it prints the server's
// p50 by stage (beside the engine's own normalisation in process, which
// the daemon's decode and normalize stages replace), the transport (round trip minus the server's own total,
// paired per frame) and the per-frame paired difference, which a slow
// drift of the machine's speed moves less, and the floor: the same pixel
// bytes through a bare TCP loopback socket, no gRPC. For shm and memfd
// also the p50 of the copy into the buffer (part of the round trip), and
// the overhead without it (a client that acquires into the buffer).
//
// --json=FILE also writes the figures as one JSON object (for
// tests/bench/perf_report.sh): {"frames", "window", "evals", "threads",
// "transport" (the --transport list), "sizes": [{"size", "dtype",
// "transport" ("tcp", "unix", "shm", "memfd" or "memfd-inplace"), "engine": {"p50_ms", "p95_ms",
// "p99_ms", "frames_per_s"}, "daemon": {...}, "server_total_p50_ms",
// "transport_p50_ms", "paired_overhead_p50_ms", "raw_tcp_p50_ms", "overhead_p50_ms",
// "overhead_p50_pct", "throughput_ratio", and for shm and memfd
// "shm_copy_p50_ms" and "overhead_without_copy_p50_pct"}]}.
#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstring>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <arpa/inet.h>
#include <grpcpp/grpcpp.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "clients/cpp/memfd_buffer.h"
#include "clients/cpp/shared_memory.h"
#include "engine/analysis/analyzer.h"
#include "engine/base/context.h"
#include "engine/image/synth.h"
#include "logstar/v1/service.grpc.pb.h"
#include "server/server.h"

namespace logstar {
namespace {

using Clock = std::chrono::steady_clock;

double Ms(Clock::duration d) { return std::chrono::duration<double, std::milli>(d).count(); }

double Percentile(std::vector<double> v, double p) {
  std::sort(v.begin(), v.end());
  const size_t i = std::min(v.size() - 1, static_cast<size_t>(p / 100.0 * (v.size() - 1) + 0.5));
  return v[i];
}

struct Stats {
  double p50, p95, p99, per_second;
};

void Print(const char* what, const Stats& s) {
  std::printf("  %-8s p50 %8.2f ms  p95 %8.2f ms  p99 %8.2f ms  throughput %7.2f frames/s\n", what,
              s.p50, s.p95, s.p99, s.per_second);
}

// The synthetic frame as the wire carries it: float32 as made, or uint16
// counts (a detector's range: 200 dark, ~4000 on a column).
cv::Mat AsDtype(const cv::Mat& image, v1::DType dtype) {
  if (dtype == v1::DTYPE_FLOAT32) return image;
  cv::Mat counts;
  image.convertTo(counts, CV_16U, 4000.0, 200.0);
  return counts;
}

v1::Frame ToFrame(const cv::Mat& image, v1::DType dtype, uint64_t sequence) {
  v1::Frame frame;
  frame.set_sequence(sequence);
  frame.mutable_pixels()->set_dtype(dtype);
  frame.mutable_pixels()->set_width(image.cols);
  frame.mutable_pixels()->set_height(image.rows);
  frame.mutable_pixels()->set_data(
      std::string(reinterpret_cast<const char*>(image.data), image.total() * image.elemSize()));
  return frame;
}

// The floor under any RPC over TCP loopback: the same bytes through a bare
// socket pair (send all, receive all into a ready buffer, one byte back),
// p50 over `rounds`. What gRPC and protobuf add is the transport figure
// minus this. Returns -1 if a socket call fails.
double RawTcpLoopbackMs(const std::string& bytes, int rounds) {
  const int listener = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof(addr);
  if (listener < 0 || bind(listener, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0 ||
      listen(listener, 1) != 0 ||
      getsockname(listener, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
    if (listener >= 0) close(listener);
    return -1;
  }
  const int sender = socket(AF_INET, SOCK_STREAM, 0);
  if (sender < 0 || connect(sender, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    close(listener);
    if (sender >= 0) close(sender);
    return -1;
  }
  const int receiver = accept(listener, nullptr, nullptr);
  close(listener);
  if (receiver < 0) {
    close(sender);
    return -1;
  }
  std::thread reader([&] {
    std::string buffer(bytes.size(), '\0');
    for (int r = 0; r < rounds; ++r) {
      size_t got = 0;
      while (got < buffer.size()) {
        const ssize_t n = recv(receiver, buffer.data() + got, buffer.size() - got, 0);
        if (n <= 0) return;
        got += static_cast<size_t>(n);
      }
      if (send(receiver, "x", 1, 0) != 1) return;
    }
  });
  std::vector<double> ms;
  for (int r = 0; r < rounds; ++r) {
    const Clock::time_point t = Clock::now();
    size_t sent = 0;
    while (sent < bytes.size()) {
      const ssize_t n = send(sender, bytes.data() + sent, bytes.size() - sent, 0);
      if (n <= 0) break;
      sent += static_cast<size_t>(n);
    }
    char ack;
    if (sent < bytes.size() || recv(sender, &ack, 1, 0) != 1) break;
    ms.push_back(Ms(Clock::now() - t));
  }
  shutdown(sender, SHUT_RDWR);
  reader.join();
  close(sender);
  close(receiver);
  return ms.size() == static_cast<size_t>(rounds) ? Percentile(ms, 50) : -1;
}

// How the daemon's frames travel.
struct Transport {
  std::string name;  // "tcp", "unix", "shm", "memfd" or "memfd-inplace"
  v1::LogStar::Stub* stub = nullptr;
  // shm and memfd: the buffer registered as kRegion, kSlots frames of
  // slot_bytes (null for pixels in the message).
  char* buffer = nullptr;
  uint64_t buffer_bytes = 0;
  uint64_t slot_bytes = 0;
  // memfd-inplace: frame k of the case's images stays in slot k, written
  // once before the clock; requests point there.
  bool in_place = false;
};
constexpr char kRegion[] = "daemon-bench";
// Frames in flight at most in the shm throughput run: each slot is written
// again only after its frame's answer (the proto's contract). Enough to
// keep the server's queue fed (capacity 4, one frame analysed at a time).
constexpr int kSlots = 4;

// shm: copies `image` into `slot` of the buffer (in place: finds it there
// already) and makes the request that points there (nullopt after printing
// what failed).
std::optional<v1::StreamRequest> ShmRequest(const Transport& t, const cv::Mat& image,
                                            uint64_t sequence, int slot) {
  absl::StatusOr<v1::PixelData> pixels;
  if (t.in_place) {
    absl::StatusOr<SharedFrameSlot> place =
        SharedSlot(t.buffer, t.buffer_bytes, t.name, kRegion, slot * t.slot_bytes, image.rows,
                   image.cols, image.type());
    if (place.ok()) {
      pixels = std::move(place->pixels);
    } else {
      pixels = place.status();
    }
  } else {
    pixels =
        ImageToSharedPixels(image, t.buffer, t.buffer_bytes, t.name, kRegion, slot * t.slot_bytes);
  }
  if (!pixels.ok()) {
    std::fprintf(stderr, "%s\n", pixels.status().ToString().c_str());
    return std::nullopt;
  }
  v1::StreamRequest request;
  request.mutable_frame()->set_sequence(sequence);
  *request.mutable_frame()->mutable_pixels() = *std::move(pixels);
  return request;
}

// One frame size, dtype and transport: the latency and throughput of both
// paths, and its "sizes" entry for --json (nullopt after printing what failed).
std::optional<std::string> RunCase(const Transport& transport, const PhysicsPrior& prior,
                                   const std::vector<cv::Mat>& images, int size, v1::DType dtype,
                                   const std::string& dtype_name, int frames, int window,
                                   int evals) {
  v1::LogStar::Stub* stub = transport.stub;
  const bool shm = transport.buffer != nullptr;  // shm or memfd
  AnalyzerOptions ao;
  ao.window = window;
  ao.logstar.optimizer.num_evaluations = evals;
  ao.logstar.optimizer.num_initial = std::min(10, evals);

  // (a) The engine in process.
  auto analyzer = *LogStarAnalyzer::Create(ao, prior);
  (void)analyzer->Analyze(images[0], ExecutionContext::Default());  // tunes

  // (b) The daemon: same settings, one stream.
  v1::SessionSettings settings;
  settings.mutable_prior()->set_pixel_size_angstrom(prior.pixel_size_angstrom);
  settings.mutable_prior()->set_column_density_per_nm2(prior.ColumnDensityPerNm2());
  settings.mutable_prior()->set_nearest_neighbor_angstrom(prior.nearest_neighbor_angstrom);
  settings.mutable_analysis()->set_window(window);
  settings.mutable_analysis()->set_evaluations(evals);
  settings.set_overload_policy(v1::OVERLOAD_POLICY_BLOCK);
  settings.set_queue_capacity(4);
  // tcp and unix: the messages with their pixels, made before the clock runs.
  std::vector<v1::StreamRequest> requests(4);
  for (int i = 0; i < 4; ++i) *requests[i].mutable_frame() = ToFrame(images[i], dtype, i);
  grpc::ClientContext context;
  auto stream = stub->Stream(&context);
  v1::StreamRequest open;
  open.mutable_open()->set_session_id(
      absl::StrCat("bench-", size, "-", dtype_name, "-", transport.name));
  *open.mutable_open()->mutable_settings() = settings;
  v1::StreamResponse response;
  stream->Write(open);
  stream->Read(&response);
  if (transport.in_place) {
    // The acquisition, off the clock: image k into slot k.
    for (size_t k = 0; k < images.size() && k < static_cast<size_t>(kSlots); ++k) {
      absl::StatusOr<SharedFrameSlot> place =
          SharedSlot(transport.buffer, transport.buffer_bytes, transport.name, kRegion,
                     k * transport.slot_bytes, images[k].rows, images[k].cols, images[k].type());
      if (!place.ok()) {
        std::fprintf(stderr, "%s\n", place.status().ToString().c_str());
        return std::nullopt;
      }
      images[k].copyTo(place->image);
    }
  }
  if (shm) {
    std::optional<v1::StreamRequest> first = ShmRequest(transport, images[0], 0, 0);
    if (!first.has_value()) return std::nullopt;
    stream->Write(*first);
  } else {
    stream->Write(requests[0]);
  }
  if (!stream->Read(&response) || !response.has_result()) {  // tunes
    std::fprintf(stderr, "no result: %s\n", response.DebugString().c_str());
    return std::nullopt;
  }
  // Latency: the engine and the daemon take turns frame by frame, so the
  // machine's clock drift and other load hit both alike.
  std::vector<double> engine_ms, daemon_ms, server_ms, copy_ms;
  std::vector<double> queue_ms, decode_ms, normalize_ms, log_ms, gmm_ms, encode_ms;
  std::vector<double> engine_normalize_ms;  // the engine's own pass: check, range and mapping
  for (int i = 0; i < frames; ++i) {
    Clock::time_point t = Clock::now();
    absl::StatusOr<FrameAnalysis> in_process =
        analyzer->Analyze(images[1 + i % 3], ExecutionContext::Default());
    if (!in_process.ok()) return std::nullopt;
    engine_ms.push_back(Ms(Clock::now() - t));
    engine_normalize_ms.push_back(in_process->normalize_ms);
    t = Clock::now();
    if (shm) {
      // The copy into the buffer is on the clock: see the file's comment.
      std::optional<v1::StreamRequest> request = ShmRequest(
          transport, images[1 + i % 3], 1 + i, transport.in_place ? 1 + i % 3 : i % kSlots);
      if (!request.has_value()) return std::nullopt;
      copy_ms.push_back(Ms(Clock::now() - t));
      stream->Write(*request);
    } else {
      // Sequence numbers increase within a stream (the daemon refuses a repeat).
      requests[1 + i % 3].mutable_frame()->set_sequence(1 + i);
      stream->Write(requests[1 + i % 3]);
    }
    if (!stream->Read(&response) || !response.has_result()) {
      std::fprintf(stderr, "no result: %s\n", response.DebugString().c_str());
      return std::nullopt;
    }
    daemon_ms.push_back(Ms(Clock::now() - t));
    const v1::LatencyBreakdown& l = response.result().latency();
    server_ms.push_back(l.total_ms());
    queue_ms.push_back(l.queue_ms());
    decode_ms.push_back(l.decode_ms());
    normalize_ms.push_back(l.normalize_ms());
    log_ms.push_back(l.log_ms());
    gmm_ms.push_back(l.gmm_ms());
    encode_ms.push_back(l.encode_ms());
  }
  // Throughput: the engine back to back, then the daemon with every frame in flight at once.
  const Clock::time_point e0 = Clock::now();
  for (int i = 0; i < frames; ++i) {
    if (!analyzer->Analyze(images[1 + i % 3], ExecutionContext::Default()).ok())
      return std::nullopt;
  }
  const double engine_total = Ms(Clock::now() - e0);
  // shm: the writer fills slot i % kSlots only once frame i - kSlots has been
  // answered, as a client must; tcp and unix send everything at once.
  std::mutex mu;
  std::condition_variable answered_cv;
  int answered = 0;  // guarded by mu
  bool failed = false;
  const Clock::time_point d0 = Clock::now();
  std::thread writer([&] {
    for (int i = 0; i < frames; ++i) {
      if (!shm) {
        requests[1 + i % 3].mutable_frame()->set_sequence(1 + frames + i);
        stream->Write(requests[1 + i % 3]);
        continue;
      }
      {
        std::unique_lock<std::mutex> lock(mu);
        answered_cv.wait(lock, [&] { return answered > i - kSlots; });
      }
      std::optional<v1::StreamRequest> request =
          ShmRequest(transport, images[1 + i % 3], 1 + frames + i,
                     transport.in_place ? 1 + i % 3 : i % kSlots);
      if (!request.has_value() || !stream->Write(*request)) {
        context.TryCancel();  // ends the reader's Read
        break;
      }
    }
  });
  for (int i = 0; i < frames; ++i) {
    if (!stream->Read(&response) || !response.has_result()) {
      std::fprintf(stderr, "no result: %s\n", response.DebugString().c_str());
      failed = true;
      context.TryCancel();  // ends the writer's Write
    }
    std::lock_guard<std::mutex> lock(mu);
    answered = failed ? frames : answered + 1;
    answered_cv.notify_all();
    if (failed) break;
  }
  const double daemon_total = Ms(Clock::now() - d0);
  writer.join();
  if (failed) return std::nullopt;
  stream->WritesDone();
  while (stream->Read(&response)) {
  }
  (void)stream->Finish();

  const Stats engine{Percentile(engine_ms, 50), Percentile(engine_ms, 95),
                     Percentile(engine_ms, 99), 1000.0 * frames / engine_total};
  const Stats daemon{Percentile(daemon_ms, 50), Percentile(daemon_ms, 95),
                     Percentile(daemon_ms, 99), 1000.0 * frames / daemon_total};
  std::vector<double> transport_ms, paired_ms;  // per frame
  for (size_t i = 0; i < daemon_ms.size(); ++i) {
    transport_ms.push_back(daemon_ms[i] - server_ms[i]);
    paired_ms.push_back(daemon_ms[i] - engine_ms[i]);
  }
  const double overhead = daemon.p50 - engine.p50;
  const double raw_tcp = RawTcpLoopbackMs(requests[1].frame().pixels().data(), frames);
  std::printf("%d x %d %s (%.1f MiB per frame), cached windows, %s:\n", size, size,
              dtype_name.c_str(), images[0].total() * images[0].elemSize() / double{1 << 20},
              transport.name.c_str());
  Print("engine", engine);
  Print("daemon", daemon);
  std::printf("  server-side total (queue+decode+analysis+encode) p50 %.2f ms\n",
              Percentile(server_ms, 50));
  std::printf(
      "    p50 by stage: queue %.2f, decode %.2f, normalize %.2f, LoG %.2f, GMM %.2f, "
      "encode %.2f ms\n",
      Percentile(queue_ms, 50), Percentile(decode_ms, 50), Percentile(normalize_ms, 50),
      Percentile(log_ms, 50), Percentile(gmm_ms, 50), Percentile(encode_ms, 50));
  std::printf(
      "    the engine in process normalises in p50 %.2f ms (its check, range and mapping: the "
      "daemon's decode and normalize)\n",
      Percentile(engine_normalize_ms, 50));
  std::printf(
      "  transport (round trip minus server-side) p50 %.2f ms; paired difference p50 %.2f ms\n",
      Percentile(transport_ms, 50), Percentile(paired_ms, 50));
  if (shm) {
    std::printf(transport.in_place
                    ? "    of which making the request (the pixels already in place) p50 %.2f ms\n"
                    : "    of which copying the pixels into shared memory p50 %.2f ms (a client "
                      "that acquires straight into the buffer saves it)\n",
                Percentile(copy_ms, 50));
    std::printf(
        "  the same pixel bytes through a bare TCP loopback socket p50 %.2f ms "
        "(the floor of the tcp path; shm does without)\n",
        raw_tcp);
  } else {
    std::printf(
        "  the same pixel bytes through a bare TCP loopback socket p50 %.2f ms (the floor)\n",
        raw_tcp);
  }
  std::printf("  overhead p50 %+.2f ms = %+.1f %% of engine time; throughput ratio %.3f\n",
              overhead, 100.0 * overhead / engine.p50, daemon.per_second / engine.per_second);
  const double without_copy = overhead - (shm ? Percentile(copy_ms, 50) : 0.0);
  if (shm) {
    std::printf("  overhead without the client's copy p50 %+.2f ms = %+.1f %% of engine time\n",
                without_copy, 100.0 * without_copy / engine.p50);
  }
  auto stats_json = [](const Stats& s) {
    return absl::StrFormat(R"({"p50_ms": %.6g, "p95_ms": %.6g, "p99_ms": %.6g, )"
                           R"("frames_per_s": %.6g})",
                           s.p50, s.p95, s.p99, s.per_second);
  };
  return absl::StrFormat(
      R"({"size": %d, "dtype": "%s", "transport": "%s", "engine": %s, "daemon": %s, )"
      R"("server_total_p50_ms": %.6g, )"
      R"("transport_p50_ms": %.6g, "paired_overhead_p50_ms": %.6g, "raw_tcp_p50_ms": %.6g, )"
      R"("overhead_p50_ms": %.6g, "overhead_p50_pct": %.6g, "throughput_ratio": %.6g%s})",
      size, dtype_name, transport.name, stats_json(engine), stats_json(daemon),
      Percentile(server_ms, 50), Percentile(transport_ms, 50), Percentile(paired_ms, 50), raw_tcp,
      overhead, 100.0 * overhead / engine.p50, daemon.per_second / engine.per_second,
      shm ? absl::StrFormat(R"(, "shm_copy_p50_ms": %.6g, "overhead_without_copy_p50_pct": %.6g)",
                            Percentile(copy_ms, 50), 100.0 * without_copy / engine.p50)
          : "");
}

// Starts a server for the bench: on TCP loopback, or on a Unix socket at
// `unix_path` when it is not empty.
absl::StatusOr<std::unique_ptr<server::LogStarServer>> StartServer(const std::string& unix_path) {
  server::ServerOptions options;
  options.listen_address = unix_path.empty() ? "127.0.0.1:0" : "unix:" + unix_path;
  options.log_level = "warning";
  options.max_concurrent_frames = 1;  // one stream: like the engine, one frame at a time
  return server::LogStarServer::Start(options);
}

std::unique_ptr<v1::LogStar::Stub> Connect(const std::string& target) {
  grpc::ChannelArguments channel_args;
  channel_args.SetMaxReceiveMessageSize(-1);
  channel_args.SetMaxSendMessageSize(-1);
  return v1::LogStar::NewStub(
      grpc::CreateCustomChannel(target, grpc::InsecureChannelCredentials(), channel_args));
}

int Run(int argc, char** argv) {
  std::vector<int> sizes = {512, 2048};
  std::vector<v1::DType> dtypes = {v1::DTYPE_FLOAT32, v1::DTYPE_UINT16};
  std::vector<std::string> transports = {"tcp"};
  int frames = 30, window = 256, evals = 20;
  std::string json_path;
  const char* usage =
      "usage: daemon_bench [--sizes=512,2048] [--dtypes=float32,uint16] [--frames=N] "
      "[--window=PX] [--evals=N] [--transport=tcp|unix|shm|memfd|memfd-inplace[,...]] "
      "[--json=FILE]\n";
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto value = [&](const char* name) {
      return a.rfind(name, 0) == 0 ? a.substr(std::strlen(name)) : std::string();
    };
    if (!value("--sizes=").empty()) {
      sizes.clear();
      for (absl::string_view s : absl::StrSplit(value("--sizes="), ',')) {
        int n = 0;
        if (absl::SimpleAtoi(s, &n)) sizes.push_back(n);
      }
    } else if (!value("--dtypes=").empty()) {
      dtypes.clear();
      for (absl::string_view s : absl::StrSplit(value("--dtypes="), ',')) {
        if (s == "float32") {
          dtypes.push_back(v1::DTYPE_FLOAT32);
        } else if (s == "uint16") {
          dtypes.push_back(v1::DTYPE_UINT16);
        } else {
          std::fprintf(stderr, "--dtypes: float32 or uint16, got %s\n", std::string(s).c_str());
          return 2;
        }
      }
    } else if (!value("--frames=").empty()) {
      (void)absl::SimpleAtoi(value("--frames="), &frames);
    } else if (!value("--window=").empty()) {
      (void)absl::SimpleAtoi(value("--window="), &window);
    } else if (!value("--evals=").empty()) {
      (void)absl::SimpleAtoi(value("--evals="), &evals);
    } else if (!value("--transport=").empty()) {
      transports.clear();
      for (absl::string_view s : absl::StrSplit(value("--transport="), ',')) {
        if (s != "tcp" && s != "unix" && s != "shm" && s != "memfd" && s != "memfd-inplace") {
          std::fprintf(stderr, "--transport: tcp, unix, shm, memfd or memfd-inplace, got '%s'\n%s",
                       std::string(s).c_str(), usage);
          return 2;
        }
        if (std::find(transports.begin(), transports.end(), s) == transports.end()) {
          transports.emplace_back(s);
        }
      }
    } else if (!value("--json=").empty()) {
      json_path = value("--json=");
    } else {
      std::fprintf(stderr, "%s", usage);
      return 2;
    }
  }
  if (sizes.empty() || frames < 1) {
    std::fprintf(stderr, "%s", usage);
    return 2;
  }
  auto uses = [&](const char* name) {
    return std::find(transports.begin(), transports.end(), name) != transports.end();
  };

  // tcp and shm share a server on TCP loopback. A Unix socket is the other
  // local transport (the daemon beside the microscope's control software):
  // same RPCs, no TCP stack; unix and memfd share it.
  std::unique_ptr<server::LogStarServer> tcp_server, unix_server;
  std::unique_ptr<v1::LogStar::Stub> tcp_stub, unix_stub;
  const std::string socket_path = absl::StrCat("/tmp/logstar-bench-", getpid(), ".sock");
  if (uses("tcp") || uses("shm")) {
    auto started = StartServer("");
    if (!started.ok()) {
      std::fprintf(stderr, "%s\n", started.status().ToString().c_str());
      return 1;
    }
    tcp_server = *std::move(started);
    tcp_stub = Connect(absl::StrCat("127.0.0.1:", tcp_server->port()));
  }
  const bool any_memfd = uses("memfd") || uses("memfd-inplace");
  if (uses("unix") || any_memfd) {
    auto started = StartServer(socket_path);
    if (!started.ok()) {
      std::fprintf(stderr, "%s\n", started.status().ToString().c_str());
      return 1;
    }
    unix_server = *std::move(started);
    unix_stub = Connect("unix:" + socket_path);
  }
  // shm and memfd: one buffer each for the whole run, kSlots frames of the
  // largest size and dtype, registered once as a client would.
  const int largest = *std::max_element(sizes.begin(), sizes.end());
  const bool has_float32 =
      std::find(dtypes.begin(), dtypes.end(), v1::DTYPE_FLOAT32) != dtypes.end();
  const uint64_t slot_bytes = static_cast<uint64_t>(largest) * largest * (has_float32 ? 4 : 2);
  auto register_region = [](v1::LogStar::Stub* stub, const std::string& key, uint64_t bytes) {
    v1::RegisterSharedMemoryRequest request;
    request.set_region(kRegion);
    request.set_key(key);
    request.set_byte_size(bytes);
    grpc::ClientContext context;
    v1::SharedMemoryRegion registered;
    const grpc::Status s = stub->RegisterSharedMemory(&context, request, &registered);
    if (!s.ok()) {
      std::fprintf(stderr, "RegisterSharedMemory: %s: %s\n",
                   absl::StatusCodeToString(static_cast<absl::StatusCode>(s.error_code())).c_str(),
                   s.error_message().c_str());
    }
    return s.ok();
  };
  std::unique_ptr<SharedMemoryBuffer> buffer;
  if (uses("shm")) {
    auto created = SharedMemoryBuffer::Create(kSlots * slot_bytes, {});
    if (!created.ok()) {
      std::fprintf(stderr, "%s\n", created.status().ToString().c_str());
      return 1;
    }
    buffer = *std::move(created);
    if (!register_region(tcp_stub.get(), buffer->key(), buffer->size())) return 1;
  }
  std::unique_ptr<MemfdBuffer> memfd;
  if (any_memfd) {
    auto created = MemfdBuffer::Create(kSlots * slot_bytes);
    if (!created.ok()) {
      std::fprintf(stderr, "%s\n", created.status().ToString().c_str());
      return 1;
    }
    memfd = *std::move(created);
    absl::StatusOr<std::string> key = HandOverMemfd("unix:" + socket_path, *memfd);
    if (!key.ok()) {
      std::fprintf(stderr, "%s\n", key.status().ToString().c_str());
      return 1;
    }
    if (!register_region(unix_stub.get(), *key, memfd->size())) return 1;
  }
  std::vector<Transport> runs;
  std::vector<std::string> described;
  for (const std::string& name : transports) {
    const bool on_unix = name == "unix" || name == "memfd" || name == "memfd-inplace";
    Transport t{.name = name, .stub = on_unix ? unix_stub.get() : tcp_stub.get()};
    if (name == "memfd-inplace") {
      t.buffer = memfd->data();
      t.buffer_bytes = memfd->size();
      t.slot_bytes = slot_bytes;
      t.in_place = true;
      described.push_back(
          "memfd-inplace (as memfd, each frame written into a slot of its own before the clock "
          "runs, as an acquisition into the buffer: no copy)");
    } else if (name == "memfd") {
      t.buffer = memfd->data();
      t.buffer_bytes = memfd->size();
      t.slot_bytes = slot_bytes;
      described.push_back(absl::StrFormat(
          "memfd (pixels in a %.0f MiB sealed memory file of %d slots that the daemon maps, "
          "messages over a Unix socket; the round trip includes copying each frame into it)",
          memfd->size() / double{1 << 20}, kSlots));
    } else if (name == "shm") {
      t.buffer = buffer->data();
      t.buffer_bytes = buffer->size();
      t.slot_bytes = slot_bytes;
      described.push_back(absl::StrFormat(
          "shm (pixels in a %.0f MiB shared memory buffer of %d slots, messages over TCP "
          "loopback; the round trip includes copying each frame into the buffer)",
          buffer->size() / double{1 << 20}, kSlots));
    } else {
      described.push_back(name == "tcp" ? "tcp (TCP loopback)" : "unix (a Unix socket)");
    }
    runs.push_back(t);
  }
  std::printf(
      "logstard vs the in-process engine, over %s; %d timed frames per size, window %d, "
      "%d evaluations when tuning, %d engine threads\n",
      absl::StrJoin(described, "; ").c_str(), frames, window, evals,
      ExecutionContext::Default()->num_threads());
  std::string json_sizes;  // the "sizes" entries of --json

  for (int size : sizes) {
    std::vector<SynthFrame> synth;
    for (int i = 0; i < 4; ++i) {
      SynthOptions o;
      o.width = o.height = size;
      o.noise = 0.1;
      o.seed = 100 + i;
      synth.push_back(*Synthesize(o));
    }
    for (v1::DType dtype : dtypes) {
      std::vector<cv::Mat> images;
      for (const SynthFrame& f : synth) images.push_back(AsDtype(f.image, dtype));
      const std::string dtype_name = dtype == v1::DTYPE_FLOAT32 ? "float32" : "uint16";
      for (const Transport& t : runs) {
        std::optional<std::string> entry =
            RunCase(t, synth[0].prior, images, size, dtype, dtype_name, frames, window, evals);
        if (!entry.has_value()) return 1;
        absl::StrAppend(&json_sizes, json_sizes.empty() ? "" : ",\n  ", *entry);
      }
    }
  }
  for (v1::LogStar::Stub* stub : {buffer != nullptr ? tcp_stub.get() : nullptr,
                                  memfd != nullptr ? unix_stub.get() : nullptr}) {
    if (stub == nullptr) continue;
    v1::UnregisterSharedMemoryRequest request;
    request.set_region(kRegion);
    grpc::ClientContext context;
    v1::UnregisterSharedMemoryResponse response;
    (void)stub->UnregisterSharedMemory(&context, request, &response);
  }
  if (tcp_server != nullptr) tcp_server->Shutdown();
  if (unix_server != nullptr) {
    unix_server->Shutdown();
    std::remove(socket_path.c_str());
  }
  if (!json_path.empty()) {
    FILE* f = std::fopen(json_path.c_str(), "w");
    if (f == nullptr) {
      std::fprintf(stderr, "cannot write %s\n", json_path.c_str());
      return 1;
    }
    std::fprintf(f,
                 "{\"frames\": %d, \"window\": %d, \"evals\": %d, \"threads\": %d, "
                 "\"transport\": \"%s\",\n"
                 " \"sizes\": [%s]}\n",
                 frames, window, evals, ExecutionContext::Default()->num_threads(),
                 absl::StrJoin(transports, ",").c_str(), json_sizes.c_str());
    if (std::fclose(f) != 0) {
      std::fprintf(stderr, "cannot write %s\n", json_path.c_str());
      return 1;
    }
  }
  return 0;
}

}  // namespace
}  // namespace logstar

int main(int argc, char** argv) { return logstar::Run(argc, argv); }
