#include "server/service.h"

#include <deque>
#include <memory>
#include <optional>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "engine/analysis/memory_estimate.h"
#include "engine/base/status_macros.h"
#include "proto/wire/compression.h"
#include "server/convert.h"
#include "server/log.h"
#include "server/status.h"

namespace logstar::server {
namespace {

using Clock = std::chrono::steady_clock;

double MsBetween(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration<double, std::milli>(b - a).count();
}

// Compares in time independent of where the strings differ.
bool ConstantTimeEquals(absl::string_view a, absl::string_view b) {
  if (a.size() != b.size()) return false;
  unsigned char diff = 0;
  for (size_t i = 0; i < a.size(); ++i) diff |= static_cast<unsigned char>(a[i] ^ b[i]);
  return diff == 0;
}

// gRPC lets messages up to twice max_message_bytes through
// (ServerOptions::GrpcReceiveLimit), so that one over the limit is refused here, as an
// error of its own, instead of gRPC ending the whole call and with it the
// answers of the frames before it.
absl::Status CheckMessageSize(const google::protobuf::Message& m, int64_t max_message_bytes) {
  const size_t bytes = m.ByteSizeLong();
  if (bytes <= static_cast<uint64_t>(max_message_bytes)) return absl::OkStatus();
  return absl::ResourceExhaustedError(absl::StrCat(
      "the message is ", bytes, " bytes, more than the server's max_message_bytes ",
      max_message_bytes, " (send 16-bit pixels, or shared memory from the daemon's host)"));
}

// A frame that only marks the end of a stream.
bool IsEndMarker(const v1::Frame& f) {
  return f.end_of_stream() && !f.pixels().has_shared_memory() && f.pixels().data().empty() &&
         f.pixels().width() == 0 && f.pixels().height() == 0;
}

}  // namespace

// One Stream call. Lifetime: gRPC holds one reference until OnDone, a
// running analysis holds another, so a worker finishing late never touches
// a deleted reactor; every member below mu_ is guarded by it.
class StreamReactor final : public grpc::ServerBidiReactor<v1::StreamRequest, v1::StreamResponse> {
 public:
  StreamReactor(LogStarService* service, grpc::CallbackServerContext* context)
      : service_(service), context_(context) {}

  void Begin() {
    grpc::Status status = service_->Authorize(context_);
    // Registered before taking mu_: draining locks the registry, then each stream.
    const bool registered = status.ok() && service_->Register(this);
    if (status.ok() && !registered) {
      status = grpc::Status(grpc::StatusCode::UNAVAILABLE, "the server is shutting down");
    }
    MutexLock lock(&mu_);
    registered_ = registered;
    if (!status.ok()) {
      finished_ = true;
      Finish(status);
      return;
    }
    service_->deps().metrics->streams_open->Increment();
    reading_ = true;
    StartRead(&request_);
  }

  // Server shutdown: answer what was received, then end with UNAVAILABLE.
  void Drain() {
    MutexLock lock(&mu_);
    draining_ = true;
    MaybeFinish();
  }

  // The reactions: gRPC runs them on its threads after Stream() has
  // returned the reactor (HappensBefore there), through synchronisation TSan
  // cannot see; mu_ orders them among themselves.
  void OnReadDone(bool ok) override {
    HappensAfter(this);
    MutexLock lock(&mu_);
    reading_ = false;
    if (!ok) {  // the client half-closed, or the call ended
      read_closed_ = true;
    } else if (!finished_ && !abort_.has_value()) {
      if (session_ == nullptr) {
        HandleOpen();
      } else if (request_.has_frame()) {
        HandleFrame();
      } else {
        // The frames accepted so far are still answered (issue 16, item 4).
        EndAfterAnswers(grpc::Status(
            grpc::StatusCode::INVALID_ARGUMENT,
            absl::StrCat("after the first request (open), requests must be frames; got ",
                         request_.has_open() ? "another open" : "an empty request")));
      }
    }
    Pump();
  }

  void OnWriteDone(bool ok) override {
    HappensAfter(this);
    MutexLock lock(&mu_);
    writing_ = false;
    if (!ok && !abort_.has_value()) {
      Abort(grpc::Status(grpc::StatusCode::CANCELLED, "the client stopped reading"));
    }
    Pump();
  }

  void OnCancel() override {
    HappensAfter(this);
    MutexLock lock(&mu_);
    if (!abort_.has_value()) {
      Abort(grpc::Status(grpc::StatusCode::CANCELLED, "cancelled by the client"));
    }
    Pump();
  }

  void OnDone() override {
    HappensAfter(this);
    bool registered = false;  // under mu_, which OnDone takes before Unregister does
    {
      MutexLock lock(&mu_);
      registered = registered_;
      if (session_ != nullptr && !detached_) session_->Detach();
    }
    if (registered) {
      service_->Unregister(this);
      service_->deps().metrics->streams_open->Decrement();
    }
    LogStarService* const service = service_;
    Unref();
    HappensBefore(service);  // the server's Shutdown, after gRPC's Wait
  }

 private:
  struct Slot {
    uint64_t sequence = 0;
    bool ready = false;
    v1::StreamResponse response;
  };
  struct Queued {
    v1::Frame frame;
    absl::Time received;
    Clock::time_point arrival;
    uint64_t slot = 0;
    MemoryBudget::Reservation message;  // the message's bytes, until answered
  };

  void Ref() { refs_.fetch_add(1, std::memory_order_relaxed); }
  void Unref() {
    if (refs_.fetch_sub(1, std::memory_order_acq_rel) == 1) delete this;
  }

  void HandleOpen() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (!request_.has_open()) {
      Abort(grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "the first request must be open"));
      return;
    }
    const LogStarService::Deps& deps = service_->deps();
    const v1::OpenSession& open = request_.open();
    if (absl::Status s = wire::CheckCodec(open.compression(), "open.compression"); !s.ok()) {
      Abort(ToGrpcStatus(s));
      return;
    }
    const v1::PixelCodec compression = open.compression();
    if (deps.store_io != nullptr) {
      // The session may have to be loaded from the shared store: on a
      // store thread; nothing is read or finished meanwhile (opening_).
      opening_ = true;
      Ref();
      deps.store_io->Submit([this, open = request_.open(), compression] {
        auto opened = service_->deps().sessions->Open(
            open.session_id(), open.has_settings() ? &open.settings() : nullptr);
        {
          MutexLock lock(&mu_);
          opening_ = false;
          if (!abort_.has_value()) FinishOpen(std::move(opened), compression);
          Pump();
        }
        Unref();
      });
      return;
    }
    FinishOpen(
        deps.sessions->Open(open.session_id(), open.has_settings() ? &open.settings() : nullptr),
        compression);
  }

  // `compression`: the codec the client asked for at open, already checked.
  void FinishOpen(absl::StatusOr<std::pair<std::shared_ptr<Session>, bool>> opened,
                  v1::PixelCodec compression) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (!opened.ok()) {
      Abort(ToGrpcStatus(opened.status()));
      return;
    }
    session_ = opened->first;
    session_->Attach();
    const uint64_t slot = NewSlot(0);
    v1::StreamResponse& r = SlotAt(slot).response;
    *r.mutable_opened() = session_->Info(false, service_->deps().options->session_idle_timeout_s);
    r.mutable_opened()->set_resumed(opened->second);
    // Frames may come compressed (proto/wire/compression.h) as asked.
    r.mutable_opened()->set_compression(compression);
    SlotAt(slot).ready = true;
    Log(LogLevel::kInfo, "stream_opened",
        {{"session", session_->id()}, {"resumed", opened->second}, {"peer", context_->peer()}});
  }

  void HandleFrame() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    v1::Frame& frame = *request_.mutable_frame();
    const Clock::time_point arrival = Clock::now();
    const absl::Time received = absl::Now();
    if (frame.end_of_stream()) read_closed_ = true;
    if (IsEndMarker(frame)) return;
    const LogStarService::Deps& deps = service_->deps();
    session_->Touch(received);
    session_->CountReceived();
    deps.metrics->frames_received->Increment();
    const uint64_t slot = NewSlot(frame.sequence());
    if (draining_) {
      Drop(slot, v1::FrameDropped::REASON_SHUTTING_DOWN);
      return;
    }
    if (last_sequence_.has_value() && frame.sequence() <= *last_sequence_) {
      // Answers are keyed by sequence number: a repeated or smaller one
      // would make them ambiguous.
      Fail(slot, absl::InvalidArgumentError(absl::StrCat(
                     "frame.sequence ", frame.sequence(), " is not after ", *last_sequence_,
                     ", the stream's last sequence number: sequence numbers must increase "
                     "within a stream")));
      return;
    }
    last_sequence_ = frame.sequence();
    if (absl::Status s = CheckMessageSize(request_, service_->deps().options->max_message_bytes);
        !s.ok()) {
      Fail(slot, s);
      return;
    }
    if (!frame.session_id().empty() && frame.session_id() != session_->id()) {
      Fail(slot, absl::InvalidArgumentError(absl::StrCat(
                     "frame.session_id must be empty or the stream's session ", session_->id())));
      return;
    }
    if (absl::Status s = CheckFrameLimits(frame, deps.options->max_pixels); !s.ok()) {
      Fail(slot, s);
      return;
    }
    absl::StatusOr<MemoryBudget::Reservation> message = deps.memory->Reserve(
        request_.ByteSizeLong(), absl::StrCat("frame ", frame.sequence(), "'s message"));
    if (!message.ok()) {
      Fail(slot, message.status());
      return;
    }
    const uint32_t capacity = session_->queue_capacity(deps.options->default_queue_capacity);
    if (queue_.size() >= capacity) {
      switch (session_->overload_policy()) {
        case v1::OVERLOAD_POLICY_REJECT:
          Drop(slot, v1::FrameDropped::REASON_QUEUE_FULL);
          return;
        case v1::OVERLOAD_POLICY_BLOCK:
          break;  // reads pause when full; more only after a capacity change
        case v1::OVERLOAD_POLICY_LATEST_WINS:
        default:
          // Drop the oldest waiting frame: live steering wants fresh results.
          while (queue_.size() >= capacity) {
            Drop(queue_.front().slot, v1::FrameDropped::REASON_SUPERSEDED);
            queue_.pop_front();
            deps.metrics->queue_depth->Decrement();
          }
          break;
      }
    }
    queue_.push_back(Queued{std::move(frame), received, arrival, slot, *std::move(message)});
    deps.metrics->queue_depth->Increment();
  }

  uint64_t NewSlot(uint64_t sequence) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    out_.push_back(Slot{sequence, false, {}});
    out_.back().response.set_sequence(sequence);
    return out_front_ + out_.size() - 1;
  }
  Slot& SlotAt(uint64_t slot) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return out_[slot - out_front_]; }

  void Drop(uint64_t slot, v1::FrameDropped::Reason reason) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    service_->CountDropped(session_.get());
    SlotAt(slot).response.mutable_dropped()->set_reason(reason);
    SlotAt(slot).ready = true;
  }

  void Fail(uint64_t slot, const absl::Status& status) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    service_->CountFailed(session_.get(), status);
    v1::FrameError* e = SlotAt(slot).response.mutable_error();
    e->set_code(static_cast<int>(status.code()));
    e->set_message(std::string(status.message()));
    SlotAt(slot).ready = true;
  }

  // Ends the stream with `status` once every frame accepted is answered:
  // nothing more is read, the queued frames are analysed and every answer
  // is written first.
  void EndAfterAnswers(const grpc::Status& status) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (!end_status_.has_value()) end_status_ = status;
    read_closed_ = true;
  }

  // Ends the stream with `status` once nothing runs: queued frames are
  // dropped, the running analysis is told to stop, nothing more is written.
  // Only for streams nobody can read any more (cancelled, a write failed) or
  // that never accepted a frame.
  void Abort(const grpc::Status& status) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    abort_ = status;
    cancel_.store(true, std::memory_order_relaxed);
    for (const Queued& q : queue_) {
      (void)q;
      service_->CountDropped(session_.get());
      service_->deps().metrics->queue_depth->Decrement();
    }
    queue_.clear();
  }

  // After any event: start the next analysis, write, read, or finish.
  void Pump() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    Schedule();
    MaybeWrite();
    MaybeRead();
    MaybeFinish();
  }

  void Schedule() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (running_ || queue_.empty() || abort_.has_value() || finished_) return;
    auto job = std::make_shared<Queued>(std::move(queue_.front()));
    queue_.pop_front();
    service_->deps().metrics->queue_depth->Decrement();
    running_ = true;
    Ref();
    service_->deps().pool->Submit([this, job] { Run(*job); });
  }

  // On a worker thread.
  void Run(Queued& job) {
    absl::StatusOr<LogStarService::Processed> r = absl::UnknownError("not run");
    const absl::StatusOr<const SharedMemoryRegistry*> regions = RegionsFor(job.frame);
    if (regions.ok()) {
      r = service_->Process(*session_, job.frame, *regions, job.received, job.arrival, &cancel_);
    } else {
      r = regions.status();
    }
    // A frame that tuned windows is saved before its answer can leave, so a
    // client that has the answer finds the cache after a crash and restart
    // (it re-sends only unanswered frames). Cached frames do not write.
    if (r.ok() && r->tuned) {
      const absl::Status s = service_->deps().sessions->Persist(*session_);
      if (!s.ok()) Log(LogLevel::kError, "persist_failed", {{"why", s.ToString()}});
    }
    // Watchers get the result after the answer's write has started, and
    // before the stream's next frame is scheduled (running_ stays set until
    // then), so they see the frames in order and never delay the answer.
    // job.frame, whose pixels the preview reads, lives until Run returns.
    const bool publish = r.ok() && r->watched.has_value();
    {
      MutexLock lock(&mu_);
      if (!publish) running_ = false;
      if (abort_.has_value()) {
        // Nobody will read the answer; a finished result still counts.
        if (!r.ok()) service_->CountDropped(session_.get());
      } else if (r.ok()) {
        v1::StreamResponse& response = SlotAt(job.slot).response;
        *response.mutable_result() = std::move(r->result);
        SlotAt(job.slot).ready = true;
      } else {
        Fail(job.slot, r.status());
      }
      Pump();
    }
    if (publish) {
      service_->Publish(*session_, *r->watched);
      MutexLock lock(&mu_);
      running_ = false;
      Pump();
    }
    Unref();
  }

  // The stream's view of the shared memory regions, made at its first frame
  // that needs it (the caller is identified once, off the reaction thread;
  // Run, the only user, runs one frame at a time).
  absl::StatusOr<const SharedMemoryRegistry*> RegionsFor(const v1::Frame& frame) {
    if (!frame.pixels().has_shared_memory()) return nullptr;
    if (!regions_.has_value()) regions_ = service_->RegionsFor(context_);
    if (!regions_->ok()) return regions_->status();
    return &**regions_;
  }

  void MaybeWrite() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (writing_ || finished_ || abort_.has_value() || out_.empty() || !out_.front().ready) {
      return;
    }
    write_ = std::move(out_.front().response);
    out_.pop_front();
    ++out_front_;
    if (session_ != nullptr) *write_.mutable_counters() = session_->counters();
    writing_ = true;
    StartWrite(&write_);
  }

  void MaybeRead() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (opening_ || reading_ || read_closed_ || draining_ || finished_ || abort_.has_value())
      return;
    const LogStarService::Deps& deps = service_->deps();
    // Back-pressure: a client that does not read its answers is not read from.
    if (out_.size() >= deps.options->max_pending_responses) return;
    if (session_->overload_policy() == v1::OVERLOAD_POLICY_BLOCK &&
        queue_.size() >= session_->queue_capacity(deps.options->default_queue_capacity)) {
      return;
    }
    reading_ = true;
    StartRead(&request_);
  }

  void MaybeFinish() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (finished_ || opening_) return;
    if (abort_.has_value()) {
      if (running_ || writing_) return;
      FinishStream(*abort_);
      return;
    }
    if (!(read_closed_ || draining_)) return;
    if (running_ || writing_ || !queue_.empty() || !out_.empty()) return;
    if (end_status_.has_value()) {
      FinishStream(*end_status_);
      return;
    }
    FinishStream(read_closed_
                     ? grpc::Status::OK
                     : grpc::Status(grpc::StatusCode::UNAVAILABLE, "the server is shutting down"));
  }

  // Detaches before the status goes out: a client that has seen its stream
  // end must find the session unattached in the next ListSessions (OnDone
  // runs later, on gRPC's schedule).
  void FinishStream(const grpc::Status& status) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    finished_ = true;
    if (session_ != nullptr) {
      session_->Detach();
      detached_ = true;
    }
    Finish(status);
  }

  LogStarService* const service_;
  grpc::CallbackServerContext* const context_;
  std::atomic<int> refs_{1};
  std::atomic<bool> cancel_{false};
  std::optional<absl::StatusOr<SharedMemoryRegistry>> regions_;  // see RegionsFor

  Mutex mu_;
  bool registered_ ABSL_GUARDED_BY(mu_) = false;  // in the service's registry (Begin)
  std::shared_ptr<Session> session_;              // set once, by the open request
  v1::StreamRequest request_ ABSL_GUARDED_BY(mu_);
  v1::StreamResponse write_ ABSL_GUARDED_BY(mu_);
  std::deque<Queued> queue_ ABSL_GUARDED_BY(mu_);
  std::deque<Slot> out_ ABSL_GUARDED_BY(mu_);
  uint64_t out_front_ ABSL_GUARDED_BY(mu_) = 0;  // slot number of out_.front()
  bool reading_ ABSL_GUARDED_BY(mu_) = false;
  bool opening_ ABSL_GUARDED_BY(mu_) = false;  // the open runs on a store thread
  bool read_closed_ ABSL_GUARDED_BY(mu_) = false;
  bool writing_ ABSL_GUARDED_BY(mu_) = false;
  bool running_ ABSL_GUARDED_BY(mu_) = false;
  bool draining_ ABSL_GUARDED_BY(mu_) = false;
  bool finished_ ABSL_GUARDED_BY(mu_) = false;
  bool detached_ ABSL_GUARDED_BY(mu_) = false;  // from session_, at FinishStream
  std::optional<grpc::Status> abort_ ABSL_GUARDED_BY(mu_);
  std::optional<grpc::Status> end_status_ ABSL_GUARDED_BY(mu_);  // see EndAfterAnswers
  std::optional<uint64_t> last_sequence_ ABSL_GUARDED_BY(mu_);   // of the last frame
};

// One AnalyzeFrame call: checks in the reaction, the work on a worker.
class AnalyzeFrameReactor final : public grpc::ServerUnaryReactor {
 public:
  AnalyzeFrameReactor(LogStarService* service, grpc::CallbackServerContext* context,
                      const v1::AnalyzeFrameRequest* request, v1::FrameResult* response)
      : service_(service), context_(context), request_(request), response_(response) {}

  void Begin() {
    const grpc::Status auth = service_->Authorize(context_);
    if (!auth.ok()) return Finish(auth);
    if (service_->draining()) {
      return Finish(grpc::Status(grpc::StatusCode::UNAVAILABLE, "the server is shutting down"));
    }
    const LogStarService::Deps& deps = service_->deps();
    admitted_ = deps.unary_calls->TryAcquire();
    if (!admitted_) {
      return Finish(ToGrpcStatus(absl::ResourceExhaustedError(absl::StrCat(
          "the daemon handles ", deps.options->max_unary_calls,
          " AnalyzeFrame calls at once, its max_unary_calls: retry later, or stream the frames"))));
    }
    if (!request_->frame().session_id().empty() && deps.store_io != nullptr) {
      // The session may have to be loaded from the shared store.
      refs_.fetch_add(1, std::memory_order_relaxed);
      deps.store_io->Submit([this] {
        Admit();
        Unref();
      });
      return;
    }
    Admit();
  }

  // Finds (or makes) the session, checks the frame and hands it to a worker.
  void Admit() {
    const LogStarService::Deps& deps = service_->deps();
    const v1::Frame& frame = request_->frame();
    if (frame.session_id().empty()) {
      // A one-off analysis with its own settings; nothing is kept.
      if (!request_->has_settings()) {
        return Finish(ToGrpcStatus(
            absl::InvalidArgumentError("settings are required without frame.session_id")));
      }
      absl::StatusOr<SessionConfig> config = deps.sessions->ParseSettings(request_->settings());
      if (!config.ok()) return Finish(ToGrpcStatus(config.status()));
      session_ = std::make_shared<Session>("", *std::move(config), absl::Now());
    } else {
      absl::StatusOr<std::shared_ptr<Session>> found = deps.sessions->Find(frame.session_id());
      if (!found.ok() && absl::IsNotFound(found.status()) && request_->has_settings()) {
        auto opened = deps.sessions->Open(frame.session_id(), &request_->settings());
        found =
            opened.ok() ? absl::StatusOr<std::shared_ptr<Session>>(opened->first) : opened.status();
      }
      if (!found.ok()) return Finish(ToGrpcStatus(found.status()));
      session_ = *std::move(found);
    }
    session_->Touch(absl::Now());
    session_->CountReceived();
    deps.metrics->frames_received->Increment();
    absl::Status s = CheckMessageSize(*request_, deps.options->max_message_bytes);
    if (s.ok()) s = CheckFrameLimits(frame, deps.options->max_pixels);
    if (s.ok()) {
      absl::StatusOr<MemoryBudget::Reservation> m =
          deps.memory->Reserve(request_->ByteSizeLong(), "the frame's message");
      if (m.ok()) message_ = *std::move(m);
      s = m.status();
    }
    if (!s.ok()) {
      service_->CountFailed(session_.get(), s);
      return Finish(ToGrpcStatus(s));
    }
    refs_.fetch_add(1, std::memory_order_relaxed);
    deps.pool->Submit(
        [this, received = absl::Now(), arrival = Clock::now()] { Run(received, arrival); });
  }

  // gRPC runs these on its threads after AnalyzeFrame has returned the
  // reactor (HappensBefore there), through synchronisation TSan cannot see.
  void OnCancel() override {
    HappensAfter(this);
    cancel_.store(true, std::memory_order_relaxed);
  }
  void OnDone() override {
    HappensAfter(this);
    if (admitted_) service_->deps().unary_calls->Release();
    LogStarService* const service = service_;
    Unref();
    HappensBefore(service);  // the server's Shutdown, after gRPC's Wait
  }

 private:
  void Unref() {
    if (refs_.fetch_sub(1, std::memory_order_acq_rel) == 1) delete this;
  }

  void Run(absl::Time received, Clock::time_point arrival) {
    absl::StatusOr<LogStarService::Processed> r = absl::UnknownError("not run");
    std::optional<absl::StatusOr<SharedMemoryRegistry>> regions;
    if (request_->frame().pixels().has_shared_memory()) regions = service_->RegionsFor(context_);
    if (regions.has_value() && !regions->ok()) {
      r = regions->status();
    } else {
      r = service_->Process(*session_, request_->frame(), regions ? &**regions : nullptr, received,
                            arrival, &cancel_);
    }
    message_.Release();
    bool persist = false;
    if (r.ok()) {
      // Before Finish: the request, whose pixels the preview reads, goes with the call.
      if (r->watched.has_value()) service_->Publish(*session_, *r->watched);
      *response_ = std::move(r->result);
      persist = r->tuned && !session_->id().empty();
      Finish(grpc::Status::OK);
    } else {
      if (absl::IsCancelled(r.status())) {
        service_->CountDropped(session_.get());
      } else {
        service_->CountFailed(session_.get(), r.status());
      }
      Finish(ToGrpcStatus(r.status()));
    }
    if (persist) {
      const absl::Status s = service_->deps().sessions->Persist(*session_);
      if (!s.ok()) Log(LogLevel::kError, "persist_failed", {{"why", s.ToString()}});
    }
    Unref();
  }

  LogStarService* const service_;
  grpc::CallbackServerContext* const context_;
  const v1::AnalyzeFrameRequest* const request_;
  v1::FrameResult* const response_;
  std::shared_ptr<Session> session_;
  std::atomic<int> refs_{1};
  std::atomic<bool> cancel_{false};
  bool admitted_ = false;              // holds a place of max_unary_calls
  MemoryBudget::Reservation message_;  // the request's bytes, until answered
};

LogStarService::LogStarService(const Deps& deps) : deps_(deps) {}

grpc::Status LogStarService::Authorize(const grpc::CallbackServerContext* context) const {
  if (deps_.auth_token.empty()) return grpc::Status::OK;
  const auto& metadata = context->client_metadata();
  const std::string expected = "Bearer " + deps_.auth_token;
  for (auto [it, end] = metadata.equal_range("authorization"); it != end; ++it) {
    if (ConstantTimeEquals(absl::string_view(it->second.data(), it->second.size()), expected)) {
      return grpc::Status::OK;
    }
  }
  return grpc::Status(grpc::StatusCode::UNAUTHENTICATED,
                      "missing or wrong bearer token (metadata \"authorization: Bearer ...\")");
}

bool LogStarService::Register(StreamReactor* stream) {
  MutexLock lock(&mu_);
  if (draining_) return false;
  streams_.insert(stream);
  return true;
}

void LogStarService::Unregister(StreamReactor* stream) {
  MutexLock lock(&mu_);
  streams_.erase(stream);
}

bool LogStarService::draining() const {
  MutexLock lock(&mu_);
  return draining_;
}

int LogStarService::open_streams() const {
  MutexLock lock(&mu_);
  return static_cast<int>(streams_.size());
}

void LogStarService::BeginDrain() {
  // Under mu_, so a reactor cannot finish and be deleted meanwhile
  // (OnDone unregisters under mu_ first).
  {
    MutexLock lock(&mu_);
    draining_ = true;
    for (StreamReactor* s : streams_) s->Drain();
  }
  deps_.watchers->EndAll();
}

void LogStarService::CountDropped(Session* session) {
  if (session != nullptr) session->CountDropped();
  deps_.metrics->frames_dropped->Increment();
}

void LogStarService::CountFailed(Session* session, const absl::Status& status) {
  if (session != nullptr) session->CountFailed();
  deps_.metrics->frames_failed->Increment();
  Log(LogLevel::kDebug, "frame_failed",
      {{"session", session != nullptr ? session->id() : ""}, {"why", status.ToString()}});
}

void LogStarService::PersistSoon(std::shared_ptr<Session> session) {
  if (!deps_.sessions->persists()) return;
  (deps_.store_io != nullptr ? deps_.store_io : deps_.pool)
      ->Submit([sessions = deps_.sessions, session = std::move(session)] {
        const absl::Status s = sessions->Persist(*session);
        if (!s.ok()) Log(LogLevel::kError, "persist_failed", {{"why", s.ToString()}});
      });
}

absl::StatusOr<LogStarService::Processed> LogStarService::Process(
    Session& session, const v1::Frame& frame, const SharedMemoryRegistry* regions,
    absl::Time received, Clock::time_point arrival, const std::atomic<bool>* cancel) {
  const Clock::time_point start = Clock::now();
  if (cancel->load(std::memory_order_relaxed)) return absl::CancelledError("cancelled");
  LOGSTAR_ASSIGN_OR_RETURN(const MemoryBudget::Reservation peak, ReserveAnalysis(session, frame));
  LOGSTAR_ASSIGN_OR_RETURN(const DecodedFrame decoded,
                           DecodeFrame(frame, deps_.options->max_pixels, regions, deps_.context));
  const Clock::time_point decoded_at = Clock::now();

  const bool tuning = session.WillTune(decoded);
  deps_.metrics->frames_running->Increment();
  if (tuning) deps_.metrics->tunings_running->Increment();
  absl::StatusOr<Session::Analysis> analysis = session.Analyze(decoded, deps_.context, cancel);
  deps_.metrics->frames_running->Decrement();
  if (tuning) deps_.metrics->tunings_running->Decrement();
  if (!analysis.ok()) return analysis.status();
  const Clock::time_point analysed_at = Clock::now();

  Processed out;
  v1::FrameResult& r = out.result;
  FrameAnalysisToProto(analysis->frame, analysis->regions, analysis->pixel_size_angstrom, &r,
                       &analysis->prior);
  r.set_session_id(session.id());
  r.set_sequence(frame.sequence());
  r.set_channel(frame.channel());
  if (frame.has_acquisition_time()) *r.mutable_acquisition_time() = frame.acquisition_time();
  if (frame.has_send_time()) *r.mutable_send_time() = frame.send_time();
  *r.mutable_receive_time() = ToProtoTime(received);
  r.set_partial(decoded.partial);
  session.CountAnalysed(analysis->frame);
  *r.mutable_counters() = session.counters();
  out.tuned = analysis->frame.misses + analysis->frame.retunes > 0 ||
              (analysis->frame.amorphous.has_value() &&
               analysis->frame.amorphous->misses + analysis->frame.amorphous->retunes > 0);

  Metrics& m = *deps_.metrics;
  m.frames_analysed->Increment();
  m.cache_hits->Increment(analysis->frame.hits);
  m.cache_misses->Increment(analysis->frame.misses);
  m.cache_retunes->Increment(analysis->frame.retunes);
  v1::LatencyBreakdown* l = r.mutable_latency();
  l->set_queue_ms(MsBetween(arrival, start));
  l->set_decode_ms(MsBetween(start, decoded_at));
  const Clock::time_point encoded_at = Clock::now();
  l->set_encode_ms(MsBetween(analysed_at, encoded_at));
  l->set_total_ms(MsBetween(arrival, encoded_at));
  m.queue_ms->Observe(l->queue_ms());
  m.decode_ms->Observe(l->decode_ms());
  m.normalize_ms->Observe(l->normalize_ms());
  m.log_ms->Observe(l->log_ms());
  m.gmm_ms->Observe(l->gmm_ms());
  m.encode_ms->Observe(l->encode_ms());
  m.total_ms->Observe(l->total_ms());
  if (!session.id().empty() && deps_.watchers->Watched(session.id())) {
    out.watched = ForWatchers{r, decoded.image};
  }
  return out;
}

void LogStarService::Publish(const Session& session, const ForWatchers& watched) {
  WatchHub& hub = *deps_.watchers;
  v1::SessionInfo summary = session.Info(false, deps_.options->session_idle_timeout_s);
  summary.clear_settings();
  hub.Publish(watched.result, &summary, hub.WantsPreview(session.id()) ? &watched.image : nullptr);
}

namespace {

// A handler's body on a gRPC thread. gRPC orders it after the service was
// built (LogStarServer::Start) and before its Wait returns (then the service
// is destroyed), through synchronisation TSan cannot see: the scope states
// both edges. It matters where one process runs servers one after another
// (the tests), since gRPC's threads outlive a server and pick up the next.
class HandlerScope {
 public:
  explicit HandlerScope(const LogStarService* service) : service_(service) {
    HappensAfter(service_);
  }
  ~HandlerScope() { HappensBefore(service_); }
  HandlerScope(const HandlerScope&) = delete;
  HandlerScope& operator=(const HandlerScope&) = delete;

 private:
  const LogStarService* const service_;
};

}  // namespace

grpc::ServerWriteReactor<v1::WatchResponse>* LogStarService::Watch(
    grpc::CallbackServerContext* context, const v1::WatchRequest* request) {
  HandlerScope scope(this);
  grpc::Status status = Authorize(context);
  if (status.ok() && request->all_sessions() != request->session_id().empty()) {
    status =
        grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "give either session_id or all_sessions");
  }
  if (status.ok() && !request->all_sessions()) {
    if (absl::Status found = deps_.sessions->Find(request->session_id()).status(); !found.ok()) {
      status =
          ToGrpcStatus(absl::Status(found.code(), absl::StrCat("session_id: ", found.message())));
    }
  }
  return deps_.watchers->Open(*request, status);
}

grpc::ServerBidiReactor<v1::StreamRequest, v1::StreamResponse>* LogStarService::Stream(
    grpc::CallbackServerContext* context) {
  HandlerScope scope(this);
  auto* reactor = new StreamReactor(this, context);
  reactor->Begin();
  HappensBefore(reactor);  // for its reactions: OnReadDone, OnWriteDone, OnCancel, OnDone
  return reactor;
}

grpc::ServerUnaryReactor* LogStarService::AnalyzeFrame(grpc::CallbackServerContext* context,
                                                       const v1::AnalyzeFrameRequest* request,
                                                       v1::FrameResult* response) {
  HandlerScope scope(this);
  auto* reactor = new AnalyzeFrameReactor(this, context, request, response);
  reactor->Begin();
  HappensBefore(reactor);  // for its reactions: OnCancel, OnDone
  return reactor;
}

// The session RPCs answer inline (no analysis, only the session table): the
// default reactor, finished with the body's status once the caller is
// authorised. With a shared session store the body runs on a store thread
// (it may load the session from the store).
template <typename Body>
grpc::ServerUnaryReactor* LogStarService::AnswerInline(grpc::CallbackServerContext* context,
                                                       Body&& body) {
  HandlerScope scope(this);
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  grpc::Status status = Authorize(context);
  if (status.ok() && deps_.store_io != nullptr) {
    // The session may have to be loaded from the shared store: answered
    // from a store thread (the body captures what it uses by value).
    deps_.store_io->Submit([reactor, body = std::forward<Body>(body)]() mutable {
      reactor->Finish(ToGrpcStatus(body()));
    });
    return reactor;
  }
  if (status.ok()) status = ToGrpcStatus(body());
  reactor->Finish(status);
  return reactor;
}

absl::StatusOr<MemoryBudget::Reservation> LogStarService::ReserveAnalysis(const Session& session,
                                                                          const v1::Frame& frame) {
  const v1::PixelData& px = frame.pixels();
  const int width = static_cast<int>(px.width());
  const int rows = static_cast<int>(frame.valid_rows() != 0 && frame.valid_rows() < px.height()
                                        ? frame.valid_rows()
                                        : px.height());
  const SessionConfig config = session.config();
  // The frame's pixel size, else the settings'; unknown (the largest halo
  // assumed) when the pixel size came from an earlier frame.
  const absl::StatusOr<PhysicsPrior> prior = config.PriorAt(frame.pixel_size_x_angstrom());
  uint64_t bytes = EstimatePeakMemory(width, rows, config.analyzer, prior.ok() ? &*prior : nullptr,
                                      deps_.context->num_threads())
                       .total();
  // Pixels from shared memory are copied out; those in the message are its.
  if (px.has_shared_memory()) {
    bytes += static_cast<uint64_t>(width) * rows *
             wire::FromWire(px.dtype()).value_or(wire::Dtype{}).bytes;
  }
  // Compressed pixels: the whole frame decompressed, and once more while
  // it is unshuffled (proto/wire/compression.h).
  // (The frame's size, not the payload's claim, which is checked later.)
  if (px.has_compressed()) {
    bytes += 2 * static_cast<uint64_t>(width) * px.height() *
             wire::FromWire(px.dtype()).value_or(wire::Dtype{}).bytes;
  }
  return deps_.memory->Reserve(
      bytes, absl::StrCat("frame ", frame.sequence(), " (", width, " x ", rows, " px, window ",
                          config.analyzer.window, ") at its peak"));
}

absl::StatusOr<SharedMemoryRegistry> LogStarService::RegionsFor(
    const grpc::CallbackServerContext* context) const {
  LOGSTAR_ASSIGN_OR_RETURN(const PeerCredentials caller, LocalPeerCredentials(context->peer()));
  return deps_.shared_memory->ForCaller(caller);
}

grpc::ServerUnaryReactor* LogStarService::UpdateSession(grpc::CallbackServerContext* context,
                                                        const v1::UpdateSessionRequest* request,
                                                        v1::SessionInfo* response) {
  return AnswerInline(context, [=, this]() -> absl::Status {
    LOGSTAR_ASSIGN_OR_RETURN(std::shared_ptr<Session> session,
                             deps_.sessions->Find(request->session_id()));
    if (request->has_settings()) {
      LOGSTAR_ASSIGN_OR_RETURN(SessionConfig config,
                               deps_.sessions->ParseSettings(request->settings()));
      LOGSTAR_RETURN_IF_ERROR(session->UpdateSettings(std::move(config)));
    }
    for (const v1::FrontChoice& c : request->choices()) {
      LOGSTAR_RETURN_IF_ERROR(session->ChooseOnFront(c.window(), c.front_index()));
    }
    session->Touch(absl::Now());
    *response = session->Info(true, deps_.options->session_idle_timeout_s);
    PersistSoon(session);
    return absl::OkStatus();
  });
}

grpc::ServerUnaryReactor* LogStarService::GetSession(grpc::CallbackServerContext* context,
                                                     const v1::GetSessionRequest* request,
                                                     v1::SessionInfo* response) {
  return AnswerInline(context, [=, this]() -> absl::Status {
    LOGSTAR_ASSIGN_OR_RETURN(std::shared_ptr<Session> session,
                             deps_.sessions->Find(request->session_id()));
    *response = session->Info(request->include_cache(), deps_.options->session_idle_timeout_s);
    return absl::OkStatus();
  });
}

grpc::ServerUnaryReactor* LogStarService::ResetSession(grpc::CallbackServerContext* context,
                                                       const v1::ResetSessionRequest* request,
                                                       v1::SessionInfo* response) {
  return AnswerInline(context, [=, this]() -> absl::Status {
    LOGSTAR_ASSIGN_OR_RETURN(std::shared_ptr<Session> session,
                             deps_.sessions->Find(request->session_id()));
    if (request->delete_session()) {
      *response = session->Info(false, deps_.options->session_idle_timeout_s);
      // File removal is quick and must not race a later re-creation.
      return deps_.sessions->Remove(session->id());
    }
    session->ResetCache();
    session->Touch(absl::Now());
    *response = session->Info(true, deps_.options->session_idle_timeout_s);
    PersistSoon(session);
    return absl::OkStatus();
  });
}

grpc::ServerUnaryReactor* LogStarService::ListSessions(grpc::CallbackServerContext* context,
                                                       const v1::ListSessionsRequest* request,
                                                       v1::ListSessionsResponse* response) {
  // With a shared store, also the sessions other replicas hold: read there,
  // on a store thread (AnswerInline).
  return AnswerInline(context, [=, this]() -> absl::Status {
    LOGSTAR_ASSIGN_OR_RETURN(std::vector<v1::SessionInfo> sessions,
                             deps_.sessions->ListWithStore(request->include_settings()));
    for (v1::SessionInfo& info : sessions) *response->add_sessions() = std::move(info);
    return absl::OkStatus();
  });
}

grpc::ServerUnaryReactor* LogStarService::RegisterSharedMemory(
    grpc::CallbackServerContext* context, const v1::RegisterSharedMemoryRequest* request,
    v1::SharedMemoryRegion* response) {
  return AnswerInline(context, [=, this]() -> absl::Status {
    // Who calls (a read of the kernel's socket tables, quick) and, on the
    // object opened without blocking, whether they may read it.
    LOGSTAR_ASSIGN_OR_RETURN(SharedMemoryRegistry regions, RegionsFor(context));
    LOGSTAR_RETURN_IF_ERROR(
        regions.Register(request->region(), request->key(), request->byte_size()));
    response->set_region(request->region());
    response->set_key(request->key());
    response->set_byte_size(request->byte_size());
    Log(LogLevel::kInfo, "shared_memory_registered",
        {{"region", request->region()},
         {"key", request->key()},
         {"byte_size", request->byte_size()},
         {"peer", context->peer()}});
    return absl::OkStatus();
  });
}

grpc::ServerUnaryReactor* LogStarService::UnregisterSharedMemory(
    grpc::CallbackServerContext* context, const v1::UnregisterSharedMemoryRequest* request,
    v1::UnregisterSharedMemoryResponse* /*response*/) {
  return AnswerInline(context, [=, this]() -> absl::Status {
    LOGSTAR_ASSIGN_OR_RETURN(SharedMemoryRegistry regions, RegionsFor(context));
    LOGSTAR_RETURN_IF_ERROR(regions.Unregister(request->region()));
    Log(LogLevel::kInfo, "shared_memory_unregistered", {{"region", request->region()}});
    return absl::OkStatus();
  });
}

grpc::ServerUnaryReactor* LogStarService::ListSharedMemory(
    grpc::CallbackServerContext* context, const v1::ListSharedMemoryRequest* /*request*/,
    v1::ListSharedMemoryResponse* response) {
  return AnswerInline(context, [=, this]() -> absl::Status {
    LOGSTAR_ASSIGN_OR_RETURN(SharedMemoryRegistry regions, RegionsFor(context));
    for (const SharedMemoryRegistry::RegionInfo& r : regions.List()) {
      v1::SharedMemoryRegion* out = response->add_regions();
      out->set_region(r.region);
      out->set_key(r.key);
      out->set_byte_size(r.byte_size);
    }
    return absl::OkStatus();
  });
}

}  // namespace logstar::server
