#include "server/server.h"

#include <fstream>
#include <sstream>

#include <grpcpp/ext/proto_server_reflection_plugin.h>
#include <grpcpp/health_check_service_interface.h>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "engine/base/status_macros.h"
#include "server/log.h"
#include "server/unix_listener.h"

namespace logstar::server {
namespace {

absl::StatusOr<std::string> ReadFile(const std::string& path, const char* what) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot read ", what, " ", path));
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> Credentials(const ServerOptions& o) {
  if (o.tls_cert_file.empty()) return grpc::InsecureServerCredentials();
  grpc::SslServerCredentialsOptions ssl;
  grpc::SslServerCredentialsOptions::PemKeyCertPair pair;
  LOGSTAR_ASSIGN_OR_RETURN(pair.private_key, ReadFile(o.tls_key_file, "tls_key_file"));
  LOGSTAR_ASSIGN_OR_RETURN(pair.cert_chain, ReadFile(o.tls_cert_file, "tls_cert_file"));
  ssl.pem_key_cert_pairs.push_back(pair);
  if (!o.tls_client_ca_file.empty()) {
    LOGSTAR_ASSIGN_OR_RETURN(ssl.pem_root_certs,
                             ReadFile(o.tls_client_ca_file, "tls_client_ca_file"));
    ssl.client_certificate_request = GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY;
  }
  return grpc::SslServerCredentials(ssl);
}

}  // namespace

absl::StatusOr<std::unique_ptr<LogStarServer>> LogStarServer::Start(const ServerOptions& options) {
  LOGSTAR_RETURN_IF_ERROR(options.Validate());
  SetLogLevel(*ParseLogLevel(options.log_level));
  std::unique_ptr<LogStarServer> s(new LogStarServer(options));

  std::string token;
  if (!options.auth_token_file.empty()) {
    LOGSTAR_ASSIGN_OR_RETURN(token, ReadFile(options.auth_token_file, "auth_token_file"));
    token = std::string(absl::StripAsciiWhitespace(token));
    if (token.empty()) return absl::InvalidArgumentError("auth_token_file holds no token");
  }
  LOGSTAR_ASSIGN_OR_RETURN(std::shared_ptr<grpc::ServerCredentials> credentials,
                           Credentials(options));
  LOGSTAR_ASSIGN_OR_RETURN(s->context_, ExecutionContext::Create({options.engine_threads}));
  s->metrics_ = std::make_unique<Metrics>();
  if (!options.metrics_address.empty()) {
    LOGSTAR_RETURN_IF_ERROR(s->metrics_->Serve(options.metrics_address));
  }
  s->memory_ = std::make_unique<MemoryBudget>(
      options.memory_budget_bytes > 0 ? options.memory_budget_bytes : DefaultMemoryBudget());
  s->unary_calls_ = std::make_unique<ConcurrencyLimit>(options.max_unary_calls);
  SessionManager::Options session_options{.idle_timeout_s = options.session_idle_timeout_s,
                                          .state_dir = options.state_dir,
                                          .save_interval_s = options.state_save_interval_s,
                                          .max_sessions = options.max_sessions,
                                          .session_store = options.session_store};
  // Readiness includes the shared store: a replica that cannot reach it
  // reports NOT_SERVING, and SERVING again when it returns (never after
  // shutdown began).
  LogStarServer* const server = s.get();
  session_options.on_store_health = [server](bool ok) { server->SetStoreHealth(ok); };
  s->sessions_ = std::make_unique<SessionManager>(
      session_options, SettingsCaps{.max_evaluations = options.max_evaluations,
                                    .max_frame_work = options.max_frame_work,
                                    .max_frame_pixels = options.max_pixels});
  LOGSTAR_RETURN_IF_ERROR(s->sessions_->LoadState());
  s->pool_ = std::make_unique<WorkerPool>(options.max_concurrent_frames);
  // Store calls (loading a session on a miss, saves) wait on the network:
  // their own threads, so they never wait behind analyses.
  if (options.session_store.has_value()) s->store_io_ = std::make_unique<WorkerPool>(2);
  LOGSTAR_ASSIGN_OR_RETURN(s->shared_memory_, SharedMemoryRegistry::Create({}));
  LogStarService::Deps deps;
  deps.options = &s->options_;
  deps.sessions = s->sessions_.get();
  deps.context = s->context_.get();
  deps.pool = s->pool_.get();
  deps.store_io = s->store_io_.get();
  deps.metrics = s->metrics_.get();
  deps.shared_memory = s->shared_memory_.get();
  deps.memory = s->memory_.get();
  deps.unary_calls = s->unary_calls_.get();
  s->watchers_ = std::make_unique<WatchHub>(s->metrics_.get(), options.max_watchers);
  deps.watchers = s->watchers_.get();
  deps.auth_token = token;
  s->service_ = std::make_unique<LogStarService>(deps);
  HappensBefore(s->service_.get());  // for its handlers (HandlerScope, service.cc)

  grpc::EnableDefaultHealthCheckService(true);
  grpc::reflection::InitProtoReflectionServerBuilderPlugin();
  grpc::ServerBuilder builder;
  if (IsUnixSocketAddress(options.listen_address)) {
    // Accepted by the daemon, which reads each caller's credentials
    // (server/unix_listener.h); the server gets the connections.
    LOGSTAR_ASSIGN_OR_RETURN(s->unix_listener_, UnixListener::Bind(options.listen_address));
  } else {
    builder.AddListeningPort(options.listen_address, credentials, &s->port_);
  }
  builder.SetMaxReceiveMessageSize(options.GrpcReceiveLimit());
  builder.SetMaxSendMessageSize(static_cast<int>(options.max_message_bytes));
  builder.RegisterService(s->service_.get());
  s->server_ = builder.BuildAndStart();
  if (s->server_ != nullptr && s->unix_listener_ != nullptr) {
    s->unix_listener_->Start(s->server_.get());
    s->port_ = 1;  // what gRPC reports for a Unix socket, kept for port_file readers
  }
  if (s->server_ == nullptr || s->port_ == 0) {
    return absl::UnavailableError(absl::StrCat("cannot listen on ", options.listen_address));
  }
  {
    MutexLock lock(&s->health_mu_);
    s->serving_ = true;
    s->server_->GetHealthCheckService()->SetServingStatus(v1::LogStar::service_full_name(),
                                                          s->store_ok_);
  }
  if (!options.port_file.empty()) {
    std::ofstream out(options.port_file, std::ios::trunc);
    out << s->port_ << "\n";
    if (!out.flush()) return absl::UnavailableError("cannot write port_file " + options.port_file);
  }
  Log(LogLevel::kInfo, "listening",
      {{"address", options.listen_address},
       {"port", s->port_},
       {"tls", !options.tls_cert_file.empty()},
       {"mutual_tls", !options.tls_client_ca_file.empty()},
       {"auth_token", !token.empty()},
       {"engine_threads", s->context_->num_threads()},
       {"max_concurrent_frames", options.max_concurrent_frames},
       {"memory_budget_bytes", s->memory_->capacity()},
       {"max_unary_calls", options.max_unary_calls},
       {"max_sessions", options.max_sessions},
       {"max_watchers", options.max_watchers},
       {"max_evaluations", options.max_evaluations},
       {"max_frame_work", options.max_frame_work},
       {"state_dir", options.state_dir},
       {"session_store",
        options.session_store.has_value() ? options.session_store->ToString() : ""},
       {"metrics_address", options.metrics_address},
       // The port bound, also when metrics_address asked for port 0.
       {"metrics_port", s->metrics_->port()}});
  return s;
}

void LogStarServer::SetStoreHealth(bool ok) {
  MutexLock lock(&health_mu_);
  store_ok_ = ok;
  if (serving_ && server_ != nullptr) {
    server_->GetHealthCheckService()->SetServingStatus(v1::LogStar::service_full_name(), ok);
  }
}

LogStarServer::~LogStarServer() { Shutdown(); }

void LogStarServer::Shutdown() {
  MutexLock lock(&shutdown_mu_);
  if (shut_down_) return;
  shut_down_ = true;
  if (server_ != nullptr) {
    Log(LogLevel::kInfo, "shutting_down", {{"open_streams", service_->open_streams()}});
    // Load balancers and clients watching health stop sending first.
    {
      MutexLock lock(&health_mu_);
      serving_ = false;
      server_->GetHealthCheckService()->SetServingStatus(false);
    }
    if (unix_listener_ != nullptr) unix_listener_->Stop();  // no new connections
    service_->BeginDrain();
    server_->Shutdown(
        std::chrono::system_clock::now() +
        std::chrono::milliseconds(static_cast<int64_t>(options_.shutdown_grace_s * 1000)));
    server_->Wait();
    // gRPC's Wait returns after every reaction has (OnDone included), through
    // synchronisation TSan cannot see; the reactions state it (service.cc).
    HappensAfter(service_.get());
    HappensAfter(watchers_.get());  // the watchers' OnDone (server/watch.cc)
  }
  pool_.reset();  // runs what is still queued (state saves)
  store_io_.reset();
  if (sessions_ != nullptr) sessions_->PersistAll();
  Log(LogLevel::kInfo, "stopped");
  done_.Notify();
}

void LogStarServer::Wait() { done_.WaitForNotification(); }

}  // namespace logstar::server
