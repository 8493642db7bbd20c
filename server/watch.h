// Read-only observers of sessions: the Watch RPC (service.proto). A
// WatchHub holds the attached watchers; the service publishes every
// session's results to it as they are made, and each watcher, a gRPC
// ServerWriteReactor, writes them to its client.
//
// A watcher never slows a session's streams: publishing only replaces the
// watcher's one-slot mailbox (per session, for an all-sessions watcher) and
// starts a write when none is in flight — it never waits for a client. A
// slow reader so gets the latest answer, and the count of those overwritten
// (`skipped`); memory per watcher stays one answer per watched session. The
// answer is shared between the watchers (one copy of the result per frame,
// made only when someone watches), and copied again only for a watcher
// that skipped (its `skipped` differs).
//
// Thread-safety: every method may be called from any thread. Locks: the
// hub's, then a watcher's; a watcher's reactions take the hub's only
// without their own.
#ifndef LOGSTAR_SERVER_WATCH_H_
#define LOGSTAR_SERVER_WATCH_H_

#include <atomic>
#include <string>

#include <grpcpp/grpcpp.h>
#include <opencv2/core.hpp>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_set.h"
#include "engine/base/mutex.h"
#include "logstar/v1/service.pb.h"
#include "server/metrics.h"

namespace logstar::server {

class Watcher;  // one Watch call (watch.cc)

class WatchHub {
 public:
  // `metrics` is not owned and must outlive the hub; at most `max_watchers`
  // are attached at once.
  WatchHub(Metrics* metrics, int max_watchers);

  // The reactor for one Watch call, already authorised and checked by the
  // service (`status` not OK: the call ends with it at once). Refuses with
  // RESOURCE_EXHAUSTED above max_watchers and UNAVAILABLE after EndAll().
  grpc::ServerWriteReactor<v1::WatchResponse>* Open(const v1::WatchRequest& request,
                                                    grpc::Status status);

  // Whether anyone watches `session_id`'s results or all sessions; cheap (an
  // atomic read when nobody watches at all), so publishers ask first.
  bool Watched(const std::string& session_id) const;
  // Whether a watcher of `session_id` asked for frame previews.
  bool WantsPreview(const std::string& session_id) const;

  // Hands a session's new result (and, for all-sessions watchers, its
  // summary) to the watchers. `preview`: the frame as analysed, or null.
  // Never blocks on a client.
  void Publish(const v1::FrameResult& result, const v1::SessionInfo* summary,
               const cv::Mat* preview);

  // Shutdown: every watcher ends with UNAVAILABLE once its write in flight
  // is done; later Watch calls are refused.
  void EndAll();
  int size() const;

  // For the watchers' OnDone.
  void Detach(Watcher* watcher);

 private:
  Metrics* const metrics_;
  const int max_watchers_;
  std::atomic<int> attached_{0};  // == watchers_.size(), read without mu_
  mutable Mutex mu_;
  bool ended_ ABSL_GUARDED_BY(mu_) = false;
  absl::flat_hash_set<Watcher*> watchers_ ABSL_GUARDED_BY(mu_);
};

// The frame as an 8-bit preview for display (v1::FramePreview): its 1st to
// 99th percentile stretched to 0..255, area-downscaled so that the longer
// side is at most max_side px. `image` is any single-channel wire type.
void MakeFramePreview(const cv::Mat& image, int max_side, v1::FramePreview* out);

}  // namespace logstar::server

#endif  // LOGSTAR_SERVER_WATCH_H_
