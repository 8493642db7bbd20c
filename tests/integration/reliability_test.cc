// Issue 16 (reliability) through real RPCs against logstard processes: what
// a careless client or an attacker on the same host tried, each with the
// behaviour it must now get. SIGTERM must end the daemon within its
// shutdown grace plus a second after every pathological input.
#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include <grpcpp/grpcpp.h>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/integration/harness.h"

namespace logstar {
namespace {

using ::logstar::testing::DaemonProcess;
using ::logstar::testing::HealthStatus;
using ::testing::HasSubstr;
using Clock = std::chrono::steady_clock;

// See daemon_process_test.cc: idle clients notice GOAWAY sooner.
const bool kFastClientPolling = [] {
  setenv("GRPC_CLIENT_CHANNEL_BACKUP_POLL_INTERVAL_MS", "50", 1);
  return true;
}();

constexpr double kGraceS = 2.0;

std::string TestDir(const std::string& name) {
  const std::string dir =
      ::testing::TempDir() + "/logstard_reliab_" + name + "_" + std::to_string(getpid());
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  return dir;
}

std::vector<std::string> BaseArgs() {
  return {"--listen_address=127.0.0.1:0", "--engine_threads=2", "--log_level=info",
          absl::StrCat("--shutdown_grace_s=", kGraceS)};
}

std::shared_ptr<grpc::Channel> Channel(int port) {
  return grpc::CreateChannel(absl::StrCat("127.0.0.1:", port), grpc::InsecureChannelCredentials());
}

// SIGTERM, then the exit code within the grace plus a second.
void ExpectStopsOnSigterm(DaemonProcess& daemon) {
  const Clock::time_point start = Clock::now();
  daemon.Signal(SIGTERM);
  const int code = daemon.WaitForExit(std::chrono::seconds(static_cast<int>(kGraceS) + 5));
  const double s = std::chrono::duration<double>(Clock::now() - start).count();
  EXPECT_EQ(code, 0) << daemon.Log();
  EXPECT_LE(s, kGraceS + 1.0) << "SIGTERM took " << s << " s to end the daemon";
}

// A FIFO in /dev/shm, unlinked when the test ends.
class ShmFifo {
 public:
  explicit ShmFifo(const std::string& tag)
      : key_(absl::StrCat("/logstar-reliab-", getpid(), "-", tag)), path_("/dev/shm" + key_) {
    unlink(path_.c_str());
    EXPECT_EQ(mkfifo(path_.c_str(), 0666), 0);
  }
  ~ShmFifo() {
    // Releases a daemon thread that would still wait in open().
    const int w = open(path_.c_str(), O_WRONLY | O_NONBLOCK);
    if (w >= 0) close(w);
    unlink(path_.c_str());
  }
  const std::string& key() const { return key_; }

 private:
  std::string key_, path_;
};

grpc::Status RegisterShm(v1::LogStar::Stub* stub, const std::string& region, const std::string& key,
                         uint64_t size) {
  v1::RegisterSharedMemoryRequest request;
  request.set_region(region);
  request.set_key(key);
  request.set_byte_size(size);
  v1::SharedMemoryRegion response;
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
  return stub->RegisterSharedMemory(&context, request, &response);
}

// Item 1: FIFOs given as shared memory keys are refused at once; the daemon
// keeps answering (health included) and SIGTERM still ends it.
TEST(ReliabilityTest, FifoKeysDoNotBlockTheDaemon) {
  const std::string dir = TestDir("fifo_key");
  DaemonProcess daemon(LOGSTARD_BINARY, BaseArgs(), dir);
  const int port = daemon.WaitForPort();
  ASSERT_GT(port, 0) << daemon.Log();
  auto channel = Channel(port);
  auto stub = v1::LogStar::NewStub(channel);
  ShmFifo a("a"), b("b");
  for (const ShmFifo* f : {&a, &b}) {
    const grpc::Status s = RegisterShm(stub.get(), "cam", f->key(), 16);
    EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << s.error_message();
    EXPECT_THAT(s.error_message(), HasSubstr("FIFO"));
  }
  EXPECT_EQ(HealthStatus(channel.get(), "logstar.v1.LogStar"), 1);
  ExpectStopsOnSigterm(daemon);
}

// Item 1: a FIFO named like a state file neither blocks start-up nor stays
// to be reported at the next one.
TEST(ReliabilityTest, AFifoInTheStateDirectoryDoesNotBlockStartUp) {
  const std::string dir = TestDir("fifo_state");
  const std::string state = dir + "/state";
  std::filesystem::create_directories(state);
  ASSERT_EQ(mkfifo((state + "/stuck.session.pb").c_str(), 0600), 0);
  std::vector<std::string> args = BaseArgs();
  args.push_back("--state_dir=" + state);
  DaemonProcess daemon(LOGSTARD_BINARY, args, dir);
  const int port = daemon.WaitForPort(std::chrono::seconds(10));
  // Release a daemon blocked in open() so that the test ends either way.
  const int w = open((state + "/stuck.session.pb").c_str(), O_WRONLY | O_NONBLOCK);
  if (w >= 0) close(w);
  ASSERT_GT(port, 0) << "logstard did not come up: " << daemon.Log();
  EXPECT_EQ(HealthStatus(Channel(port).get(), "logstar.v1.LogStar"), 1);
  EXPECT_TRUE(std::filesystem::exists(state + "/stuck.session.pb.rejected"));
  EXPECT_THAT(daemon.Log(), HasSubstr("\"event\":\"state_rejected\""));
  ExpectStopsOnSigterm(daemon);
}

}  // namespace
}  // namespace logstar
