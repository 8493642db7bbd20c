#include "server/watch.h"

#include <algorithm>
#include <cmath>
#include <map>
#include <memory>
#include <optional>
#include <utility>
#include <vector>

#include <opencv2/imgproc.hpp>

#include "absl/strings/str_cat.h"

namespace logstar::server {

using Answer = std::shared_ptr<const v1::WatchResponse>;

// One Watch call. Lifetime: gRPC's, until OnDone, which detaches it from
// the hub (under the hub's lock, so a publisher holding that lock never
// offers to a deleted watcher) and deletes it.
class Watcher final : public grpc::ServerWriteReactor<v1::WatchResponse> {
 public:
  Watcher(WatchHub* hub, const v1::WatchRequest& request)
      : hub_(hub),
        session_id_(request.session_id()),
        all_sessions_(request.all_sessions()),
        preview_(request.include_preview()) {}

  const std::string& session_id() const { return session_id_; }
  bool all_sessions() const { return all_sessions_; }
  bool preview() const { return preview_; }

  // Set once, by the hub under its lock, before any reaction can run.
  void MarkRegistered() { registered_ = true; }

  // Ends the call at once (nothing written yet).
  void Refuse(const grpc::Status& status) {
    MutexLock lock(&mu_);
    finished_ = true;
    Finish(status);
  }

  // The latest answer for `key` (a session id) replaces an unread one.
  // Returns whether one was overwritten (skipped).
  bool Offer(const std::string& key, Answer answer) {
    MutexLock lock(&mu_);
    if (finished_ || end_.has_value()) return false;
    Pending& p = pending_[key];
    const bool skipped = p.answer != nullptr;
    if (skipped) ++p.skipped;
    p.answer = std::move(answer);
    MaybeWrite();
    return skipped;
  }

  void End(const grpc::Status& status) {
    MutexLock lock(&mu_);
    if (!end_.has_value()) end_ = status;
    MaybeWrite();
  }

  void OnWriteDone(bool ok) override {
    HappensAfter(this);
    MutexLock lock(&mu_);
    writing_ = false;
    in_flight_.reset();
    if (!ok && !end_.has_value()) {
      end_ = grpc::Status(grpc::StatusCode::CANCELLED, "the client stopped reading");
    }
    MaybeWrite();
  }

  void OnCancel() override {
    HappensAfter(this);
    MutexLock lock(&mu_);
    if (!end_.has_value()) end_ = grpc::Status(grpc::StatusCode::CANCELLED, "cancelled");
    MaybeWrite();
  }

  void OnDone() override {
    HappensAfter(this);
    {
      // Every reaction and offer touched the watcher under mu_: taking it
      // orders them before the delete (gRPC's own ordering is invisible to
      // TSan).
      MutexLock lock(&mu_);
      finished_ = true;
    }
    WatchHub* const hub = hub_;
    if (registered_) hub->Detach(this);
    delete this;
    HappensBefore(hub);  // the server's Shutdown, after gRPC's Wait
  }

 private:
  struct Pending {
    Answer answer;  // null: nothing new since the last write
    uint64_t skipped = 0;
  };

  // Writes the next pending answer (sessions in turn, after the last one
  // written), or finishes once ended and nothing is in flight.
  void MaybeWrite() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (finished_ || writing_) return;
    if (end_.has_value()) {
      finished_ = true;
      Finish(*end_);
      return;
    }
    auto it = pending_.upper_bound(last_key_);
    if (it == pending_.end()) it = pending_.begin();
    if (it == pending_.end()) return;
    last_key_ = it->first;
    Pending p = std::move(it->second);
    pending_.erase(it);
    writing_ = true;
    if (p.skipped == 0) {
      in_flight_ = std::move(p.answer);  // shared with the other watchers
      StartWrite(in_flight_.get());
    } else {
      copy_ = *p.answer;
      copy_.set_skipped(p.skipped);
      StartWrite(&copy_);
    }
  }

  WatchHub* const hub_;
  const std::string session_id_;
  const bool all_sessions_;
  const bool preview_;
  bool registered_ = false;

  Mutex mu_;
  std::map<std::string, Pending> pending_ ABSL_GUARDED_BY(mu_);  // by session id
  std::string last_key_ ABSL_GUARDED_BY(mu_);
  Answer in_flight_ ABSL_GUARDED_BY(mu_);
  v1::WatchResponse copy_ ABSL_GUARDED_BY(mu_);  // in flight when it skipped
  bool writing_ ABSL_GUARDED_BY(mu_) = false;
  bool finished_ ABSL_GUARDED_BY(mu_) = false;
  std::optional<grpc::Status> end_ ABSL_GUARDED_BY(mu_);
};

WatchHub::WatchHub(Metrics* metrics, int max_watchers)
    : metrics_(metrics), max_watchers_(max_watchers) {}

grpc::ServerWriteReactor<v1::WatchResponse>* WatchHub::Open(const v1::WatchRequest& request,
                                                            grpc::Status status) {
  auto* watcher = new Watcher(this, request);
  if (status.ok()) {
    MutexLock lock(&mu_);
    if (ended_) {
      status = grpc::Status(grpc::StatusCode::UNAVAILABLE, "the server is shutting down");
    } else if (static_cast<int>(watchers_.size()) >= max_watchers_) {
      status = grpc::Status(
          grpc::StatusCode::RESOURCE_EXHAUSTED,
          absl::StrCat("the daemon serves ", max_watchers_,
                       " Watch calls at once, its max_watchers: close a console or raise it"));
    } else {
      watcher->MarkRegistered();
      // Before any write can start: a client that has the headers knows it
      // is attached (and sees every result analysed from then on).
      watcher->StartSendInitialMetadata();
      HappensBefore(watcher);  // for its reactions, which may start once it is offered results
      watchers_.insert(watcher);
      attached_.store(static_cast<int>(watchers_.size()), std::memory_order_relaxed);
      metrics_->watchers->Increment();
    }
  }
  if (!status.ok()) {
    HappensBefore(watcher);  // for its OnDone, which may run once it is finished
    watcher->Refuse(status);
  }
  return watcher;
}

void WatchHub::Detach(Watcher* watcher) {
  MutexLock lock(&mu_);
  watchers_.erase(watcher);
  attached_.store(static_cast<int>(watchers_.size()), std::memory_order_relaxed);
  metrics_->watchers->Decrement();
}

bool WatchHub::Watched(const std::string& session_id) const {
  if (attached_.load(std::memory_order_relaxed) == 0) return false;
  MutexLock lock(&mu_);
  for (const Watcher* w : watchers_) {
    if (w->all_sessions() || w->session_id() == session_id) return true;
  }
  return false;
}

bool WatchHub::WantsPreview(const std::string& session_id) const {
  if (attached_.load(std::memory_order_relaxed) == 0) return false;
  MutexLock lock(&mu_);
  for (const Watcher* w : watchers_) {
    if (!w->all_sessions() && w->preview() && w->session_id() == session_id) return true;
  }
  return false;
}

void WatchHub::Publish(const v1::FrameResult& result, const v1::SessionInfo* summary,
                       const cv::Mat* preview) {
  if (attached_.load(std::memory_order_relaxed) == 0) return;
  const std::string& id = result.session_id();
  // What the watchers of this session need, asked under the lock; the
  // answers are made outside it (copies, a preview), then offered under it.
  bool want_plain = false, want_preview = false, want_summary = false;
  {
    MutexLock lock(&mu_);
    for (const Watcher* w : watchers_) {
      if (w->all_sessions()) {
        want_summary = true;
      } else if (w->session_id() == id) {
        (w->preview() && preview != nullptr ? want_preview : want_plain) = true;
      }
    }
  }
  Answer plain, with_preview, summarised;
  if (want_plain || want_preview) {
    auto a = std::make_shared<v1::WatchResponse>();
    *a->mutable_result() = result;
    plain = a;
    if (want_preview) {
      auto b = std::make_shared<v1::WatchResponse>(*a);
      MakeFramePreview(*preview, 1024, b->mutable_preview());
      with_preview = std::move(b);
    }
  }
  if (want_summary && summary != nullptr) {
    auto a = std::make_shared<v1::WatchResponse>();
    *a->mutable_summary() = *summary;
    summarised = std::move(a);
  }
  MutexLock lock(&mu_);
  for (Watcher* w : watchers_) {
    Answer answer = w->all_sessions()              ? summarised
                    : w->session_id() != id        ? nullptr
                    : w->preview() && with_preview ? with_preview
                                                   : plain;
    if (answer != nullptr && w->Offer(id, std::move(answer))) metrics_->watch_skipped->Increment();
  }
}

void WatchHub::EndAll() {
  MutexLock lock(&mu_);
  ended_ = true;
  for (Watcher* w : watchers_) {
    w->End(grpc::Status(grpc::StatusCode::UNAVAILABLE, "the server is shutting down"));
  }
}

int WatchHub::size() const { return attached_.load(std::memory_order_relaxed); }

void MakeFramePreview(const cv::Mat& image, int max_side, v1::FramePreview* out) {
  if (image.empty()) return;
  cv::Mat f;
  image.convertTo(f, CV_32F);
  const int longer = std::max(f.cols, f.rows);
  if (longer > max_side) {
    const double s = static_cast<double>(max_side) / longer;
    cv::Mat small;
    cv::resize(f, small,
               cv::Size(std::max(1, static_cast<int>(std::lround(f.cols * s))),
                        std::max(1, static_cast<int>(std::lround(f.rows * s)))),
               0, 0, cv::INTER_AREA);
    f = small;
  }
  // The 1st and 99th percentiles (of at most about 64k pixels, evenly
  // strided: enough for display, cheap): a few hot or dead pixels do not
  // flatten the contrast.
  const size_t stride = std::max<size_t>(1, f.total() / 65536);
  std::vector<float> v;
  v.reserve(f.total() / stride + 1);
  const float* data = f.ptr<float>();  // continuous: made above
  for (size_t i = 0; i < f.total(); i += stride) v.push_back(data[i]);
  const size_t lo_i = v.size() / 100, hi_i = v.size() - 1 - v.size() / 100;
  std::nth_element(v.begin(), v.begin() + lo_i, v.end());
  const float lo = v[lo_i];
  std::nth_element(v.begin(), v.begin() + hi_i, v.end());
  const float hi = std::max(v[hi_i], lo + 1e-6f);
  cv::Mat u8;
  f.convertTo(u8, CV_8U, 255.0 / (hi - lo), -lo * 255.0 / (hi - lo));
  v1::PixelData* px = out->mutable_pixels();
  px->set_dtype(v1::DTYPE_UINT8);
  px->set_width(u8.cols);
  px->set_height(u8.rows);
  px->set_data(std::string(reinterpret_cast<const char*>(u8.data), u8.total()));
  out->set_scale(static_cast<double>(u8.cols) / image.cols);
}

}  // namespace logstar::server
