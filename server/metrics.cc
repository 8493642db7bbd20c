#include "server/metrics.h"

#include <exception>

#include "absl/strings/str_cat.h"

namespace logstar::server {
namespace {

prometheus::Counter* NewCounter(prometheus::Registry& r, const std::string& name,
                                const std::string& help) {
  return &prometheus::BuildCounter().Name(name).Help(help).Register(r).Add({});
}

prometheus::Gauge* NewGauge(prometheus::Registry& r, const std::string& name,
                            const std::string& help) {
  return &prometheus::BuildGauge().Name(name).Help(help).Register(r).Add({});
}

}  // namespace

Metrics::Metrics() : registry_(std::make_shared<prometheus::Registry>()) {
  prometheus::Registry& r = *registry_;
  frames_received = NewCounter(r, "logstar_frames_received_total", "Frames read from clients");
  frames_analysed = NewCounter(r, "logstar_frames_analysed_total", "Frame results sent");
  frames_dropped = NewCounter(r, "logstar_frames_dropped_total",
                              "Frames dropped by the overload policy or shutdown");
  frames_failed = NewCounter(r, "logstar_frames_failed_total", "Frames answered with an error");
  queue_depth = NewGauge(r, "logstar_queue_depth", "Frames waiting in stream queues");
  frames_running = NewGauge(r, "logstar_frames_running", "Frames being analysed");
  tunings_running =
      NewGauge(r, "logstar_tunings_running", "Frames being analysed whose session is still tuning");
  cache_hits = NewCounter(r, "logstar_cache_hits_total", "Windows run with cached parameters");
  cache_misses = NewCounter(r, "logstar_cache_misses_total", "Windows tuned from scratch");
  cache_retunes = NewCounter(r, "logstar_cache_retunes_total", "Windows re-tuned after drift");
  streams_open = NewGauge(r, "logstar_streams_open", "Open Stream RPCs");
  sessions = NewGauge(r, "logstar_sessions", "Sessions held");
  watchers = NewGauge(r, "logstar_watchers", "Watch calls attached (read-only observers)");
  watch_skipped = NewCounter(r, "logstar_watch_skipped_total",
                             "Answers a slow watcher skipped (overwritten by a newer one)");
  auto& stages = prometheus::BuildHistogram()
                     .Name("logstar_stage_latency_ms")
                     .Help("Per-frame latency by stage, milliseconds")
                     .Register(r);
  const prometheus::Histogram::BucketBoundaries buckets = {
      0.25, 0.5, 1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384};
  queue_ms = &stages.Add({{"stage", "queue"}}, buckets);
  decode_ms = &stages.Add({{"stage", "decode"}}, buckets);
  normalize_ms = &stages.Add({{"stage", "normalize"}}, buckets);
  log_ms = &stages.Add({{"stage", "log"}}, buckets);
  gmm_ms = &stages.Add({{"stage", "gmm"}}, buckets);
  encode_ms = &stages.Add({{"stage", "encode"}}, buckets);
  total_ms = &stages.Add({{"stage", "total"}}, buckets);
}

Metrics::~Metrics() = default;

absl::Status Metrics::Serve(const std::string& address) {
  if (exposer_ != nullptr) return absl::FailedPreconditionError("metrics are already served");
  try {
    exposer_ = std::make_unique<prometheus::Exposer>(address);
  } catch (const std::exception& e) {
    return absl::UnavailableError(
        absl::StrCat("cannot serve metrics on ", address, ": ", e.what()));
  }
  exposer_->RegisterCollectable(registry_);
  return absl::OkStatus();
}

int Metrics::port() const {
  if (exposer_ == nullptr) return 0;
  const std::vector<int> ports = exposer_->GetListeningPorts();
  return ports.empty() ? 0 : ports.front();
}

}  // namespace logstar::server
