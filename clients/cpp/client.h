// logstar::Client: a C++ client of logstard (proto/logstar/v1/service.proto).
//
//   auto client = Client::Connect({.address = "127.0.0.1:50051"});
//   auto stream = (*client)->OpenStream({.settings = settings, .max_in_flight = 4});
//   (*stream)->Push(frame);          // blocks while 4 frames are unanswered
//   auto answer = (*stream)->Read(); // the next frame's result, dropped or error record
//   (*stream)->CloseSend(); ... (*stream)->Finish();
//
// On the daemon's host, pixels may instead stay in shared memory
// (clients/cpp/shared_memory.h): RegisterSharedMemory once, then frames
// whose pixels come from ImageToSharedPixels, or a ring of slots that are
// reused only after their frame's answer (clients/cpp/shared_memory_ring.h).
// A stream that survives the daemon's restarts, resending what was not
// answered: clients/cpp/reconnecting_stream.h.
//
// Every frame pushed gets exactly one answer, in push order (the server's
// contract). Coordinates in results: x = column, y = row, px, origin at the
// centre of the top-left pixel. Errors are absl::Status with gRPC's codes
// (UNAVAILABLE: the server cannot be reached or shuts down; UNAUTHENTICATED:
// missing or wrong token; INVALID_ARGUMENT naming the field) and messages
// that name the server's address.
//
// Thread-safety: Client is thread-safe (its methods may be called from any
// number of threads, and several streams may run at once). A Stream has two
// sides: Push, CloseSend and Finish belong to one sending thread; Read to one
// reading thread (it may be the same); Cancel and in_flight() may be called
// from any thread. A Stream must not outlive its Client.
#ifndef LOGSTAR_CLIENTS_CPP_CLIENT_H_
#define LOGSTAR_CLIENTS_CPP_CLIENT_H_

#include <chrono>
#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <grpcpp/grpcpp.h>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "engine/base/mutex.h"
#include "logstar/v1/service.grpc.pb.h"

namespace logstar {

class SharedMemoryBuffer;  // clients/cpp/shared_memory.h

struct ClientOptions {
  std::string address{};  // host:port of logstard, e.g. "127.0.0.1:50051"
  // Transport security. With use_tls and no root certificates the system's
  // trust store is used; client cert and key together give mutual TLS.
  bool use_tls = false;
  std::string tls_root_certs_file{};   // PEM
  std::string tls_client_cert_file{};  // PEM, mutual TLS
  std::string tls_client_key_file{};   // PEM, mutual TLS
  std::string token{};                 // bearer token sent on every RPC; empty: none
  // Connect() waits this long for the server to answer before it reports
  // UNAVAILABLE ("cannot reach logstard at ...").
  double connect_timeout_s = 10.0;
  double rpc_timeout_s = 120.0;            // unary RPCs (AnalyzeFrame tunes: allow minutes)
  int64_t max_message_bytes = 80ll << 20;  // as the server's default
  // Lossless compression of the pixels streams send in their messages
  // (proto/wire/compression.h: byte shuffle + zstd), for slow links: each
  // stream asks for it when it opens and compresses only when the daemon's
  // `opened` answer accepts it (Stream::compression()), so an older daemon
  // gets the bytes as they are. Pixels in shared memory, and frames sent by
  // AnalyzeFrame (which has no `opened` to ask), are never compressed.
  // Frames of 2 MB and more are compressed by two threads.
  v1::PixelCodec compression = v1::PIXEL_CODEC_NONE;
  int compression_level = 1;  // zstd's, 1..19 (higher: smaller and slower)

  // Errors name the field.
  absl::Status Validate() const;
};

struct StreamOptions {
  // Empty: the server makes a new session. An existing id resumes it.
  std::string session_id{};
  // Required for a new session; for an existing one, replaces its settings.
  std::optional<v1::SessionSettings> settings{};
  // Frames pushed but not yet answered; Push() blocks at this many (>= 1).
  int max_in_flight = 4;
  double deadline_s = 0.0;  // whole stream; 0 = none

  absl::Status Validate() const;
};

// One frame's answer.
struct StreamAnswer {
  v1::StreamResponse response;  // result, dropped or error; sequence set
  // From the Push() that sent the frame to the answer's arrival, ms
  // (steady clock): what the caller waited, queue and network included.
  double latency_ms = 0.0;
};

class Stream {
 public:
  ~Stream();  // cancels a stream not finished

  // The server's `opened` answer: the session's id, settings, counters.
  const v1::SessionInfo& opened() const { return opened_; }

  // Sends a frame (session_id is left as given: empty or the stream's).
  // Blocks while max_in_flight frames are unanswered. When the stream has
  // ended (server shut down, cancelled, deadline) returns its final status,
  // or FAILED_PRECONDITION after CloseSend().
  absl::Status Push(v1::Frame frame) ABSL_LOCKS_EXCLUDED(mu_);

  // The next answer in push order; blocks until it arrives. nullopt once the
  // stream is over and every answer has been read (Finish() tells why).
  std::optional<StreamAnswer> Read() ABSL_LOCKS_EXCLUDED(mu_);

  // Half-closes: no more frames; the server answers those it has.
  void CloseSend();

  // Half-closes if needed, waits for the reading side to end (answers not yet
  // Read() stay readable) and returns the stream's final status. Idempotent.
  absl::Status Finish();

  // Gives up: the server abandons the frame being analysed.
  void Cancel() { context_.TryCancel(); }

  int in_flight() const ABSL_LOCKS_EXCLUDED(mu_);

  // The codec Push() compresses pixels in the message with: what
  // ClientOptions::compression asked and the daemon accepted, else NONE.
  v1::PixelCodec compression() const { return compression_; }

 private:
  friend class Client;
  Stream(std::string address, int max_in_flight)
      : address_(std::move(address)), max_in_flight_(max_in_flight) {}
  // Compresses the frame's pixels in the message with compression_ (no-op
  // for NONE or pixels elsewhere).
  absl::Status Compress(v1::Frame& frame) const;
  void ReadLoop() ABSL_LOCKS_EXCLUDED(mu_);

  const std::string address_;
  const int max_in_flight_;
  grpc::ClientContext context_;
  std::unique_ptr<grpc::ClientReaderWriter<v1::StreamRequest, v1::StreamResponse>> rpc_;
  v1::SessionInfo opened_;
  std::thread reader_;

  mutable Mutex mu_;
  CondVar cv_;  // signalled when an answer arrives or the reading side ends
  int in_flight_ ABSL_GUARDED_BY(mu_) = 0;
  bool read_done_ ABSL_GUARDED_BY(mu_) = false;
  std::deque<StreamAnswer> answers_ ABSL_GUARDED_BY(mu_);
  // sequence -> push time
  std::map<uint64_t, std::chrono::steady_clock::time_point> pushed_ ABSL_GUARDED_BY(mu_);

  // Set once the stream is opened.
  v1::PixelCodec compression_ = v1::PIXEL_CODEC_NONE;
  int compression_level_ = 1;

  // Sending side only.
  bool send_closed_ = false;
  bool finished_ = false;
  absl::Status final_status_;
};

struct WatchOptions {
  // One session's results (FrameResult), or with all_sessions every
  // session's summary (SessionInfo) as its frames are answered.
  std::string session_id{};
  bool all_sessions = false;
  // Each result also carries the frame as an 8-bit preview (FramePreview).
  bool include_preview = false;
};

// A read-only observer of the daemon's sessions (the Watch RPC): it never
// slows their streams; when it reads slowly it gets the latest answers and
// WatchResponse.skipped counts those it missed. Read() may be called from
// one thread at a time, Cancel() from any.
class Watcher {
 public:
  ~Watcher();  // cancels a watch not finished

  // The next answer; blocks until one comes. nullopt once the call is over
  // (cancelled, the server shut down, or refused: Finish() says why —
  // NOT_FOUND for an unknown session, RESOURCE_EXHAUSTED above the daemon's
  // max_watchers, UNAUTHENTICATED without the token).
  std::optional<v1::WatchResponse> Read();
  // Stops watching; a blocked Read() returns nullopt.
  void Cancel() { context_.TryCancel(); }
  // After Read() returned nullopt: the call's status (CANCELLED after
  // Cancel()). Idempotent.
  absl::Status Finish();

 private:
  friend class Client;
  explicit Watcher(std::string address) : address_(std::move(address)) {}
  const std::string address_;
  grpc::ClientContext context_;
  std::unique_ptr<grpc::ClientReader<v1::WatchResponse>> rpc_;
  bool finished_ = false;
  absl::Status final_status_;
};

// settings.prior for `prior: auto` (session.proto): the daemon derives the
// prior from the stream's first frame that shows a lattice, at
// `pixel_size_angstrom` when > 0 (else the frames'; with neither, in
// pixels). Every result says which prior it ran with (FrameResult.prior_used)
// and, for a given prior, how it disagrees with the frame
// (FrameResult.warnings). In C++ the proto field is auto_() (a keyword).
v1::PhysicsPrior AutoPrior(double pixel_size_angstrom = 0.0);

// The gRPC metadata key that carries a session's id on every RPC of that
// session (Stream with a session id, AnalyzeFrame with frame.session_id,
// UpdateSession, GetSession, ResetSession, Watch of one session): a proxy
// in front of several daemons routes by it, so that a session's calls reach
// the replica that holds it (docs/scale-out.md). A stream opened without an
// id (the server picks it) carries none.
inline constexpr char kSessionMetadataKey[] = "x-logstar-session";

enum class ServingStatus { kUnknown = 0, kServing = 1, kNotServing = 2, kServiceUnknown = 3 };
const char* ServingStatusName(ServingStatus s);

class Client {
 public:
  // Checks the options, reads the TLS files and waits until the server
  // answers (or connect_timeout_s passes: UNAVAILABLE naming the address).
  static absl::StatusOr<std::unique_ptr<Client>> Connect(const ClientOptions& options);

  const ClientOptions& options() const { return options_; }

  // grpc.health.v1.Health/Check: "" is the server as a whole,
  // "logstar.v1.LogStar" the analysis service.
  absl::StatusOr<ServingStatus> Health(const std::string& service = "logstar.v1.LogStar");

  // Opens a Stream; returns after the server's `opened` answer. The open's
  // errors (UNAUTHENTICATED, INVALID_ARGUMENT for bad settings, ...) come back here.
  absl::StatusOr<std::unique_ptr<Stream>> OpenStream(const StreamOptions& options);

  // One frame, one result: with frame.session_id() set that session's cache
  // is used (and made from `settings` when new); without, `settings` is
  // required and nothing is kept.
  absl::StatusOr<v1::FrameResult> AnalyzeFrame(const v1::Frame& frame,
                                               const v1::SessionSettings* settings);

  absl::StatusOr<v1::SessionInfo> UpdateSession(const v1::UpdateSessionRequest& request);
  absl::StatusOr<v1::SessionInfo> GetSession(const std::string& session_id,
                                             bool include_cache = false);
  absl::StatusOr<v1::SessionInfo> ResetSession(const std::string& session_id,
                                               bool delete_session = false);
  // Starts watching (see Watcher); returns once the daemon has attached it
  // (results analysed from then on reach it) or refused it (the first
  // Read() then returns nullopt and Finish() says why).
  absl::StatusOr<std::unique_ptr<Watcher>> Watch(const WatchOptions& options);

  // Every session on the server, by id: counters, attached streams,
  // timestamps (and settings with include_settings), never the cache.
  absl::StatusOr<std::vector<v1::SessionInfo>> ListSessions(bool include_settings = false);

  // Shared memory on the daemon's host (clients/cpp/shared_memory.h): frames
  // may then give pixels.shared_memory {region, offset} instead of bytes.
  // Registers `key` (a POSIX shared memory object the daemon's user may
  // read) under `region`, its first byte_size bytes usable; registering a
  // region again replaces it. PERMISSION_DENIED from a client not on the
  // daemon's host or for an object the daemon may not read; NOT_FOUND for
  // a key with no object; INVALID_ARGUMENT for a bad name, key or size;
  // UNIMPLEMENTED from a daemon older than shared memory.
  absl::StatusOr<v1::SharedMemoryRegion> RegisterSharedMemory(const std::string& region,
                                                              const std::string& key,
                                                              uint64_t byte_size);
  // The whole buffer, under its key.
  absl::StatusOr<v1::SharedMemoryRegion> RegisterSharedMemory(const std::string& region,
                                                              const SharedMemoryBuffer& buffer);
  // NOT_FOUND for a region not registered. Frames still queued that use it
  // are answered with an error record.
  absl::Status UnregisterSharedMemory(const std::string& region);
  // Every region the daemon holds, by name.
  absl::StatusOr<std::vector<v1::SharedMemoryRegion>> ListSharedMemory();

 private:
  explicit Client(const ClientOptions& options) : options_(options) {}
  // The deadline, the bearer token and, for an RPC of a session, its id as
  // kSessionMetadataKey (empty: none).
  void Prepare(grpc::ClientContext* context, double timeout_s,
               const std::string& session_id = {}) const;
  absl::Status ToStatus(const grpc::Status& status, const char* what) const;

  const ClientOptions options_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::LogStar::Stub> stub_;
};

}  // namespace logstar

#endif  // LOGSTAR_CLIENTS_CPP_CLIENT_H_
