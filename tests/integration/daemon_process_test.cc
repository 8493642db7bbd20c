// logstard as a separate process, as it is deployed: a stream, SIGTERM in
// the middle of one, a restart that restores the cache from --state_dir,
// a configuration file with flags over it, and TLS, mutual TLS and the
// bearer token with certificates made by openssl at test time.
#include <signal.h>

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
using ::logstar::testing::FrameRequest;
using ::logstar::testing::HealthStatus;
using ::logstar::testing::Open;
using ::logstar::testing::RunStream;
using ::logstar::testing::Score;
using ::logstar::testing::SmallSettings;
using ::logstar::testing::Synth;
using ::logstar::testing::ToFrame;
using ::testing::HasSubstr;

// An idle gRPC client notices the server's GOAWAY only when its backup
// poller runs (every 5 s by default), which the daemon's graceful shutdown
// waits for; poll often so the tests do not sit idle. Set before gRPC starts.
const bool kFastClientPolling = [] {
  setenv("GRPC_CLIENT_CHANNEL_BACKUP_POLL_INTERVAL_MS", "50", 1);
  return true;
}();

std::string TestDir(const std::string& name) {
  const std::string dir =
      ::testing::TempDir() + "/logstard_" + name + "_" + std::to_string(getpid());
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  return dir;
}

std::vector<std::string> BaseArgs() {
  return {"--listen_address=127.0.0.1:0", "--engine_threads=2", "--log_level=info"};
}

std::unique_ptr<v1::LogStar::Stub> Connect(int port) {
  return v1::LogStar::NewStub(
      grpc::CreateChannel(absl::StrCat("127.0.0.1:", port), grpc::InsecureChannelCredentials()));
}

TEST(DaemonProcessTest, StreamsAndStopsCleanlyOnSigterm) {
  const std::string dir = TestDir("sigterm");
  DaemonProcess daemon(LOGSTARD_BINARY, BaseArgs(), dir);
  const int port = daemon.WaitForPort();
  ASSERT_GT(port, 0) << daemon.Log();
  auto channel =
      grpc::CreateChannel(absl::StrCat("127.0.0.1:", port), grpc::InsecureChannelCredentials());
  EXPECT_EQ(HealthStatus(channel.get(), "logstar.v1.LogStar"), 1);
  auto stub = v1::LogStar::NewStub(channel);

  // A normal stream first.
  const SynthFrame a = Synth(128, 1), b = Synth(128, 2);
  v1::SessionSettings settings = SmallSettings(a, 64, 20);
  settings.set_overload_policy(v1::OVERLOAD_POLICY_BLOCK);
  settings.set_queue_capacity(4);
  const auto normal = RunStream(stub.get(), Open("p", &settings), {ToFrame(a, 1), ToFrame(b, 2)});
  ASSERT_TRUE(normal.status.ok()) << normal.status.error_message();
  ASSERT_EQ(normal.responses.size(), 3u);
  EXPECT_GT(Score(a, normal.responses[1].result()).f1, 0.85);
  EXPECT_GT(Score(b, normal.responses[2].result()).f1, 0.85);

  // Then SIGTERM while three frames are in: a new session with small
  // windows, so each frame tunes for a while.
  const SynthFrame big = Synth(256, 3);
  v1::SessionSettings slow = SmallSettings(big, 32, 12);
  slow.set_overload_policy(v1::OVERLOAD_POLICY_BLOCK);
  slow.set_queue_capacity(4);
  grpc::ClientContext context;
  auto stream = stub->Stream(&context);
  ASSERT_TRUE(stream->Write(Open("q", &slow)));
  v1::StreamResponse r;
  ASSERT_TRUE(stream->Read(&r));
  for (int i = 1; i <= 3; ++i) {
    ASSERT_TRUE(stream->Write(FrameRequest(ToFrame(big, i))));
  }
  // Give the frames time to arrive (256 KiB each over loopback).
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  daemon.Signal(SIGTERM);
  const auto signalled = std::chrono::steady_clock::now();
  std::vector<v1::StreamResponse> answers;
  std::chrono::steady_clock::time_point last_answer;
  while (stream->Read(&r)) {
    answers.push_back(r);
    last_answer = std::chrono::steady_clock::now();
  }
  const grpc::Status status = stream->Finish();
  EXPECT_EQ(daemon.WaitForExit(), 0) << daemon.Log();
  // Every frame received was answered before the stream ended, some of
  // them after the signal.
  ASSERT_EQ(answers.size(), 3u) << status.error_message();
  for (const v1::StreamResponse& x : answers) {
    ASSERT_TRUE(x.has_result()) << x.DebugString();
    EXPECT_GT(Score(big, x.result()).f1, 0.8);
  }
  EXPECT_GT(last_answer, signalled) << "the frames were done before SIGTERM: make them slower";
  EXPECT_TRUE(status.ok() || status.error_code() == grpc::StatusCode::UNAVAILABLE)
      << status.error_message();
  const std::string log = daemon.Log();
  EXPECT_THAT(log, HasSubstr("\"event\":\"signal\",\"signal\":\"SIGTERM\""));
  EXPECT_THAT(log, HasSubstr("\"event\":\"stopped\""));
}

TEST(DaemonProcessTest, RestartWithStateDirRestoresTheCache) {
  const std::string dir = TestDir("state");
  const std::string state = dir + "/state";
  std::vector<std::string> args = BaseArgs();
  args.push_back("--state_dir=" + state);
  const SynthFrame a = Synth(128, 11), b = Synth(128, 12);
  v1::SessionSettings settings = SmallSettings(a, 64, 16);
  v1::SessionInfo before;
  {
    DaemonProcess daemon(LOGSTARD_BINARY, args, dir + "/run1");
    const int port = daemon.WaitForPort();
    ASSERT_GT(port, 0) << daemon.Log();
    auto stub = Connect(port);
    const auto out = RunStream(stub.get(), Open("kept", &settings), {ToFrame(a, 1)});
    ASSERT_TRUE(out.status.ok()) << out.status.error_message();
    ASSERT_EQ(out.responses.size(), 2u);
    EXPECT_EQ(out.responses[1].result().cache_misses(), 4);
    v1::GetSessionRequest get;
    get.set_session_id("kept");
    get.set_include_cache(true);
    grpc::ClientContext c;
    ASSERT_TRUE(stub->GetSession(&c, get, &before).ok());
    daemon.Signal(SIGTERM);
    ASSERT_EQ(daemon.WaitForExit(), 0) << daemon.Log();
  }
  EXPECT_TRUE(std::filesystem::exists(state + "/kept.session.pb"));
  DaemonProcess daemon(LOGSTARD_BINARY, args, dir + "/run2");
  const int port = daemon.WaitForPort();
  ASSERT_GT(port, 0) << daemon.Log();
  auto stub = Connect(port);
  v1::GetSessionRequest get;
  get.set_session_id("kept");
  get.set_include_cache(true);
  v1::SessionInfo after;
  {
    grpc::ClientContext c;
    ASSERT_TRUE(stub->GetSession(&c, get, &after).ok()) << daemon.Log();
  }
  EXPECT_EQ(after.counters().frames_analysed(), 1u);
  ASSERT_EQ(after.cache().windows_size(), 4);
  for (int w = 0; w < 4; ++w) {
    EXPECT_TRUE(after.cache().windows(w).tuned());
    EXPECT_EQ(after.cache().windows(w).parameters().threshold(),
              before.cache().windows(w).parameters().threshold());
  }
  // Resumed without settings: the restored cache serves the next frame.
  const auto out = RunStream(stub.get(), Open("kept", nullptr), {ToFrame(b, 2)});
  ASSERT_TRUE(out.status.ok()) << out.status.error_message();
  ASSERT_EQ(out.responses.size(), 2u);
  EXPECT_TRUE(out.responses[0].opened().resumed());
  EXPECT_EQ(out.responses[1].result().cache_misses(), 0);
  EXPECT_GT(Score(b, out.responses[1].result()).f1, 0.85);
  daemon.Signal(SIGTERM);
  EXPECT_EQ(daemon.WaitForExit(), 0);
}

TEST(DaemonProcessTest, ConfigFileWithFlagsOverIt) {
  const std::string dir = TestDir("config");
  std::ofstream(dir + "/logstard.textproto")
      << "listen_address: \"127.0.0.1:1\"\nmax_pixels: 100\nlog_level: \"debug\"\n";
  DaemonProcess daemon(LOGSTARD_BINARY,
                       {"--config=" + dir + "/logstard.textproto", "--listen_address=127.0.0.1:0",
                        "--log_level=warning"},
                       dir);
  const int port = daemon.WaitForPort();
  ASSERT_GT(port, 0) << daemon.Log();
  // max_pixels from the file applies; the flag's port and level won.
  const SynthFrame f = Synth(128, 21);
  const v1::SessionSettings settings = SmallSettings(f);
  const auto out = RunStream(Connect(port).get(), Open("", &settings), {ToFrame(f, 1)});
  ASSERT_EQ(out.responses.size(), 2u);
  EXPECT_EQ(out.responses[1].error().code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  daemon.Signal(SIGTERM);
  EXPECT_EQ(daemon.WaitForExit(), 0);
  EXPECT_THAT(daemon.Log(), ::testing::Not(HasSubstr("\"level\":\"info\"")));

  // Bad configuration: a message naming the problem and exit code 2.
  DaemonProcess bad(LOGSTARD_BINARY, {"--max_pixels=-5"}, dir + "/bad");
  EXPECT_EQ(bad.WaitForExit(), 2);
  EXPECT_THAT(bad.Log(), HasSubstr("max_pixels"));
  DaemonProcess unknown(LOGSTARD_BINARY, {"--no_such_flag=1"}, dir + "/unknown");
  EXPECT_EQ(unknown.WaitForExit(), 2);
  EXPECT_THAT(unknown.Log(), HasSubstr("unknown flag --no_such_flag"));
}

std::string Read(const std::string& path) {
  std::ifstream in(path);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

bool Shell(const std::string& command) {
  return std::system(("(" + command + ") >/dev/null 2>&1").c_str()) == 0;
}

TEST(DaemonProcessTest, MutualTlsAndBearerToken) {
  if (!Shell("openssl version")) GTEST_SKIP() << "openssl is not installed";
  const std::string d = TestDir("tls");
  // A CA, a server certificate for 127.0.0.1/localhost and a client certificate.
  ASSERT_TRUE(Shell("cd " + d +
                    " && openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=test-ca"
                    " -keyout ca.key -out ca.pem"));
  ASSERT_TRUE(Shell("cd " + d +
                    " && printf 'subjectAltName=IP:127.0.0.1,DNS:localhost' > san.ext"
                    " && openssl req -newkey rsa:2048 -nodes -subj /CN=localhost -keyout server.key"
                    " -out server.csr && openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key"
                    " -CAcreateserial -days 2 -extfile san.ext -out server.pem"));
  ASSERT_TRUE(Shell("cd " + d +
                    " && openssl req -newkey rsa:2048 -nodes -subj /CN=client -keyout client.key"
                    " -out client.csr && openssl x509 -req -in client.csr -CA ca.pem -CAkey ca.key"
                    " -CAcreateserial -days 2 -out client.pem"));
  std::ofstream(d + "/token") << "tok-123\n";
  std::vector<std::string> args = BaseArgs();
  args.push_back("--tls_cert_file=" + d + "/server.pem");
  args.push_back("--tls_key_file=" + d + "/server.key");
  args.push_back("--tls_client_ca_file=" + d + "/ca.pem");
  args.push_back("--auth_token_file=" + d + "/token");
  DaemonProcess daemon(LOGSTARD_BINARY, args, d);
  const int port = daemon.WaitForPort();
  ASSERT_GT(port, 0) << daemon.Log();
  // An address, not a name: the certificate names IP 127.0.0.1 too, and no
  // resolver runs (c-ares leaks a little per lookup, which LeakSanitizer reports).
  const std::string target = absl::StrCat("127.0.0.1:", port);

  const SynthFrame f = Synth(128, 31);
  const v1::SessionSettings settings = SmallSettings(f);
  auto call = [&](std::shared_ptr<grpc::ChannelCredentials> creds, const std::string& token) {
    auto stub = v1::LogStar::NewStub(grpc::CreateChannel(target, creds));
    grpc::ClientContext c;
    c.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(20));
    if (!token.empty()) c.AddMetadata("authorization", "Bearer " + token);
    return RunStream(stub.get(), Open("", &settings), {ToFrame(f, 1)}, &c);
  };
  grpc::SslCredentialsOptions mutual;
  mutual.pem_root_certs = Read(d + "/ca.pem");
  mutual.pem_private_key = Read(d + "/client.key");
  mutual.pem_cert_chain = Read(d + "/client.pem");
  grpc::SslCredentialsOptions server_only;
  server_only.pem_root_certs = Read(d + "/ca.pem");

  auto ok = call(grpc::SslCredentials(mutual), "tok-123");
  ASSERT_TRUE(ok.status.ok()) << ok.status.error_message() << daemon.Log();
  ASSERT_EQ(ok.responses.size(), 2u);
  EXPECT_GT(Score(f, ok.responses[1].result()).f1, 0.85);
  EXPECT_EQ(call(grpc::SslCredentials(mutual), "wrong").status.error_code(),
            grpc::StatusCode::UNAUTHENTICATED);
  // Without a client certificate, or without TLS, no connection is made.
  EXPECT_EQ(call(grpc::SslCredentials(server_only), "tok-123").status.error_code(),
            grpc::StatusCode::UNAVAILABLE);
  EXPECT_EQ(call(grpc::InsecureChannelCredentials(), "tok-123").status.error_code(),
            grpc::StatusCode::UNAVAILABLE);
  daemon.Signal(SIGTERM);
  EXPECT_EQ(daemon.WaitForExit(), 0);
}

}  // namespace
}  // namespace logstar
