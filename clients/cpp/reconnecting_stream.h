// logstar::ReconnectingStream: a Stream (clients/cpp/client.h) that survives
// the daemon going away. When the connection breaks (UNAVAILABLE: the
// daemon was killed, restarted or shut down) it connects again, resumes the
// same session (with the same settings, so a daemon that lost it makes it
// anew), registers the shared memory ring again and re-sends, in order,
// every frame not answered yet.
//
//   auto stream = ReconnectingStream::Open(client_options,
//                                          {.settings = settings, .max_in_flight = 4},
//                                          {.reconnect_s = 30});
//   std::thread reader([&] { while (auto a = (*stream)->Read()) Use(*a); });
//   for (...) (*stream)->Push(frame);   // frames with increasing sequence numbers
//   absl::Status s = (*stream)->Finish();
//   reader.join();
//
// Contract:
//   - Every frame pushed gets exactly one answer from Read(), in push order,
//     however many connections it took: an answer for a frame answered
//     already (sent again after a reconnect) is counted in
//     counters().duplicates and not returned.
//   - With reconnects allowed, a frame the daemon dropped because it was
//     shutting down (REASON_SHUTTING_DOWN) counts as unanswered: it is sent
//     again to the daemon that comes back, and only that answer is read.
//   - A reconnect is tried only for UNAVAILABLE and only with
//     reconnect_s > 0, for at most reconnect_s seconds per outage (backoff
//     first_backoff_s doubling to max_backoff_s); then Push/Finish return
//     UNAVAILABLE naming the session and the budget. Other errors end the
//     stream as they would end a Stream.
//   - A frame is kept until answered (only with reconnect_s > 0), at most
//     max_in_flight of them: in shared memory (PushViaSharedMemory) a frame
//     keeps its slot until answered, so the copy sent again names the same,
//     unchanged bytes.
//   - Finish() half-closes and waits for every answer (reconnecting as
//     needed). A daemon that ended the stream after answering every frame
//     left nothing to resume: with reconnect_s > 0 that is success.
//
// Thread-safety: as Stream. Push, PushViaSharedMemory, UseSharedMemory,
// Finish and client() belong to one sending thread (reconnects run there);
// Read to one reading thread; counters(), session_id() from any thread.
// Read() returns nullopt once Finish() has ended the stream and every answer
// was read. The ring (UseSharedMemory) must outlive the stream.
#ifndef LOGSTAR_CLIENTS_CPP_RECONNECTING_STREAM_H_
#define LOGSTAR_CLIENTS_CPP_RECONNECTING_STREAM_H_

#include <atomic>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "clients/cpp/client.h"
#include "clients/cpp/shared_memory_ring.h"
#include "engine/base/mutex.h"

namespace logstar {

// What the sending thread learns after a reconnect, before the unanswered
// frames go out again.
struct ReconnectEvent {
  std::string session_id{};
  double outage_s = 0.0;  // from the break to the new stream's `opened`
  int connection = 0;     // 1 for the first reconnect
  bool resumed = false;   // the daemon still had the session (else made it anew)
  size_t resending = 0;   // frames about to be sent again
};

struct ReconnectOptions {
  // Seconds to keep trying per outage; 0: never reconnect.
  double reconnect_s = 0.0;
  double first_backoff_s = 0.2;
  double max_backoff_s = 2.0;
  // How errors name reconnect_s (e.g. the CLI's "--reconnect-s").
  std::string budget_name = "reconnect_s";
  // Called in the sending thread after each reconnect.
  std::function<void(const ReconnectEvent&)> on_reconnect{};

  absl::Status Validate() const;
};

class ReconnectingStream {
 public:
  struct Answer {
    v1::StreamResponse response;  // result, dropped or error; sequence set
    double latency_ms = 0.0;      // from the (last) Push of the frame to this answer
    int connection = 0;           // 0: the first connection, k: after the k-th reconnect
  };
  struct Counters {
    int64_t reconnects = 0;  // streams opened again
    int64_t resent = 0;      // frames sent again
    int64_t duplicates = 0;  // answers for frames answered already, ignored
  };

  // Connects and opens the stream: errors as Client::Connect and
  // Client::OpenStream (no reconnect before the first `opened`).
  static absl::StatusOr<std::unique_ptr<ReconnectingStream>> Open(
      const ClientOptions& client, const StreamOptions& stream, const ReconnectOptions& reconnect);

  ~ReconnectingStream();  // cancels a stream not finished

  ReconnectingStream(const ReconnectingStream&) = delete;
  ReconnectingStream& operator=(const ReconnectingStream&) = delete;

  // The session's id (the server's choice when none was given), kept
  // across reconnects.
  const std::string& session_id() const { return session_id_; }

  // The current connection's client; null after a reconnect gave up.
  Client* client() { return client_.get(); }

  // Frames pushed with PushViaSharedMemory go through `ring`, registered
  // by the caller (with client()) and again here after every reconnect.
  void UseSharedMemory(SharedMemoryRing* ring) ABSL_LOCKS_EXCLUDED(mu_);

  // Sends a frame (sequence numbers unique and increasing; session_id
  // empty); blocks while max_in_flight frames are unanswered. A broken
  // connection is repaired here (the frame is sent on the new one).
  // Returns the error that ended the stream otherwise.
  absl::Status Push(v1::Frame frame) ABSL_LOCKS_EXCLUDED(mu_);

  // The same with the frame's pixels (in the message) moved into the ring's
  // next slot first, waiting until the slot's frame was answered.
  // INVALID_ARGUMENT (nothing sent) for pixels the ring refuses.
  absl::Status PushViaSharedMemory(v1::Frame frame) ABSL_LOCKS_EXCLUDED(mu_);

  // The next answer in push order; blocks until it arrives. nullopt once
  // the stream is over and every answer has been read.
  std::optional<Answer> Read() ABSL_LOCKS_EXCLUDED(mu_);

  // Half-closes, waits for the answers of every frame pushed (reconnecting
  // when the connection breaks meanwhile) and returns the final status.
  // Idempotent.
  absl::Status Finish() ABSL_LOCKS_EXCLUDED(mu_);

  Counters counters() const ABSL_LOCKS_EXCLUDED(mu_);

 private:
  // A frame pushed and not answered yet.
  struct Pending {
    std::optional<v1::Frame> frame;  // with reconnect_s > 0: to send it again
    bool holds_slot = false;         // its pixels sit in a ring slot
  };

  ReconnectingStream(const ClientOptions& client, const StreamOptions& stream,
                     const ReconnectOptions& reconnect)
      : client_options_(client), stream_options_(stream), reconnect_(reconnect) {}

  absl::Status Send(v1::Frame frame, bool via_ring) ABSL_LOCKS_EXCLUDED(mu_);
  // Waits for the ring's next slot and moves the frame's pixels there,
  // repairing the connection if it breaks meanwhile.
  absl::Status PlaceInRing(v1::Frame& frame) ABSL_LOCKS_EXCLUDED(mu_);
  // Starts reading the current connection's answers into answers_.
  void StartForwarder();
  void Forward(Stream* stream, int connection) ABSL_LOCKS_EXCLUDED(mu_);
  // Ends the current connection: finishes its stream, waits for its
  // answers to be forwarded.
  absl::Status EndConnection();
  // After the connection broke with `why`: reconnects within the budget,
  // resumes the session and sends every unanswered frame again. Returns
  // the error to give up on (`why` itself when no reconnect is allowed).
  absl::Status Reconnect(absl::Status why) ABSL_LOCKS_EXCLUDED(mu_);
  // One attempt: connect, open, register the ring. Sets client_, stream_.
  absl::Status ConnectOnce(double left_s) ABSL_LOCKS_EXCLUDED(mu_);
  // Sends the unanswered frames again, in push order.
  absl::Status Resend() ABSL_LOCKS_EXCLUDED(mu_);
  bool Unanswered() const ABSL_LOCKS_EXCLUDED(mu_);
  // Marks the stream over for Read() and frees the slots still held.
  void Close(absl::Status final_status) ABSL_LOCKS_EXCLUDED(mu_);
  // ring_ for the sending thread. As its only writer that thread could read
  // it unlocked, but the analysis cannot tell threads apart: it locks.
  SharedMemoryRing* CurrentRing() const ABSL_LOCKS_EXCLUDED(mu_);

  const ClientOptions client_options_;
  const StreamOptions stream_options_;
  const ReconnectOptions reconnect_;
  std::string session_id_;

  // Sending side only. A reconnect replaces both (the stream first: it must
  // not outlive its client).
  std::unique_ptr<Client> client_;
  std::unique_ptr<Stream> stream_;
  std::thread forwarder_;
  int connection_ = 0;
  std::optional<absl::Status> final_;  // set by Finish() or a failed reconnect

  // Set when the current connection's answers are all read; wakes a sender
  // waiting for a ring slot.
  std::atomic<bool> connection_ended_{false};

  mutable Mutex mu_;
  CondVar cv_;  // signalled when an answer is queued or the stream closes
  // Written by the sender; read by the forwarder (to release slots).
  SharedMemoryRing* ring_ ABSL_GUARDED_BY(mu_) = nullptr;
  std::map<uint64_t, Pending> pending_ ABSL_GUARDED_BY(mu_);  // by sequence
  std::deque<Answer> answers_ ABSL_GUARDED_BY(mu_);
  bool closed_ ABSL_GUARDED_BY(mu_) = false;  // no more answers
  Counters counters_ ABSL_GUARDED_BY(mu_);
};

}  // namespace logstar

#endif  // LOGSTAR_CLIENTS_CPP_RECONNECTING_STREAM_H_
