// logstard's settings: the defaults, their checks, and how a configuration
// file (a DaemonConfig message, proto/logstar/v1/daemon.proto) and flags
// make them.
#ifndef LOGSTAR_SERVER_OPTIONS_H_
#define LOGSTAR_SERVER_OPTIONS_H_

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "logstar/v1/daemon.pb.h"

namespace logstar::server {

// Where --session_store keeps the sessions: a Redis server
// (redis://HOST:PORT[/DB]; parsed once by ParseSessionStoreUrl).
struct RedisAddress {
  std::string host{};
  int port = 6379;               // 1..65535
  int db = 0;                    // >= 0
  std::string ToString() const;  // redis://HOST:PORT/DB, for messages
};
// INVALID_ARGUMENT naming session_store unless `url` is
// redis://HOST[:PORT][/DB].
absl::StatusOr<RedisAddress> ParseSessionStoreUrl(absl::string_view url);

struct ServerOptions {
  // host:port; port 0 picks a free one (see port_file). Loopback unless
  // asked otherwise: the daemon has no business on a network by default.
  std::string listen_address = "127.0.0.1:50051";
  int engine_threads = 0;         // oneTBB arena threads; 0 = one per core
  int max_concurrent_frames = 2;  // frames analysed at once, all streams together (>= 1)
  // A 4096² float32 frame is 64 MiB of pixels; the rest is envelope.
  int64_t max_message_bytes = 80ll << 20;
  int64_t max_pixels = 4096ll * 4096;
  double session_idle_timeout_s = 600.0;  // > 0
  std::string state_dir;                  // empty: sessions live in memory only
  double state_save_interval_s = 5.0;     // > 0; see DaemonConfig
  // Sessions shared with other replicas through Redis (DaemonConfig's
  // session_store); not together with state_dir.
  std::optional<RedisAddress> session_store{};
  uint32_t default_queue_capacity = 2;  // >= 1
  uint32_t max_pending_responses = 64;  // >= 1
  double shutdown_grace_s = 30.0;       // >= 0
  std::string tls_cert_file;
  std::string tls_key_file;
  std::string tls_client_ca_file;  // mutual TLS; needs the two above
  std::string auth_token_file;
  std::string metrics_address;  // empty: no Prometheus endpoint
  std::string log_level = "info";
  std::string port_file;
  // Admission (server/admission.h). 0: DefaultMemoryBudget().
  int64_t memory_budget_bytes = 0;  // >= 0
  int max_unary_calls = 16;         // AnalyzeFrame calls admitted at once, >= 1
  int max_sessions = 1000;          // sessions held, >= 1
  int max_watchers = 64;            // Watch calls served at once, >= 1
  // What one session's settings may cost (server/session_config.h
  // SettingsCaps): evaluations per search, >= 1, and the per-frame work
  // budget in evaluation-pixels, >= 1.
  int max_evaluations = 500;
  int64_t max_frame_work = int64_t{1} << 34;

  // Errors name the field (as in the configuration file and the flags).
  absl::Status Validate() const;

  // gRPC's own limit on a received message: twice max_message_bytes (at
  // most 2^31 - 1). A message over max_message_bytes but under this reaches
  // the service, which refuses it alone (an error record in a stream,
  // RESOURCE_EXHAUSTED for AnalyzeFrame) instead of gRPC ending the call
  // and with it the answers to the frames before it. Larger ones still end
  // the call.
  int GrpcReceiveLimit() const;
};

// Whether listen_address names a Unix socket ("unix:PATH", "unix:///PATH",
// "unix-abstract:NAME"): the daemon accepts those itself
// (server/unix_listener.h).
bool IsUnixSocketAddress(absl::string_view address);

// The configuration's set fields over the defaults, then Validate().
absl::StatusOr<ServerOptions> OptionsFromConfig(const v1::DaemonConfig& config);

// Reads a DaemonConfig: JSON when the path ends in .json, else protobuf
// text format. Unknown fields are errors.
absl::StatusOr<v1::DaemonConfig> LoadConfigFile(const std::string& path);

// logstard's command line: --config=FILE, then --FIELD=VALUE for any
// DaemonConfig field, overriding the file. Sets *help on --help.
absl::StatusOr<v1::DaemonConfig> ConfigFromCommandLine(const std::vector<std::string>& args,
                                                       bool* help);
std::string CommandLineHelp();

}  // namespace logstar::server

#endif  // LOGSTAR_SERVER_OPTIONS_H_
