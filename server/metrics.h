// Prometheus metrics of the daemon. They are always counted (a few atomic
// adds per frame); an HTTP endpoint serves them only when an address is
// given (off by default, and meant for loopback).
//
// Thread-safety: every member may be used from any thread.
#ifndef LOGSTAR_SERVER_METRICS_H_
#define LOGSTAR_SERVER_METRICS_H_

#include <memory>
#include <string>

#include <prometheus/counter.h>
#include <prometheus/exposer.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>

#include "absl/status/statusor.h"

namespace logstar::server {

class Metrics {
 public:
  Metrics();
  ~Metrics();

  // Serves /metrics on address (host:port; port 0 picks one); once.
  absl::Status Serve(const std::string& address);
  int port() const;  // the endpoint's port, 0 when not serving

  prometheus::Counter* frames_received;
  prometheus::Counter* frames_analysed;  // results sent ("frames out")
  prometheus::Counter* frames_dropped;
  prometheus::Counter* frames_failed;
  prometheus::Gauge* queue_depth;      // frames waiting in stream queues
  prometheus::Gauge* frames_running;   // being analysed now
  prometheus::Gauge* tunings_running;  // analyses running that tune windows (misses, re-tunes)
  prometheus::Counter* cache_hits;     // windows
  prometheus::Counter* cache_misses;
  prometheus::Counter* cache_retunes;
  prometheus::Gauge* streams_open;
  prometheus::Gauge* sessions;
  prometheus::Gauge* watchers;         // Watch calls attached
  prometheus::Counter* watch_skipped;  // answers overwritten before a watcher read them
  // Per stage, milliseconds.
  prometheus::Histogram* queue_ms;
  prometheus::Histogram* decode_ms;
  prometheus::Histogram* normalize_ms;
  prometheus::Histogram* log_ms;
  prometheus::Histogram* gmm_ms;
  prometheus::Histogram* encode_ms;
  prometheus::Histogram* total_ms;

  std::shared_ptr<prometheus::Registry> registry() const { return registry_; }

 private:
  std::shared_ptr<prometheus::Registry> registry_;
  std::unique_ptr<prometheus::Exposer> exposer_;
};

}  // namespace logstar::server

#endif  // LOGSTAR_SERVER_METRICS_H_
