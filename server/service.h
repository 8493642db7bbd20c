// The logstar.v1.LogStar service on gRPC's callback API: one reactor class
// per RPC that does work (StreamReactor, AnalyzeFrameReactor); the session
// and shared memory RPCs only touch their tables under short locks (and
// identify the caller, open a shared memory object without blocking or
// close one) and answer at once.
//
// Reactions never block: they check cheap things (auth, limits, the overload
// policy), queue frames and return. Decoding, analysis and encoding run on
// the WorkerPool (the analysis itself in the engine's oneTBB arena), and the
// worker hands the result back to the reactor, which writes it. Per stream:
// at most one frame is analysed at a time, one write is in flight, the
// queue holds at most the session's queue_capacity frames, and answers go
// out in the order the frames came in (a slot is reserved for each frame on
// arrival and filled by its result, dropped or error record).
//
// Admission (server/admission.h): a frame's message is reserved against the
// memory budget when it is accepted and its estimated peak before it is
// analysed; at most max_unary_calls AnalyzeFrame calls are admitted at once.
// What does not fit is refused with RESOURCE_EXHAUSTED, never queued.
//
// Thread-safety: gRPC calls into the service from its own threads; every
// method may be called from any thread.
#ifndef LOGSTAR_SERVER_SERVICE_H_
#define LOGSTAR_SERVER_SERVICE_H_

#include <atomic>
#include <chrono>
#include <optional>
#include <string>

#include <grpcpp/grpcpp.h>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_set.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "engine/base/context.h"
#include "engine/base/mutex.h"
#include "logstar/v1/service.grpc.pb.h"
#include "server/admission.h"
#include "server/metrics.h"
#include "server/options.h"
#include "server/session.h"
#include "server/shared_memory.h"
#include "server/watch.h"
#include "server/worker_pool.h"

namespace logstar::server {

class StreamReactor;

class LogStarService final : public v1::LogStar::CallbackService {
 public:
  // Not owned; all must outlive the service.
  struct Deps {
    const ServerOptions* options = nullptr;
    SessionManager* sessions = nullptr;
    ExecutionContext* context = nullptr;
    WorkerPool* pool = nullptr;
    // With a shared session store (sessions->shared()): the threads that
    // wait on it — a call for a session this replica does not hold loads it
    // there, never in a reaction — and that save sessions. Null otherwise.
    WorkerPool* store_io = nullptr;
    Metrics* metrics = nullptr;
    SharedMemoryRegistry* shared_memory = nullptr;
    MemoryBudget* memory = nullptr;           // frames' messages and analyses
    ConcurrencyLimit* unary_calls = nullptr;  // AnalyzeFrame calls admitted
    WatchHub* watchers = nullptr;             // Watch calls; every result is published to it
    std::string auth_token;                   // empty: no token required
  };
  explicit LogStarService(const Deps& deps);

  grpc::ServerBidiReactor<v1::StreamRequest, v1::StreamResponse>* Stream(
      grpc::CallbackServerContext* context) override;
  grpc::ServerUnaryReactor* AnalyzeFrame(grpc::CallbackServerContext* context,
                                         const v1::AnalyzeFrameRequest* request,
                                         v1::FrameResult* response) override;
  grpc::ServerUnaryReactor* UpdateSession(grpc::CallbackServerContext* context,
                                          const v1::UpdateSessionRequest* request,
                                          v1::SessionInfo* response) override;
  grpc::ServerUnaryReactor* GetSession(grpc::CallbackServerContext* context,
                                       const v1::GetSessionRequest* request,
                                       v1::SessionInfo* response) override;
  grpc::ServerUnaryReactor* ResetSession(grpc::CallbackServerContext* context,
                                         const v1::ResetSessionRequest* request,
                                         v1::SessionInfo* response) override;
  grpc::ServerUnaryReactor* ListSessions(grpc::CallbackServerContext* context,
                                         const v1::ListSessionsRequest* request,
                                         v1::ListSessionsResponse* response) override;
  grpc::ServerUnaryReactor* RegisterSharedMemory(grpc::CallbackServerContext* context,
                                                 const v1::RegisterSharedMemoryRequest* request,
                                                 v1::SharedMemoryRegion* response) override;
  grpc::ServerUnaryReactor* UnregisterSharedMemory(
      grpc::CallbackServerContext* context, const v1::UnregisterSharedMemoryRequest* request,
      v1::UnregisterSharedMemoryResponse* response) override;
  grpc::ServerUnaryReactor* ListSharedMemory(grpc::CallbackServerContext* context,
                                             const v1::ListSharedMemoryRequest* request,
                                             v1::ListSharedMemoryResponse* response) override;
  grpc::ServerWriteReactor<v1::WatchResponse>* Watch(grpc::CallbackServerContext* context,
                                                     const v1::WatchRequest* request) override;

  // Refuses new Stream, AnalyzeFrame and Watch calls (UNAVAILABLE), asks
  // every open stream to answer the frames it has received and end, and
  // ends every watcher (UNAVAILABLE). Returns at
  // once; gRPC's Server::Shutdown then waits for the streams.
  void BeginDrain();
  int open_streams() const;

  // ---- For the reactors ----

  const Deps& deps() const { return deps_; }
  // OK, or UNAUTHENTICATED unless the call carries the bearer token.
  grpc::Status Authorize(const grpc::CallbackServerContext* context) const;
  // false when draining: the stream must not start.
  bool Register(StreamReactor* stream);
  void Unregister(StreamReactor* stream);
  bool draining() const;

  // What the session's watchers (server/watch.h) get of a frame: its result
  // and its pixels as analysed (a view of the frame's: valid while it is).
  struct ForWatchers {
    v1::FrameResult result;
    cv::Mat image;
  };
  struct Processed {
    v1::FrameResult result;
    bool tuned = false;                  // windows were tuned: the session's state changed
    std::optional<ForWatchers> watched;  // set when the session has watchers
  };
  // Decodes, analyses and encodes one frame (on a worker thread) and counts
  // it as analysed; errors are the caller's to count. The caller hands
  // `watched` to Publish once its answer is on its way, so that watchers
  // never delay it. Its estimated peak memory is reserved first
  // (RESOURCE_EXHAUSTED when it does not fit the budget) and returned when
  // the result is made. `regions`: the caller's view of the shared memory
  // regions (RegionsFor), null when the frame does not use them.
  absl::StatusOr<Processed> Process(Session& session, const v1::Frame& frame,
                                    const SharedMemoryRegistry* regions, absl::Time received,
                                    std::chrono::steady_clock::time_point arrival,
                                    const std::atomic<bool>* cancel);
  // The shared memory regions as the caller of `context` sees them: its own,
  // and only objects it may read (server/shared_memory.h). PERMISSION_DENIED
  // when the caller cannot be identified (server/peer.h).
  absl::StatusOr<SharedMemoryRegistry> RegionsFor(const grpc::CallbackServerContext* context) const;
  // The frame's estimated peak (engine/analysis/memory_estimate.h) reserved
  // against the memory budget, or RESOURCE_EXHAUSTED naming both.
  absl::StatusOr<MemoryBudget::Reservation> ReserveAnalysis(const Session& session,
                                                            const v1::Frame& frame);
  // Hands a frame's result to the session's watchers (server/watch.h); never
  // blocks on them. The frame's pixels must still be alive.
  void Publish(const Session& session, const ForWatchers& watched);
  void CountDropped(Session* session);
  void CountFailed(Session* session, const absl::Status& status);
  // Saves the session on a worker (file and store I/O never run in a reaction).
  void PersistSoon(std::shared_ptr<Session> session);

 private:
  template <typename Body>
  grpc::ServerUnaryReactor* AnswerInline(grpc::CallbackServerContext* context, Body&& body);
  const Deps deps_;
  mutable Mutex mu_;
  bool draining_ ABSL_GUARDED_BY(mu_) = false;
  absl::flat_hash_set<StreamReactor*> streams_ ABSL_GUARDED_BY(mu_);
};

}  // namespace logstar::server

#endif  // LOGSTAR_SERVER_SERVICE_H_
