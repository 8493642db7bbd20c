// End-to-end latency and throughput of logstard over loopback against the
// in-process engine on the same frames: what transport and queueing add.
//
// For each frame size: the same settings and the same generated frames go
// (a) straight to a LogStarAnalyzer and (b) through a Stream RPC to a
// LogStarServer on 127.0.0.1 (TCP). Pixels as float32 (16 MiB at 2048²)
// and as uint16 detector counts (half the bytes; most detectors' native
// type): the transport's share scales with the bytes. The first frame tunes
// every window and is not timed (both caches then hold the same
// parameters); the timed frames are the steady state of a live stream.
// Latency is closed-loop (one frame in flight: send to result received),
// engine and daemon taking turns frame by frame; throughput is open-loop
// (all frames sent at once, block policy).
//
//   daemon_bench [--sizes=512,2048] [--dtypes=float32,uint16] [--frames=30]
//                [--window=256] [--evals=20] [--transport=tcp|unix] [--json=FILE]
//
// Besides the p50 difference (the target's figure) it prints the server's
// p50 by stage, the transport (round trip minus the server's own total,
// paired per frame) and the per-frame paired difference, which a slow
// drift of the machine's speed moves less, and the floor: the same pixel
// bytes through a bare TCP loopback socket, no gRPC.
//
// --json=FILE also writes the figures as one JSON object (for
// tests/bench/perf_report.sh): {"frames", "window", "evals", "threads",
// "sizes": [{"size", "dtype", "engine": {"p50_ms", "p95_ms", "p99_ms",
// "frames_per_s"}, "daemon": {...}, "server_total_p50_ms",
// "transport_p50_ms", "paired_overhead_p50_ms", "raw_tcp_p50_ms", "overhead_p50_ms",
// "overhead_p50_pct", "throughput_ratio"}]}.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <memory>
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
#include "absl/strings/str_split.h"
#include "engine/analyzer.h"
#include "engine/context.h"
#include "engine/synth.h"
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

// One frame size and dtype: the latency and throughput of both paths, and
// its "sizes" entry for --json (nullopt after printing what failed).
std::optional<std::string> RunCase(v1::LogStar::Stub* stub, const PhysicsPrior& prior,
                                   const std::vector<cv::Mat>& images, int size, v1::DType dtype,
                                   const std::string& dtype_name, int frames, int window,
                                   int evals) {
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
  std::vector<v1::StreamRequest> requests(4);
  for (int i = 0; i < 4; ++i) *requests[i].mutable_frame() = ToFrame(images[i], dtype, i);
  grpc::ClientContext context;
  auto stream = stub->Stream(&context);
  v1::StreamRequest open;
  open.mutable_open()->set_session_id(absl::StrCat("bench-", size, "-", dtype_name));
  *open.mutable_open()->mutable_settings() = settings;
  v1::StreamResponse response;
  stream->Write(open);
  stream->Read(&response);
  stream->Write(requests[0]);
  stream->Read(&response);  // tunes
  // Latency: the engine and the daemon take turns frame by frame, so the
  // machine's clock drift and other load hit both alike.
  std::vector<double> engine_ms, daemon_ms, server_ms;
  std::vector<double> queue_ms, decode_ms, normalize_ms, log_ms, gmm_ms, encode_ms;
  for (int i = 0; i < frames; ++i) {
    Clock::time_point t = Clock::now();
    if (!analyzer->Analyze(images[1 + i % 3], ExecutionContext::Default()).ok())
      return std::nullopt;
    engine_ms.push_back(Ms(Clock::now() - t));
    t = Clock::now();
    stream->Write(requests[1 + i % 3]);
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
  const Clock::time_point d0 = Clock::now();
  std::thread writer([&] {
    for (int i = 0; i < frames; ++i) stream->Write(requests[1 + i % 3]);
  });
  for (int i = 0; i < frames; ++i) stream->Read(&response);
  const double daemon_total = Ms(Clock::now() - d0);
  writer.join();
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
  std::printf("%d x %d %s (%.1f MiB per frame), cached windows:\n", size, size, dtype_name.c_str(),
              images[0].total() * images[0].elemSize() / double{1 << 20});
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
      "  transport (round trip minus server-side) p50 %.2f ms; paired difference p50 %.2f ms\n",
      Percentile(transport_ms, 50), Percentile(paired_ms, 50));
  std::printf("  the same pixel bytes through a bare TCP loopback socket p50 %.2f ms (the floor)\n",
              raw_tcp);
  std::printf("  overhead p50 %+.2f ms = %+.1f %% of engine time; throughput ratio %.3f\n",
              overhead, 100.0 * overhead / engine.p50, daemon.per_second / engine.per_second);
  auto stats_json = [](const Stats& s) {
    return absl::StrFormat(R"({"p50_ms": %.6g, "p95_ms": %.6g, "p99_ms": %.6g, )"
                           R"("frames_per_s": %.6g})",
                           s.p50, s.p95, s.p99, s.per_second);
  };
  return absl::StrFormat(
      R"({"size": %d, "dtype": "%s", "engine": %s, "daemon": %s, "server_total_p50_ms": %.6g, )"
      R"("transport_p50_ms": %.6g, "paired_overhead_p50_ms": %.6g, "raw_tcp_p50_ms": %.6g, )"
      R"("overhead_p50_ms": %.6g, "overhead_p50_pct": %.6g, "throughput_ratio": %.6g})",
      size, dtype_name, stats_json(engine), stats_json(daemon), Percentile(server_ms, 50),
      Percentile(transport_ms, 50), Percentile(paired_ms, 50), raw_tcp, overhead,
      100.0 * overhead / engine.p50, daemon.per_second / engine.per_second);
}

int Run(int argc, char** argv) {
  std::vector<int> sizes = {512, 2048};
  std::vector<v1::DType> dtypes = {v1::DTYPE_FLOAT32, v1::DTYPE_UINT16};
  int frames = 30, window = 256, evals = 20;
  std::string json_path;
  bool unix_socket = false;
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
    } else if (a == "--transport=unix" || a == "--transport=tcp") {
      unix_socket = a == "--transport=unix";
    } else if (!value("--json=").empty()) {
      json_path = value("--json=");
    } else {
      std::fprintf(stderr,
                   "usage: daemon_bench [--sizes=512,2048] [--dtypes=float32,uint16] [--frames=N] "
                   "[--window=PX] [--evals=N] [--transport=tcp|unix] [--json=FILE]\n");
      return 2;
    }
  }
  server::ServerOptions options;
  // A Unix socket is the other local transport (the daemon beside the
  // microscope's control software): same RPCs, no TCP stack.
  const std::string socket_path = absl::StrCat("/tmp/logstar-bench-", getpid(), ".sock");
  options.listen_address = unix_socket ? "unix:" + socket_path : "127.0.0.1:0";
  options.log_level = "warning";
  options.max_concurrent_frames = 1;  // one stream: like the engine, one frame at a time
  auto server = server::LogStarServer::Start(options);
  if (!server.ok()) {
    std::fprintf(stderr, "%s\n", server.status().ToString().c_str());
    return 1;
  }
  grpc::ChannelArguments channel_args;
  channel_args.SetMaxReceiveMessageSize(-1);
  channel_args.SetMaxSendMessageSize(-1);
  auto stub = v1::LogStar::NewStub(grpc::CreateCustomChannel(
      unix_socket ? options.listen_address : absl::StrCat("127.0.0.1:", (*server)->port()),
      grpc::InsecureChannelCredentials(), channel_args));
  std::printf(
      "logstard over %s vs the in-process engine; %d timed frames per size, window %d, "
      "%d evaluations when tuning, %d engine threads\n",
      unix_socket ? "a Unix socket" : "TCP loopback", frames, window, evals,
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
      std::optional<std::string> entry = RunCase(stub.get(), synth[0].prior, images, size, dtype,
                                                 dtype_name, frames, window, evals);
      if (!entry.has_value()) return 1;
      absl::StrAppend(&json_sizes, json_sizes.empty() ? "" : ",\n  ", *entry);
    }
  }
  (*server)->Shutdown();
  if (unix_socket) std::remove(socket_path.c_str());
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
                 unix_socket ? "unix" : "tcp", json_sizes.c_str());
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
