// Issue 20, affinity: every RPC of a session carries its id as the gRPC
// metadata x-logstar-session, so a proxy can route it. A stand-in
// LogStar service records the metadata each call arrives with, as the
// daemon (or a proxy) sees it, and refuses the call; the real C++ client
// makes the calls.
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <grpcpp/grpcpp.h>

#include "absl/strings/str_cat.h"
#include "clients/cpp/client.h"
#include "engine/base/mutex.h"
#include "gtest/gtest.h"
#include "logstar/v1/service.grpc.pb.h"

namespace logstar {
namespace {

constexpr char kKey[] = "x-logstar-session";

// The lock of the refused streams (below): a function-local static, so that
// OnDone reads no member of its stream before it holds the lock.
Mutex& RefusedStreamsMutex() {
  static Mutex* const mu = new Mutex();
  return *mu;
}

// A stream refused at once. Owned and freed by the service, not deleted in
// OnDone: gRPC creates it on one of its threads and runs OnDone on another,
// handing it over through its own synchronisation, which ThreadSanitizer
// does not see (it reported the delete racing the new). The service files
// each stream under RefusedStreamsMutex() once made, OnDone takes that lock,
// and so does the service before it frees its streams.
class RefusedStream : public grpc::ServerBidiReactor<v1::StreamRequest, v1::StreamResponse> {
 public:
  RefusedStream() { Finish(grpc::Status(grpc::StatusCode::UNIMPLEMENTED, "recording only")); }
  void OnDone() override { MutexLock lock(&RefusedStreamsMutex()); }
};

// Records, per method, the values of x-logstar-session its calls carried
// ("" for a call without one), then answers UNIMPLEMENTED.
class RecordingService final : public v1::LogStar::CallbackService {
 public:
  std::vector<std::string> Seen(const std::string& method) {
    MutexLock lock(&mu_);
    return seen_[method];
  }

  grpc::ServerBidiReactor<v1::StreamRequest, v1::StreamResponse>* Stream(
      grpc::CallbackServerContext* context) override {
    Record("Stream", context);
    auto refused = std::make_unique<RefusedStream>();
    RefusedStream* const stream = refused.get();
    MutexLock lock(&RefusedStreamsMutex());
    refused_.push_back(std::move(refused));
    return stream;
  }
  ~RecordingService() override {
    MutexLock lock(&RefusedStreamsMutex());
    refused_.clear();
  }
  grpc::ServerUnaryReactor* AnalyzeFrame(grpc::CallbackServerContext* c,
                                         const v1::AnalyzeFrameRequest*,
                                         v1::FrameResult*) override {
    return Answer("AnalyzeFrame", c);
  }
  grpc::ServerUnaryReactor* UpdateSession(grpc::CallbackServerContext* c,
                                          const v1::UpdateSessionRequest*,
                                          v1::SessionInfo*) override {
    return Answer("UpdateSession", c);
  }
  grpc::ServerUnaryReactor* GetSession(grpc::CallbackServerContext* c, const v1::GetSessionRequest*,
                                       v1::SessionInfo*) override {
    return Answer("GetSession", c);
  }
  grpc::ServerUnaryReactor* ResetSession(grpc::CallbackServerContext* c,
                                         const v1::ResetSessionRequest*,
                                         v1::SessionInfo*) override {
    return Answer("ResetSession", c);
  }
  grpc::ServerUnaryReactor* ListSessions(grpc::CallbackServerContext* c,
                                         const v1::ListSessionsRequest*,
                                         v1::ListSessionsResponse*) override {
    return Answer("ListSessions", c);
  }

 private:
  void Record(const std::string& method, const grpc::CallbackServerContext* context) {
    std::string value;
    const auto& metadata = context->client_metadata();
    for (auto [it, end] = metadata.equal_range(kKey); it != end; ++it) {
      value += std::string(it->second.data(), it->second.size());
    }
    MutexLock lock(&mu_);
    seen_[method].push_back(value);
  }
  grpc::ServerUnaryReactor* Answer(const std::string& method, grpc::CallbackServerContext* c) {
    Record(method, c);
    grpc::ServerUnaryReactor* reactor = c->DefaultReactor();
    reactor->Finish(grpc::Status(grpc::StatusCode::UNIMPLEMENTED, "recording only"));
    return reactor;
  }

  Mutex mu_;
  std::map<std::string, std::vector<std::string>> seen_ ABSL_GUARDED_BY(mu_);
  std::vector<std::unique_ptr<RefusedStream>> refused_ ABSL_GUARDED_BY(RefusedStreamsMutex());
};

class SessionMetadataTest : public ::testing::Test {
 protected:
  void SetUp() override {
    grpc::ServerBuilder builder;
    int port = 0;
    builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port);
    builder.RegisterService(&service_);
    server_ = builder.BuildAndStart();
    ASSERT_NE(server_, nullptr);
    ASSERT_GT(port, 0);
    auto client = Client::Connect({.address = absl::StrCat("127.0.0.1:", port)});
    ASSERT_TRUE(client.ok()) << client.status();
    client_ = *std::move(client);
  }
  void TearDown() override {
    client_.reset();
    if (server_ != nullptr) server_->Shutdown();
  }

  RecordingService service_;
  std::unique_ptr<grpc::Server> server_;
  std::unique_ptr<Client> client_;
};

TEST_F(SessionMetadataTest, EveryRpcOfASessionCarriesItsId) {
  EXPECT_EQ(std::string(kSessionMetadataKey), kKey);
  v1::Frame frame;
  frame.set_session_id("s-frame");
  (void)client_->AnalyzeFrame(frame, nullptr);
  v1::UpdateSessionRequest update;
  update.set_session_id("s-update");
  (void)client_->UpdateSession(update);
  (void)client_->GetSession("s-get");
  (void)client_->ResetSession("s-reset", /*delete_session=*/true);
  (void)client_->OpenStream({.session_id = "s-stream"});

  EXPECT_EQ(service_.Seen("AnalyzeFrame"), std::vector<std::string>{"s-frame"});
  EXPECT_EQ(service_.Seen("UpdateSession"), std::vector<std::string>{"s-update"});
  EXPECT_EQ(service_.Seen("GetSession"), std::vector<std::string>{"s-get"});
  EXPECT_EQ(service_.Seen("ResetSession"), std::vector<std::string>{"s-reset"});
  EXPECT_EQ(service_.Seen("Stream"), std::vector<std::string>{"s-stream"});
}

TEST_F(SessionMetadataTest, CallsWithoutASessionCarryNone) {
  (void)client_->ListSessions();
  v1::SessionSettings settings;
  (void)client_->OpenStream({.settings = settings});  // a new session: the server picks its id
  v1::Frame one_off;  // no session: nothing kept, nothing to route by
  (void)client_->AnalyzeFrame(one_off, &settings);

  EXPECT_EQ(service_.Seen("ListSessions"), std::vector<std::string>{""});
  EXPECT_EQ(service_.Seen("Stream"), std::vector<std::string>{""});
  EXPECT_EQ(service_.Seen("AnalyzeFrame"), std::vector<std::string>{""});
}

}  // namespace
}  // namespace logstar
