// Helpers for the C++ client library's tests (tests/clients/): an
// in-process logstard (server::LogStarServer) on a loopback port, and a
// client connected to it. Frames and settings come from
// tests/integration/harness.h.
#ifndef LOGSTAR_TESTS_CLIENTS_CLIENT_HARNESS_H_
#define LOGSTAR_TESTS_CLIENTS_CLIENT_HARNESS_H_

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "clients/cpp/client.h"
#include "gtest/gtest.h"
#include "server/server.h"

namespace logstar::testing {

// A server on 127.0.0.1:`port` (0: one the kernel picks), two engine
// threads; null (and a test failure) when it cannot start.
inline std::unique_ptr<server::LogStarServer> StartServer(server::ServerOptions options = {},
                                                          int port = 0) {
  options.listen_address = absl::StrCat("127.0.0.1:", port);
  options.engine_threads = 2;
  options.log_level = "warning";
  auto s = server::LogStarServer::Start(options);
  EXPECT_TRUE(s.ok()) << s.status();
  return s.ok() ? *std::move(s) : nullptr;
}

inline std::string Address(const server::LogStarServer& s) {
  return absl::StrCat("127.0.0.1:", s.port());
}

inline std::unique_ptr<Client> ConnectOrDie(ClientOptions options) {
  auto c = Client::Connect(options);
  EXPECT_TRUE(c.ok()) << c.status();
  return c.ok() ? *std::move(c) : nullptr;
}

// Pushes the frames one at a time, each answered before the next goes, and
// returns the answers.
inline std::vector<v1::StreamResponse> PushEach(Stream& stream,
                                                const std::vector<v1::Frame>& frames) {
  std::vector<v1::StreamResponse> answers;
  for (const v1::Frame& f : frames) {
    EXPECT_TRUE(stream.Push(f).ok());
    std::optional<StreamAnswer> a = stream.Read();
    EXPECT_TRUE(a.has_value());
    if (!a.has_value()) break;
    answers.push_back(a->response);
  }
  return answers;
}

// The same atoms, in the same order, at the same places and scales.
inline void ExpectSameAtoms(const v1::FrameResult& expected, const v1::FrameResult& got) {
  const auto& a = expected.atoms();
  const auto& b = got.atoms();
  ASSERT_GT(a.size(), 0);
  ASSERT_EQ(a.size(), b.size());
  for (int k = 0; k < a.size(); ++k) {
    EXPECT_EQ(a[k].x(), b[k].x()) << k;
    EXPECT_EQ(a[k].y(), b[k].y()) << k;
    EXPECT_EQ(a[k].sigma(), b[k].sigma()) << k;
  }
}

}  // namespace logstar::testing

#endif  // LOGSTAR_TESTS_CLIENTS_CLIENT_HARNESS_H_
