// Issue 20: sessions shared by replicas through Redis (server/session_store.h
// and SessionManager with Options::session_store). Each test starts Debian's
// redis-server on a free loopback port in a temporary directory (no
// persistence) and stops it; without /usr/bin/redis-server the tests skip.
#include "server/session_store.h"

#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <string>
#include <thread>

#include <google/protobuf/util/message_differencer.h>
#include <grpcpp/grpcpp.h>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/server.h"
#include "server/session.h"
#include "tests/clients/client_harness.h"
#include "tests/integration/harness.h"

namespace logstar::server {
namespace {

using ::testing::HasSubstr;
constexpr char kRedisServer[] = "/usr/bin/redis-server";

int FreePort() {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr));
  socklen_t len = sizeof(addr);
  getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  close(fd);
  return ntohs(addr.sin_port);
}

// redis-server on 127.0.0.1:port, no snapshots, no append-only file.
class Redis {
 public:
  explicit Redis(int port) : port_(port) {
    dir_ = std::filesystem::temp_directory_path() /
           absl::StrCat("logstar_redis_", getpid(), "_", port);
    std::filesystem::create_directories(dir_);
  }
  ~Redis() {
    Stop();
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }
  // Starts it and waits (at most 10 s) until it answers.
  bool Start() {
    pid_ = fork();
    if (pid_ == 0) {
      const int null = open("/dev/null", O_WRONLY);
      dup2(null, STDOUT_FILENO);
      dup2(null, STDERR_FILENO);
      const std::string port = absl::StrCat(port_);
      execl(kRedisServer, kRedisServer, "--port", port.c_str(), "--bind", "127.0.0.1", "--save", "",
            "--appendonly", "no", "--dir", dir_.c_str(), "--loglevel", "warning",
            static_cast<char*>(nullptr));
      _exit(127);
    }
    auto store = NewRedisSessionStore(address(), {});
    for (int i = 0; i < 200; ++i) {
      if (store->Check().ok()) return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    return false;
  }
  void Stop() {
    if (pid_ <= 0) return;
    kill(pid_, SIGKILL);
    waitpid(pid_, nullptr, 0);
    pid_ = -1;
  }
  RedisAddress address() const { return {.host = "127.0.0.1", .port = port_, .db = 0}; }

 private:
  const int port_;
  std::filesystem::path dir_;
  pid_t pid_ = -1;
};

class SessionStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (access(kRedisServer, X_OK) != 0) {
      GTEST_SKIP() << kRedisServer << " is not installed (Debian's redis-server): skipped";
    }
    redis_ = std::make_unique<Redis>(FreePort());
    ASSERT_TRUE(redis_->Start()) << "redis-server did not start";
  }
  SessionManager::Options Shared() const {
    SessionManager::Options o;
    o.session_store = redis_->address();
    return o;
  }
  // What Redis holds of session `id`: its version and frames received
  // ({0, 0} when it holds nothing readable).
  std::pair<uint64_t, uint64_t> StoredVersionAndReceived(const std::string& id) const {
    absl::StatusOr<SessionStore::Stored> held =
        NewRedisSessionStore(redis_->address(), {})->Load(id);
    v1::SessionState state;
    if (!held.ok() || !state.ParseFromString(held->bytes)) return {0, 0};
    return {held->version, state.counters().frames_received()};
  }
  std::unique_ptr<Redis> redis_;
};

TEST(ParseSessionStoreUrlTest, HostPortAndDatabase) {
  absl::StatusOr<RedisAddress> a = ParseSessionStoreUrl("redis://cache.local:7000/2");
  ASSERT_TRUE(a.ok()) << a.status();
  EXPECT_EQ(a->host, "cache.local");
  EXPECT_EQ(a->port, 7000);
  EXPECT_EQ(a->db, 2);
  EXPECT_EQ(a->ToString(), "redis://cache.local:7000/2");
  absl::StatusOr<RedisAddress> d = ParseSessionStoreUrl("redis://10.0.0.5");
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_EQ(d->port, 6379);  // Redis's own default
  EXPECT_EQ(d->db, 0);
  for (const char* bad : {"http://h:1", "redis://", "redis://:6379", "redis://h:0",
                          "redis://h:65536", "redis://h:port", "redis://h:1/-1", "redis://h:1/x"}) {
    absl::StatusOr<RedisAddress> r = ParseSessionStoreUrl(bad);
    EXPECT_TRUE(absl::IsInvalidArgument(r.status())) << bad;
    EXPECT_THAT(r.status().message(), HasSubstr("session_store")) << bad;
  }
}

TEST_F(SessionStoreTest, VersionedSavesNeverGoBack) {
  auto store = NewRedisSessionStore(redis_->address(), {});
  EXPECT_TRUE(absl::IsNotFound(store->Load("a").status()));
  ASSERT_EQ(*store->Save("a", 2, std::string("two\0bytes", 9)), true);
  EXPECT_EQ(*store->Save("a", 1, "one"), false);        // older: refused
  EXPECT_EQ(*store->Save("a", 2, "two again"), false);  // the same version: refused
  absl::StatusOr<SessionStore::Stored> got = store->Load("a");
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(got->version, 2u);
  EXPECT_EQ(got->bytes, std::string("two\0bytes", 9));  // binary-safe
  EXPECT_EQ(*store->Save("a", 3, "three"), true);
  EXPECT_EQ(store->Load("a")->bytes, "three");
  ASSERT_EQ(*store->Save("b", 1, "b"), true);
  absl::StatusOr<std::vector<std::string>> ids = store->List(100);
  ASSERT_TRUE(ids.ok()) << ids.status();
  EXPECT_THAT(*ids, ::testing::UnorderedElementsAre("a", "b"));
  // Bounded: one of the two.
  absl::StatusOr<std::vector<std::string>> one = store->List(1);
  ASSERT_TRUE(one.ok()) << one.status();
  EXPECT_THAT(*one, ::testing::ElementsAre(::testing::AnyOf("a", "b")));
  EXPECT_TRUE(store->Remove("a").ok());
  EXPECT_TRUE(absl::IsNotFound(store->Load("a").status()));
}

TEST_F(SessionStoreTest, AReplicaLoadsASessionItDoesNotHold) {
  const SynthFrame f = testing::Synth(96, 3);
  const v1::SessionSettings settings = testing::SmallSettings(f);
  SessionManager a(Shared()), b(Shared());
  auto opened = a.Open("moving", &settings);
  ASSERT_TRUE(opened.ok()) << opened.status();
  EXPECT_FALSE(opened->second);
  opened->first->CountReceived();
  ASSERT_TRUE(a.Persist(*opened->first).ok());

  // b never saw it: Find loads it from Redis, settings and counters as saved.
  absl::StatusOr<std::shared_ptr<Session>> there = b.Find("moving");
  ASSERT_TRUE(there.ok()) << there.status();
  EXPECT_TRUE(google::protobuf::util::MessageDifferencer::Equals((*there)->settings(), settings));
  EXPECT_EQ((*there)->counters().frames_received(), 1u);
  EXPECT_EQ((*there)->store_version(), 1u);
  // Resuming it there by id finds it too.
  auto resumed = b.Open("moving", nullptr);
  ASSERT_TRUE(resumed.ok()) << resumed.status();
  EXPECT_TRUE(resumed->second);
  EXPECT_TRUE(absl::IsNotFound(b.Find("never-made").status()));
}

// The ids and only_in_store flags of a listing, in its order.
std::vector<std::pair<std::string, bool>> IdsAndFlags(const std::vector<v1::SessionInfo>& list) {
  std::vector<std::pair<std::string, bool>> out;
  for (const v1::SessionInfo& info : list)
    out.emplace_back(info.session_id(), info.only_in_store());
  return out;
}

TEST_F(SessionStoreTest, AListingIncludesTheSessionsOtherReplicasHold) {
  const SynthFrame f = testing::Synth(96, 7);
  const v1::SessionSettings settings = testing::SmallSettings(f);
  SessionManager a(Shared()), b(Shared());
  for (const char* id : {"c-a", "a-a"}) {
    auto s = a.Open(id, &settings);
    ASSERT_TRUE(s.ok()) << s.status();
    ASSERT_TRUE(a.Persist(*s->first).ok());
  }
  auto in_b = b.Open("b-b", &settings);
  ASSERT_TRUE(in_b.ok());
  in_b->first->CountReceived();
  ASSERT_TRUE(b.Persist(*in_b->first).ok());
  auto only_a = a.Open("only-here", &settings);  // never saved: a's alone
  ASSERT_TRUE(only_a.ok());

  // b holds b-b (its own Info, counters included) and lists a's saved
  // sessions from Redis, flagged, by id; a's unsaved one is not there.
  absl::StatusOr<std::vector<v1::SessionInfo>> listed = b.ListWithStore(false);
  ASSERT_TRUE(listed.ok()) << listed.status();
  using Flag = std::pair<std::string, bool>;
  EXPECT_THAT(IdsAndFlags(*listed),
              ::testing::ElementsAre(Flag{"a-a", true}, Flag{"b-b", false}, Flag{"c-a", true}));
  EXPECT_EQ((*listed)[1].counters().frames_received(), 1u);
  EXPECT_FALSE((*listed)[0].has_counters());
  // List alone stays local.
  EXPECT_THAT(IdsAndFlags(b.List(false)), ::testing::ElementsAre(Flag{"b-b", false}));

  // Once b loads a-a it holds it: listed with its Info, not twice.
  ASSERT_TRUE(b.Find("a-a").ok());
  listed = b.ListWithStore(true);
  ASSERT_TRUE(listed.ok()) << listed.status();
  EXPECT_THAT(IdsAndFlags(*listed),
              ::testing::ElementsAre(Flag{"a-a", false}, Flag{"b-b", false}, Flag{"c-a", true}));
  EXPECT_TRUE((*listed)[0].has_settings());

  // Redis gone: the listing fails naming it (local sessions alone would
  // look like the whole fleet's).
  redis_->Stop();
  listed = b.ListWithStore(false);
  EXPECT_EQ(listed.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(listed.status().message(), HasSubstr(redis_->address().ToString()));
}

TEST_F(SessionStoreTest, AStaleReplicaNeverOverwritesANewerState) {
  const SynthFrame f = testing::Synth(96, 4);
  const v1::SessionSettings settings = testing::SmallSettings(f);
  SessionManager a(Shared()), b(Shared());
  auto in_a = a.Open("s", &settings);
  ASSERT_TRUE(in_a.ok());
  ASSERT_TRUE(a.Persist(*in_a->first).ok());  // version 1
  auto in_b = b.Find("s");
  ASSERT_TRUE(in_b.ok());
  for (int i = 0; i < 3; ++i) (*in_b)->CountReceived();
  ASSERT_TRUE(b.Persist(**in_b).ok());  // version 2, three frames
  // a still holds version 1 and saves it as its version 2: refused, and a
  // forgets its stale copy.
  in_a->first->CountReceived();
  ASSERT_TRUE(a.Persist(*in_a->first).ok());
  EXPECT_EQ(StoredVersionAndReceived("s"), std::make_pair(uint64_t{2}, uint64_t{3}));
  // Asked again, a serves the newer state.
  auto again = a.Find("s");
  ASSERT_TRUE(again.ok());
  EXPECT_EQ((*again)->counters().frames_received(), 3u);
  EXPECT_EQ((*again)->store_version(), 2u);
}

TEST_F(SessionStoreTest, TheReplicaWithAStreamAttachedSavesAboveALateSave) {
  // b let the session go (its drain's final save lands late, version 2)
  // while a stream on a already uses it: a's copy is the current one.
  const SynthFrame f = testing::Synth(96, 6);
  const v1::SessionSettings settings = testing::SmallSettings(f);
  SessionManager a(Shared()), b(Shared());
  auto in_b = b.Open("late", &settings);
  ASSERT_TRUE(in_b.ok());
  ASSERT_TRUE(b.Persist(*in_b->first).ok());  // version 1
  auto in_a = a.Open("late", nullptr);        // loads version 1
  ASSERT_TRUE(in_a.ok()) << in_a.status();
  in_a->first->Attach();
  ASSERT_TRUE(b.Persist(*in_b->first).ok());  // the late save: version 2
  for (int i = 0; i < 5; ++i) in_a->first->CountReceived();
  ASSERT_TRUE(a.Persist(*in_a->first).ok());
  EXPECT_EQ(StoredVersionAndReceived("late"), std::make_pair(uint64_t{3}, uint64_t{5}));
  in_a->first->Detach();
}

TEST_F(SessionStoreTest, UnreachableStoreIsNamedAndTheManagerRecovers) {
  const SynthFrame f = testing::Synth(96, 5);
  const v1::SessionSettings settings = testing::SmallSettings(f);
  {
    SessionManager writer(Shared());
    auto s = writer.Open("kept", &settings);
    ASSERT_TRUE(s.ok());
    ASSERT_TRUE(writer.Persist(*s->first).ok());
  }
  std::vector<bool> health;
  Mutex health_mu;
  SessionManager::Options o = Shared();
  o.on_store_health = [&](bool ok) {
    MutexLock lock(&health_mu);
    health.push_back(ok);
  };
  SessionManager m(o);
  ASSERT_TRUE(m.LoadState().ok());
  redis_->Stop();
  const absl::StatusOr<std::shared_ptr<Session>> lost = m.Find("kept");
  ASSERT_FALSE(lost.ok());
  EXPECT_EQ(lost.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(lost.status().message(), HasSubstr(redis_->address().ToString()));
  // The sweeper notices within a second or two.
  const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  auto last = [&] {
    MutexLock lock(&health_mu);
    return health.empty() ? std::optional<bool>() : std::optional<bool>(health.back());
  };
  while (last() != false && std::chrono::steady_clock::now() < until) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  EXPECT_EQ(last(), false);

  // Back (empty: redis keeps nothing here): the manager works again by itself.
  ASSERT_TRUE(redis_->Start());
  while (last() != true && std::chrono::steady_clock::now() < until) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  EXPECT_EQ(last(), true);
  auto fresh = m.Open("kept", &settings);
  ASSERT_TRUE(fresh.ok()) << fresh.status();
  EXPECT_TRUE(m.Persist(*fresh->first).ok());
}

TEST_F(SessionStoreTest, ReadinessFollowsTheStore) {
  ServerOptions options = {};
  options.session_store = redis_->address();
  options.session_idle_timeout_s = 4;  // the sweeper checks every second
  auto server = testing::StartServer(options);
  ASSERT_NE(server, nullptr);
  auto channel = grpc::CreateChannel(absl::StrCat("127.0.0.1:", server->port()),
                                     grpc::InsecureChannelCredentials());
  const std::string service = "logstar.v1.LogStar";
  EXPECT_EQ(testing::HealthStatus(channel.get(), service), 1);
  // ListSessions lists what another replica saved in the store, flagged.
  {
    const SynthFrame f = testing::Synth(96, 8);
    const v1::SessionSettings settings = testing::SmallSettings(f);
    SessionManager other(Shared());
    auto s = other.Open("on-another-replica", &settings);
    ASSERT_TRUE(s.ok());
    ASSERT_TRUE(other.Persist(*s->first).ok());
    v1::ListSessionsResponse list;
    grpc::ClientContext context;
    ASSERT_TRUE(v1::LogStar::NewStub(channel)
                    ->ListSessions(&context, v1::ListSessionsRequest(), &list)
                    .ok());
    ASSERT_EQ(list.sessions_size(), 1);
    EXPECT_EQ(list.sessions(0).session_id(), "on-another-replica");
    EXPECT_TRUE(list.sessions(0).only_in_store());
  }
  redis_->Stop();
  const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (testing::HealthStatus(channel.get(), service) != 2 &&
         std::chrono::steady_clock::now() < until) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  EXPECT_EQ(testing::HealthStatus(channel.get(), service), 2);
  // A call for a session this replica does not hold: UNAVAILABLE naming the store.
  v1::GetSessionRequest get;
  get.set_session_id("elsewhere");
  v1::SessionInfo info;
  grpc::ClientContext context;
  const grpc::Status status = v1::LogStar::NewStub(channel)->GetSession(&context, get, &info);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::UNAVAILABLE);
  EXPECT_THAT(status.error_message(), HasSubstr("redis://127.0.0.1:"));
  {
    v1::ListSessionsResponse list;
    grpc::ClientContext list_context;
    const grpc::Status listed = v1::LogStar::NewStub(channel)->ListSessions(
        &list_context, v1::ListSessionsRequest(), &list);
    EXPECT_EQ(listed.error_code(), grpc::StatusCode::UNAVAILABLE);
    EXPECT_THAT(listed.error_message(), HasSubstr("redis://127.0.0.1:"));
  }
  ASSERT_TRUE(redis_->Start());
  while (testing::HealthStatus(channel.get(), service) != 1 &&
         std::chrono::steady_clock::now() < until) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  EXPECT_EQ(testing::HealthStatus(channel.get(), service), 1);
  server->Shutdown();
}

}  // namespace
}  // namespace logstar::server
