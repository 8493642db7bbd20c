#include "clients/cpp/reconnecting_stream.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace logstar {
namespace {

using Clock = std::chrono::steady_clock;

// Only a connection that went away is worth another: the daemon's other
// answers (a bad frame, a wrong token) would come back the same.
bool Retryable(const absl::Status& s) { return absl::IsUnavailable(s); }

double SecondsSince(Clock::time_point t) {
  return std::chrono::duration<double>(Clock::now() - t).count();
}

// A daemon shutting down drops the frame it read after it began to: not
// analysed because of the outage the reconnect is for.
bool IsShutdownDrop(const v1::StreamResponse& r) {
  return r.has_dropped() && r.dropped().reason() == v1::FrameDropped::REASON_SHUTTING_DOWN;
}

// A pixel-less end_of_stream marker gets no answer (Stream::Push).
bool GetsAnswer(const v1::Frame& frame) { return !(frame.end_of_stream() && !frame.has_pixels()); }

}  // namespace

absl::Status ReconnectOptions::Validate() const {
  if (!(reconnect_s >= 0) || !std::isfinite(reconnect_s)) {
    return absl::InvalidArgumentError(absl::StrCat("reconnect_s must be >= 0, got ", reconnect_s));
  }
  if (!(first_backoff_s > 0) || !(max_backoff_s >= first_backoff_s) ||
      !std::isfinite(max_backoff_s)) {
    return absl::InvalidArgumentError(
        absl::StrCat("first_backoff_s must be > 0 and <= max_backoff_s, got ", first_backoff_s,
                     " and ", max_backoff_s));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<ReconnectingStream>> ReconnectingStream::Open(
    const ClientOptions& client, const StreamOptions& stream, const ReconnectOptions& reconnect) {
  if (absl::Status s = reconnect.Validate(); !s.ok()) return s;
  std::unique_ptr<ReconnectingStream> out(new ReconnectingStream(client, stream, reconnect));
  auto connected = Client::Connect(client);
  if (!connected.ok()) return connected.status();
  auto opened = (*connected)->OpenStream(stream);
  if (!opened.ok()) return opened.status();
  out->client_ = *std::move(connected);
  out->stream_ = *std::move(opened);
  // A reconnect resumes this id, also when the server chose it.
  out->session_id_ = out->stream_->opened().session_id();
  out->StartForwarder();
  return out;
}

ReconnectingStream::~ReconnectingStream() {
  if (stream_ != nullptr && !final_) stream_->Cancel();
  (void)EndConnection();
  if (!final_) Close(absl::CancelledError("the stream was destroyed"));
}

void ReconnectingStream::UseSharedMemory(SharedMemoryRing* ring) {
  MutexLock lock(&mu_);
  ring_ = ring;
}

SharedMemoryRing* ReconnectingStream::CurrentRing() const {
  MutexLock lock(&mu_);
  return ring_;
}

// ---------------------------------------------------------------- answers

void ReconnectingStream::StartForwarder() {
  connection_ended_ = false;
  forwarder_ = std::thread([this, s = stream_.get(), k = connection_] { Forward(s, k); });
}

void ReconnectingStream::Forward(Stream* stream, int connection) {
  while (std::optional<StreamAnswer> a = stream->Read()) {
    MutexLock lock(&mu_);
    auto it = pending_.find(a->response.sequence());
    if (it == pending_.end()) {
      // Answered already (sent again after a reconnect): counted once.
      ++counters_.duplicates;
      continue;
    }
    if (reconnect_.reconnect_s > 0 && IsShutdownDrop(a->response))
      continue;  // still unanswered: sent again
    if (it->second.holds_slot && ring_ != nullptr) ring_->Release();
    pending_.erase(it);
    answers_.push_back({std::move(a->response), a->latency_ms, connection});
    cv_.SignalAll();
  }
  connection_ended_ = true;
  MutexLock lock(&mu_);
  if (ring_ != nullptr) ring_->Wake();  // a sender waiting for a slot reconnects
  cv_.SignalAll();
}

std::optional<ReconnectingStream::Answer> ReconnectingStream::Read() {
  MutexLock lock(&mu_);
  while (answers_.empty() && !closed_) cv_.Wait(&mu_);
  if (answers_.empty()) return std::nullopt;
  Answer answer = std::move(answers_.front());
  answers_.pop_front();
  return answer;
}

bool ReconnectingStream::Unanswered() const {
  MutexLock lock(&mu_);
  return !pending_.empty();
}

ReconnectingStream::Counters ReconnectingStream::counters() const {
  MutexLock lock(&mu_);
  return counters_;
}

// ---------------------------------------------------------------- sending

absl::Status ReconnectingStream::Push(v1::Frame frame) { return Send(std::move(frame), false); }

absl::Status ReconnectingStream::PushViaSharedMemory(v1::Frame frame) {
  return Send(std::move(frame), true);
}

absl::Status ReconnectingStream::Send(v1::Frame frame, bool via_ring) {
  if (final_) {
    return final_->ok() ? absl::FailedPreconditionError("Push after the stream finished") : *final_;
  }
  if (via_ring) {
    if (absl::Status s = PlaceInRing(frame); !s.ok()) return s;
  }
  if (GetsAnswer(frame)) {
    MutexLock lock(&mu_);
    Pending& p = pending_[frame.sequence()];
    p.holds_slot = via_ring;
    if (reconnect_.reconnect_s > 0) p.frame = frame;  // at most max_in_flight (+1) kept
  }
  absl::Status pushed = stream_->Push(std::move(frame));
  if (pushed.ok()) return pushed;
  // The frame stays unanswered in pending_: a reconnect sends it again.
  return Reconnect(std::move(pushed));
}

absl::Status ReconnectingStream::PlaceInRing(v1::Frame& frame) {
  SharedMemoryRing* const ring = CurrentRing();
  if (ring == nullptr) {
    return absl::FailedPreconditionError("PushViaSharedMemory before UseSharedMemory");
  }
  for (;;) {
    absl::Status placed = ring->Place(frame, [this] { return connection_ended_.load(); });
    if (!absl::IsCancelled(placed)) return placed;
    // The stream ended with the slot's frame unanswered: as a failed Push,
    // reconnect (which sends it again) or give up.
    absl::Status why = stream_->Finish();
    if (why.ok()) {
      why = absl::UnavailableError(
          absl::StrCat("logstard at ", client_options_.address, ": the server ended the stream"));
    }
    if (absl::Status s = Reconnect(std::move(why)); !s.ok()) return s;
  }
}

absl::Status ReconnectingStream::Finish() {
  if (final_) return *final_;
  absl::Status status = EndConnection();
  // Lost at the end: reconnect and wait for the answers still missing.
  while (!status.ok() && reconnect_.reconnect_s > 0 && Retryable(status) && Unanswered()) {
    if (absl::Status s = Reconnect(status); !s.ok()) {
      status = s;
      break;
    }
    status = EndConnection();
  }
  // A server that ended the stream (shutdown) after answering every frame
  // left nothing to resume: with reconnects allowed that is a complete stream.
  if (reconnect_.reconnect_s > 0 && Retryable(status) && !Unanswered()) status = absl::OkStatus();
  if (!final_) Close(status);
  return *final_;
}

void ReconnectingStream::Close(absl::Status final_status) {
  final_ = std::move(final_status);
  MutexLock lock(&mu_);
  closed_ = true;
  // The daemon reads none of these frames any more: their slots are free.
  for (auto& [sequence, p] : pending_) {
    if (p.holds_slot && ring_ != nullptr) ring_->Release();
    p.holds_slot = false;
  }
  cv_.SignalAll();
}

// ---------------------------------------------------------------- reconnecting

absl::Status ReconnectingStream::EndConnection() {
  absl::Status status = stream_ != nullptr ? stream_->Finish() : absl::OkStatus();
  if (forwarder_.joinable()) forwarder_.join();
  return status;
}

absl::Status ReconnectingStream::Reconnect(absl::Status why) {
  if (reconnect_.reconnect_s <= 0 || !Retryable(why)) return why;
  const auto outage = Clock::now();
  double backoff_s = reconnect_.first_backoff_s;
  for (;;) {
    // The broken connection's answers are all forwarded before the frames
    // still unanswered are counted.
    (void)EndConnection();
    stream_.reset();
    client_.reset();
    const double left = reconnect_.reconnect_s - SecondsSince(outage);
    if (left <= 0) {
      Close(absl::UnavailableError(
          absl::StrFormat("gave up reconnecting to session %s after %.3g s (%s): %s", session_id_,
                          reconnect_.reconnect_s, reconnect_.budget_name, why.message())));
      return *final_;
    }
    std::this_thread::sleep_for(std::chrono::duration<double>(std::min(backoff_s, left)));
    backoff_s = std::min(2 * backoff_s, reconnect_.max_backoff_s);
    if (absl::Status s = ConnectOnce(left); !s.ok()) {
      why = std::move(s);
      if (Retryable(why)) continue;
      Close(why);  // no connection left to finish
      return why;
    }
    ++connection_;
    StartForwarder();
    ReconnectEvent event{.session_id = session_id_,
                         .outage_s = SecondsSince(outage),
                         .connection = connection_,
                         .resumed = stream_->opened().resumed()};
    {
      MutexLock lock(&mu_);
      ++counters_.reconnects;
      for (const auto& [sequence, p] : pending_) event.resending += p.frame.has_value();
    }
    if (reconnect_.on_reconnect) reconnect_.on_reconnect(event);
    absl::Status resent = Resend();
    if (resent.ok()) return resent;
    why = std::move(resent);  // down again at once: same outage, same budget
    if (!Retryable(why)) return why;
  }
}

absl::Status ReconnectingStream::ConnectOnce(double left_s) {
  ClientOptions options = client_options_;
  options.connect_timeout_s = std::max(0.1, std::min(left_s, options.connect_timeout_s));
  auto connected = Client::Connect(options);
  if (!connected.ok()) return connected.status();
  StreamOptions resume = stream_options_;
  resume.session_id = session_id_;
  auto opened = (*connected)->OpenStream(resume);
  if (!opened.ok()) return opened.status();
  // A restarted daemon forgot the region: register it again before the
  // frames that use it are sent again.
  if (SharedMemoryRing* const ring = CurrentRing(); ring != nullptr) {
    if (absl::Status s = ring->Register(**connected); !s.ok()) return s;
  }
  client_ = *std::move(connected);
  stream_ = *std::move(opened);
  return absl::OkStatus();
}

absl::Status ReconnectingStream::Resend() {
  std::vector<v1::Frame> again;
  {
    MutexLock lock(&mu_);
    for (const auto& [sequence, p] : pending_) {
      if (p.frame) again.push_back(*p.frame);
    }
  }
  for (v1::Frame& f : again) {
    if (absl::Status s = stream_->Push(std::move(f)); !s.ok()) return s;
    MutexLock lock(&mu_);
    ++counters_.resent;
  }
  return absl::OkStatus();
}

}  // namespace logstar
