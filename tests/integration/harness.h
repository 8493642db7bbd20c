// Helpers for tests that talk to logstard through real RPCs: frames made
// from generated images (engine/image/synth.h) whose ground truth the tests score
// against, session settings small enough for a 2-core CI machine, a raw
// caller for the standard health and reflection services, and a logstard
// child process.
#ifndef LOGSTAR_TESTS_INTEGRATION_HARNESS_H_
#define LOGSTAR_TESTS_INTEGRATION_HARNESS_H_

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include <grpcpp/generic/generic_stub.h>
#include <grpcpp/grpcpp.h>

#include "engine/image/synth.h"
#include "engine/physics/accuracy.h"
#include "gtest/gtest.h"
#include "logstar/v1/service.grpc.pb.h"

extern char** environ;

namespace logstar::testing {

inline SynthFrame Synth(int size, uint64_t seed, double noise = 0.05,
                        SynthLattice lattice = SynthLattice::kYbco) {
  SynthOptions o;
  o.lattice = lattice;
  o.width = o.height = size;
  o.noise = noise;
  o.seed = seed;
  absl::StatusOr<SynthFrame> f = Synthesize(o);
  EXPECT_TRUE(f.ok()) << f.status();
  return *std::move(f);
}

// The frame's float32 pixels as the wire carries them.
inline v1::Frame ToFrame(const SynthFrame& f, uint64_t sequence) {
  v1::Frame frame;
  frame.set_sequence(sequence);
  frame.set_channel("HAADF");
  v1::PixelData* px = frame.mutable_pixels();
  px->set_dtype(v1::DTYPE_FLOAT32);
  px->set_width(f.image.cols);
  px->set_height(f.image.rows);
  const cv::Mat c = f.image.isContinuous() ? f.image : f.image.clone();
  px->set_data(std::string(reinterpret_cast<const char*>(c.data), c.total() * c.elemSize()));
  return frame;
}

// The prior synth describes, small windows and few evaluations: seconds, not
// minutes, under AddressSanitizer.
inline v1::SessionSettings SmallSettings(const SynthFrame& f, int window = 64, int evals = 8) {
  v1::SessionSettings s;
  s.mutable_prior()->set_pixel_size_angstrom(f.prior.pixel_size_angstrom);
  s.mutable_prior()->set_column_density_per_nm2(f.prior.ColumnDensityPerNm2());
  s.mutable_prior()->set_nearest_neighbor_angstrom(f.prior.nearest_neighbor_angstrom);
  s.mutable_analysis()->set_window(window);
  s.mutable_analysis()->set_evaluations(evals);
  s.mutable_analysis()->set_seed(1);
  return s;
}

// F1 of a result's atoms against the frame's ground truth.
inline Accuracy Score(const SynthFrame& truth, const v1::FrameResult& r) {
  std::vector<PointXY> det, gt;
  for (const v1::Atom& a : r.atoms()) det.push_back({a.x(), a.y()});
  for (const SynthAtom& t : truth.atoms) gt.push_back({t.x, t.y});
  return *MatchToTruth(det, gt, 0.3 * truth.prior.NearestNeighborPx());
}

inline v1::StreamRequest Open(const std::string& id, const v1::SessionSettings* settings) {
  v1::StreamRequest r;
  r.mutable_open()->set_session_id(id);
  if (settings != nullptr) *r.mutable_open()->mutable_settings() = *settings;
  return r;
}

inline v1::StreamRequest FrameRequest(v1::Frame frame) {
  v1::StreamRequest r;
  *r.mutable_frame() = std::move(frame);
  return r;
}

// Sends open and frames, half-closes, and collects every response.
struct StreamOutcome {
  std::vector<v1::StreamResponse> responses;
  grpc::Status status;
};
inline StreamOutcome RunStream(v1::LogStar::Stub* stub, const v1::StreamRequest& open,
                               const std::vector<v1::Frame>& frames,
                               grpc::ClientContext* context = nullptr) {
  grpc::ClientContext own;
  if (context == nullptr) context = &own;
  auto stream = stub->Stream(context);
  StreamOutcome out;
  std::thread reader([&] {
    v1::StreamResponse r;
    while (stream->Read(&r)) out.responses.push_back(r);
  });
  bool ok = stream->Write(open);
  for (const v1::Frame& f : frames) ok = ok && stream->Write(FrameRequest(f));
  stream->WritesDone();
  reader.join();
  out.status = stream->Finish();
  return out;
}

// Calls a unary method with raw protobuf bytes (for the standard services,
// whose client stubs Debian does not ship).
inline grpc::Status RawUnary(grpc::Channel* channel, const std::string& method,
                             const std::string& request, std::string* response,
                             const std::string& token = "") {
  grpc::GenericStub stub(channel->shared_from_this());
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
  if (!token.empty()) context.AddMetadata("authorization", "Bearer " + token);
  grpc::Slice slice(request);
  grpc::ByteBuffer in(&slice, 1), out;
  grpc::CompletionQueue cq;
  auto call = stub.PrepareUnaryCall(&context, method, in, &cq);
  call->StartCall();
  grpc::Status status;
  call->Finish(&out, &status, reinterpret_cast<void*>(1));
  void* tag;
  bool ok;
  cq.Next(&tag, &ok);
  std::vector<grpc::Slice> slices;
  if (status.ok() && out.Dump(&slices).ok()) {
    response->clear();
    for (const grpc::Slice& s : slices)
      response->append(reinterpret_cast<const char*>(s.begin()), s.size());
  }
  return status;
}

// grpc.health.v1.Health/Check: 1 = SERVING, 2 = NOT_SERVING, -1 on error.
inline int HealthStatus(grpc::Channel* channel, const std::string& service,
                        const std::string& token = "") {
  std::string request;
  if (!service.empty()) {
    request.push_back(0x0a);  // field 1, length-delimited
    request.push_back(static_cast<char>(service.size()));
    request += service;
  }
  std::string response;
  if (!RawUnary(channel, "/grpc.health.v1.Health/Check", request, &response, token).ok()) {
    return -1;
  }
  // HealthCheckResponse{status = 1}: 0x08 then a one-byte varint; empty = UNKNOWN (0).
  return response.size() >= 2 && response[0] == 0x08 ? response[1] : 0;
}

// GET `path` from 127.0.0.1:port over HTTP/1.1 (the metrics endpoint): the
// whole reply, headers included; empty when nothing listens.
inline std::string HttpGet(int port, const std::string& path) {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port);
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  std::string reply;
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0) {
    const std::string request =
        absl::StrCat("GET ", path, " HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    (void)!write(fd, request.data(), request.size());
    char buffer[4096];
    for (ssize_t n; (n = read(fd, buffer, sizeof(buffer))) > 0;) reply.append(buffer, n);
  }
  close(fd);
  return reply;
}

// A logstard child process on a free loopback port.
class DaemonProcess {
 public:
  DaemonProcess(const std::string& binary, std::vector<std::string> args, const std::string& dir)
      : dir_(dir) {
    std::filesystem::create_directories(dir);
    port_file_ = dir + "/port";
    log_file_ = dir + "/logstard.log";
    std::filesystem::remove(port_file_);
    args.insert(args.begin(), binary);
    args.push_back("--port_file=" + port_file_);
    std::vector<char*> argv;
    for (std::string& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_addopen(&actions, 2, log_file_.c_str(), O_WRONLY | O_CREAT | O_APPEND,
                                     0644);
    if (posix_spawn(&pid_, binary.c_str(), &actions, nullptr, argv.data(), environ) != 0) pid_ = -1;
    posix_spawn_file_actions_destroy(&actions);
  }
  ~DaemonProcess() {
    if (pid_ > 0 && !exited_) {
      kill(pid_, SIGKILL);
      waitpid(pid_, nullptr, 0);
    }
  }

  // Waits for the port file; 0 if the daemon did not come up.
  int WaitForPort(std::chrono::seconds timeout = std::chrono::seconds(60)) {
    const auto end = std::chrono::steady_clock::now() + timeout;
    while (std::chrono::steady_clock::now() < end) {
      std::ifstream in(port_file_);
      int port = 0;
      if (in >> port && port > 0) return port;
      int status;
      if (waitpid(pid_, &status, WNOHANG) == pid_) {
        exited_ = true;
        return 0;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    return 0;
  }

  void Signal(int sig) { kill(pid_, sig); }
  pid_t pid() const { return pid_; }
  // The exit code, or -1 (killed by a signal or timed out).
  int WaitForExit(std::chrono::seconds timeout = std::chrono::seconds(120)) {
    const auto end = std::chrono::steady_clock::now() + timeout;
    while (std::chrono::steady_clock::now() < end) {
      int status;
      if (waitpid(pid_, &status, WNOHANG) == pid_) {
        exited_ = true;
        return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    return -1;
  }
  std::string Log() const {
    std::ifstream in(log_file_);
    return std::string(std::istreambuf_iterator<char>(in), {});
  }

 private:
  std::string dir_, port_file_, log_file_;
  pid_t pid_ = -1;
  bool exited_ = false;
};

}  // namespace logstar::testing

#endif  // LOGSTAR_TESTS_INTEGRATION_HARNESS_H_
