// logstar::Client against an in-process logstard (server::LogStarServer):
// every frame answered in order with atoms that match the generated frames'
// ground truth, back-pressure, the session RPCs, health, the bearer token,
// mutual TLS and an unreachable server.
#include "clients/cpp/client.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <memory>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/server.h"
#include "tests/integration/harness.h"

namespace logstar {
namespace {

using ::logstar::testing::Score;
using ::logstar::testing::SmallSettings;
using ::logstar::testing::Synth;
using ::logstar::testing::ToFrame;
using ::testing::HasSubstr;

std::unique_ptr<server::LogStarServer> StartServer(server::ServerOptions options = {}) {
  options.listen_address = "127.0.0.1:0";
  options.engine_threads = 2;
  options.log_level = "warning";
  auto s = server::LogStarServer::Start(options);
  EXPECT_TRUE(s.ok()) << s.status();
  return s.ok() ? *std::move(s) : nullptr;
}

std::string Address(const server::LogStarServer& s) { return absl::StrCat("127.0.0.1:", s.port()); }

std::unique_ptr<Client> ConnectOrDie(ClientOptions options) {
  auto c = Client::Connect(options);
  EXPECT_TRUE(c.ok()) << c.status();
  return c.ok() ? *std::move(c) : nullptr;
}

TEST(ClientTest, EveryFrameIsAnsweredInOrderWithTheTrueAtoms) {
  auto server = StartServer();
  ASSERT_NE(server, nullptr);
  auto client = ConnectOrDie({.address = Address(*server)});
  ASSERT_NE(client, nullptr);
  auto health = client->Health();
  ASSERT_TRUE(health.ok()) << health.status();
  EXPECT_EQ(*health, ServingStatus::kServing);

  std::vector<SynthFrame> frames;
  for (int i = 0; i < 4; ++i) frames.push_back(Synth(128, 100 + i));
  auto stream = client->OpenStream({.settings = SmallSettings(frames[0]), .max_in_flight = 2});
  ASSERT_TRUE(stream.ok()) << stream.status();
  const std::string id = (*stream)->opened().session_id();
  EXPECT_FALSE(id.empty());
  // Push from one thread, read from another, as a microscope loop would.
  std::vector<StreamAnswer> answers;
  std::thread reader([&] {
    while (auto a = (*stream)->Read()) answers.push_back(*std::move(a));
  });
  for (int i = 0; i < 4; ++i) {
    ASSERT_TRUE((*stream)->Push(ToFrame(frames[i], 10 + i)).ok());
    EXPECT_LE((*stream)->in_flight(), 2);
  }
  EXPECT_TRUE((*stream)->Finish().ok());
  reader.join();
  ASSERT_EQ(answers.size(), 4u);
  for (int i = 0; i < 4; ++i) {
    SCOPED_TRACE(i);
    EXPECT_EQ(answers[i].response.sequence(), 10u + i);
    ASSERT_TRUE(answers[i].response.has_result());
    EXPECT_GT(Score(frames[i], answers[i].response.result()).f1, 0.85);
    EXPECT_GT(answers[i].latency_ms, 0.0);
  }

  // The session RPCs on the session the stream made.
  auto info = client->GetSession(id, /*include_cache=*/true);
  ASSERT_TRUE(info.ok()) << info.status();
  EXPECT_EQ(info->counters().frames_analysed(), 4u);
  EXPECT_GT(info->cache().windows_size(), 0);
  v1::UpdateSessionRequest update;
  update.set_session_id(id);
  *update.mutable_settings() = SmallSettings(frames[0], 64, 5);
  auto updated = client->UpdateSession(update);
  ASSERT_TRUE(updated.ok()) << updated.status();
  EXPECT_EQ(updated->settings().analysis().evaluations(), 5);
  auto listed = client->ListSessions();
  ASSERT_TRUE(listed.ok()) << listed.status();
  ASSERT_EQ(listed->size(), 1u);  // the server's only session
  EXPECT_EQ((*listed)[0].session_id(), id);
  EXPECT_EQ((*listed)[0].counters().frames_analysed(), 4u);
  EXPECT_FALSE((*listed)[0].has_cache());
  ASSERT_TRUE(client->ResetSession(id, /*delete_session=*/true).ok());
  listed = client->ListSessions();
  ASSERT_TRUE(listed.ok()) << listed.status();
  EXPECT_TRUE(listed->empty());
  auto gone = client->GetSession(id);
  EXPECT_EQ(gone.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(gone.status().message(), HasSubstr(Address(*server)));
}

TEST(ClientTest, PushBlocksWhileTheWindowIsFull) {
  auto server = StartServer();
  ASSERT_NE(server, nullptr);
  auto client = ConnectOrDie({.address = Address(*server)});
  ASSERT_NE(client, nullptr);
  const SynthFrame f = Synth(128, 7);
  v1::SessionSettings settings = SmallSettings(f);
  settings.set_overload_policy(v1::OVERLOAD_POLICY_BLOCK);
  auto stream = client->OpenStream({.settings = settings, .max_in_flight = 1});
  ASSERT_TRUE(stream.ok()) << stream.status();
  const std::string id = (*stream)->opened().session_id();
  for (int k = 1; k <= 4; ++k) {
    ASSERT_TRUE((*stream)->Push(ToFrame(f, k)).ok());
    // With one frame in flight, Push(k) returns only after frame k-1 was
    // answered: the server's own counters say it was analysed by then.
    auto info = client->GetSession(id);
    ASSERT_TRUE(info.ok());
    EXPECT_GE(info->counters().frames_analysed(), static_cast<uint64_t>(k - 1));
    EXPECT_LE(info->counters().frames_received(), static_cast<uint64_t>(k));
  }
  EXPECT_TRUE((*stream)->Finish().ok());
  int answered = 0;
  while (auto a = (*stream)->Read()) answered += a->response.has_result();
  EXPECT_EQ(answered, 4);
}

TEST(ClientTest, OptionsAreChecked) {
  EXPECT_THAT(Client::Connect({}).status().message(), HasSubstr("address"));
  EXPECT_FALSE(Client::Connect({.address = "x:1", .tls_client_cert_file = "c.pem"}).ok());
  EXPECT_FALSE(StreamOptions{.max_in_flight = 0}.Validate().ok());
  EXPECT_THAT(StreamOptions{}.Validate().message(), HasSubstr("settings"));
}

TEST(ClientTest, UnreachableServerIsUnavailableNamingTheAddress) {
  // A port that was free a moment ago: nothing listens there.
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
  socklen_t len = sizeof(addr);
  getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  close(fd);
  const std::string address = absl::StrCat("127.0.0.1:", ntohs(addr.sin_port));
  auto c = Client::Connect({.address = address, .connect_timeout_s = 1.0});
  EXPECT_EQ(c.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(c.status().message(), HasSubstr("cannot reach logstard at " + address));
}

TEST(ClientTest, BearerToken) {
  const std::string path = ::testing::TempDir() + "/client_token";
  std::ofstream(path) << "s3cret\n";
  server::ServerOptions options;
  options.auth_token_file = path;
  auto server = StartServer(options);
  ASSERT_NE(server, nullptr);
  const SynthFrame f = Synth(128, 3);
  for (const char* token : {"", "wrong"}) {
    auto client = ConnectOrDie({.address = Address(*server), .token = token});
    ASSERT_NE(client, nullptr);
    EXPECT_EQ(client->OpenStream({.settings = SmallSettings(f)}).status().code(),
              absl::StatusCode::kUnauthenticated);
    EXPECT_EQ(client->GetSession("x").status().code(), absl::StatusCode::kUnauthenticated);
  }
  auto client = ConnectOrDie({.address = Address(*server), .token = "s3cret"});
  ASSERT_NE(client, nullptr);
  const v1::SessionSettings settings = SmallSettings(f);
  auto result = client->AnalyzeFrame(ToFrame(f, 1), &settings);
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_GT(Score(f, *result).f1, 0.85);
}

bool Shell(const std::string& command) {
  return std::system(("(" + command + ") >/dev/null 2>&1").c_str()) == 0;
}

TEST(ClientTest, MutualTls) {
  if (!Shell("openssl version")) GTEST_SKIP() << "openssl is not installed";
  const std::string d = ::testing::TempDir() + "/client_tls";
  std::filesystem::create_directories(d);
  ASSERT_TRUE(Shell("cd " + d +
                    " && openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=test-ca"
                    " -keyout ca.key -out ca.pem"
                    " && printf 'subjectAltName=IP:127.0.0.1' > san.ext"
                    " && openssl req -newkey rsa:2048 -nodes -subj /CN=localhost -keyout server.key"
                    " -out server.csr && openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key"
                    " -CAcreateserial -days 2 -extfile san.ext -out server.pem"
                    " && openssl req -newkey rsa:2048 -nodes -subj /CN=client -keyout client.key"
                    " -out client.csr && openssl x509 -req -in client.csr -CA ca.pem -CAkey ca.key"
                    " -CAcreateserial -days 2 -out client.pem"));
  server::ServerOptions options;
  options.tls_cert_file = d + "/server.pem";
  options.tls_key_file = d + "/server.key";
  options.tls_client_ca_file = d + "/ca.pem";
  auto server = StartServer(options);
  ASSERT_NE(server, nullptr);
  // An address, not a name: no resolver runs (see daemon_process_test).
  auto client = ConnectOrDie({.address = Address(*server),
                              .use_tls = true,
                              .tls_root_certs_file = d + "/ca.pem",
                              .tls_client_cert_file = d + "/client.pem",
                              .tls_client_key_file = d + "/client.key"});
  ASSERT_NE(client, nullptr);
  const SynthFrame f = Synth(128, 5);
  auto stream = client->OpenStream({.settings = SmallSettings(f)});
  ASSERT_TRUE(stream.ok()) << stream.status();
  ASSERT_TRUE((*stream)->Push(ToFrame(f, 1)).ok());
  auto answer = (*stream)->Read();
  ASSERT_TRUE(answer.has_value());
  EXPECT_GT(Score(f, answer->response.result()).f1, 0.85);
  EXPECT_TRUE((*stream)->Finish().ok());
  // Without TLS, or without a client certificate, nothing gets through:
  // Connect fails, or (TLS 1.3 finishes the client's side of the handshake
  // before the server checks its certificate) the first RPC does.
  auto first_failure = [](const ClientOptions& o) {
    auto c = Client::Connect(o);
    if (!c.ok()) return c.status().code();
    return (*c)->GetSession("x").status().code();
  };
  EXPECT_EQ(first_failure({.address = Address(*server), .connect_timeout_s = 1.0}),
            absl::StatusCode::kUnavailable);
  EXPECT_EQ(first_failure({.address = Address(*server),
                           .use_tls = true,
                           .tls_root_certs_file = d + "/ca.pem",
                           .connect_timeout_s = 1.0}),
            absl::StatusCode::kUnavailable);
  EXPECT_EQ(
      Client::Connect(
          {.address = Address(*server), .use_tls = true, .tls_root_certs_file = d + "/missing.pem"})
          .status()
          .code(),
      absl::StatusCode::kNotFound);
}

}  // namespace
}  // namespace logstar
