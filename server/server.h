// LogStarServer: logstard in a box. Owns the gRPC server with the LogStar
// service, the standard health service (grpc.health.v1) and server
// reflection, the engine's execution context, the worker pool, the
// sessions and the metrics. Used by logstard's main and, in process, by
// tests and benchmarks.
//
// Lifecycle: Start() listens and serves. Shutdown() is what SIGTERM does:
// health turns NOT_SERVING, new Stream/AnalyzeFrame calls get UNAVAILABLE,
// every open stream answers the frames it has received and ends with
// UNAVAILABLE, the server stops (after shutdown_grace_s calls still running
// are cancelled) and, with a state directory, every session is saved.
//
// Thread-safety: Shutdown() and Wait() may be called from any thread but a
// gRPC reaction; the accessors from any thread.
#ifndef LOGSTAR_SERVER_SERVER_H_
#define LOGSTAR_SERVER_SERVER_H_

#include <memory>

#include <grpcpp/grpcpp.h>

#include "absl/status/statusor.h"
#include "engine/base/context.h"
#include "engine/base/mutex.h"
#include "server/admission.h"
#include "server/metrics.h"
#include "server/options.h"
#include "server/service.h"
#include "server/session.h"
#include "server/shared_memory.h"
#include "server/unix_listener.h"
#include "server/worker_pool.h"

namespace logstar::server {

class LogStarServer {
 public:
  static absl::StatusOr<std::unique_ptr<LogStarServer>> Start(const ServerOptions& options);
  ~LogStarServer();  // Shutdown() unless done

  int port() const { return port_; }  // the bound port
  const ServerOptions& options() const { return options_; }
  SessionManager& sessions() { return *sessions_; }
  Metrics& metrics() { return *metrics_; }

  void Shutdown();
  void Wait();  // until Shutdown() has finished

 private:
  // The shared session store's reachability (the sweeper reports it): the
  // analysis service's health follows it while serving.
  void SetStoreHealth(bool ok);

  explicit LogStarServer(const ServerOptions& options) : options_(options) {}

  const ServerOptions options_;
  int port_ = 0;
  std::unique_ptr<ExecutionContext> context_;
  std::unique_ptr<Metrics> metrics_;
  // Before the sessions, pool and service: reservations end before it does.
  std::unique_ptr<MemoryBudget> memory_;
  std::unique_ptr<ConcurrencyLimit> unary_calls_;
  // Before the sessions: their sweeper reports the store's health here.
  Mutex health_mu_;
  bool serving_ ABSL_GUARDED_BY(health_mu_) = false;  // started, not shutting down
  bool store_ok_ ABSL_GUARDED_BY(health_mu_) = true;  // no store: always
  std::unique_ptr<SessionManager> sessions_;
  std::unique_ptr<WorkerPool> pool_;
  std::unique_ptr<WorkerPool> store_io_;  // with a shared session store
  std::unique_ptr<SharedMemoryRegistry> shared_memory_;
  std::unique_ptr<WatchHub> watchers_;
  std::unique_ptr<LogStarService> service_;
  std::unique_ptr<grpc::Server> server_;
  std::unique_ptr<UnixListener> unix_listener_;  // for unix: listen addresses
  Mutex shutdown_mu_;                            // one Shutdown() at a time
  bool shut_down_ = false;
  Notification done_;
};

}  // namespace logstar::server

#endif  // LOGSTAR_SERVER_SERVER_H_
