#include "server/options.h"

#include <algorithm>
#include <cmath>
#include <fstream>
#include <sstream>

#include <google/protobuf/descriptor.h>
#include <google/protobuf/io/tokenizer.h>
#include <google/protobuf/text_format.h>
#include <google/protobuf/util/json_util.h>

#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "engine/base/status_macros.h"
#include "server/log.h"

namespace logstar::server {
namespace {

absl::Status Field(bool ok, const char* field, const std::string& requirement) {
  if (ok) return absl::OkStatus();
  return absl::InvalidArgumentError(absl::StrCat(field, " ", requirement));
}

// TextFormat reports through protobuf's log; collect its message instead.
bool ParseText(const std::string& text, v1::DaemonConfig* config, std::string* error) {
  class Collector : public google::protobuf::io::ErrorCollector {
   public:
    void AddError(int line, int column, const std::string& message) override {
      if (error.empty()) error = absl::StrCat("line ", line + 1, ":", column + 1, ": ", message);
    }
    std::string error;
  } errors;
  google::protobuf::TextFormat::Parser parser;
  parser.RecordErrorsTo(&errors);
  const bool ok = parser.ParseFromString(text, config);
  *error = errors.error;
  return ok;
}

}  // namespace

absl::Status ServerOptions::Validate() const {
  LOGSTAR_RETURN_IF_ERROR(Field(!listen_address.empty(), "listen_address", "must not be empty"));
  LOGSTAR_RETURN_IF_ERROR(Field(engine_threads >= 0, "engine_threads", "must be >= 0"));
  LOGSTAR_RETURN_IF_ERROR(
      Field(max_concurrent_frames >= 1, "max_concurrent_frames", "must be >= 1"));
  // gRPC's own limit is an int; 1 KiB cannot hold any frame.
  LOGSTAR_RETURN_IF_ERROR(Field(max_message_bytes >= 1024 && max_message_bytes <= INT32_MAX,
                                "max_message_bytes", "must be in [1024, 2^31 - 1]"));
  LOGSTAR_RETURN_IF_ERROR(Field(max_pixels >= 1, "max_pixels", "must be >= 1"));
  LOGSTAR_RETURN_IF_ERROR(Field(std::isfinite(session_idle_timeout_s) && session_idle_timeout_s > 0,
                                "session_idle_timeout_s", "must be positive"));
  LOGSTAR_RETURN_IF_ERROR(Field(std::isfinite(state_save_interval_s) && state_save_interval_s > 0,
                                "state_save_interval_s", "must be positive"));
  LOGSTAR_RETURN_IF_ERROR(Field(!(session_store.has_value() && !state_dir.empty()), "session_store",
                                "cannot be used together with state_dir"));
  LOGSTAR_RETURN_IF_ERROR(
      Field(default_queue_capacity >= 1, "default_queue_capacity", "must be >= 1"));
  LOGSTAR_RETURN_IF_ERROR(
      Field(max_pending_responses >= 1, "max_pending_responses", "must be >= 1"));
  LOGSTAR_RETURN_IF_ERROR(Field(std::isfinite(shutdown_grace_s) && shutdown_grace_s >= 0,
                                "shutdown_grace_s", "must be >= 0"));
  LOGSTAR_RETURN_IF_ERROR(Field(memory_budget_bytes >= 0, "memory_budget_bytes",
                                "must be >= 0 (0: half the machine's memory)"));
  LOGSTAR_RETURN_IF_ERROR(Field(max_unary_calls >= 1, "max_unary_calls", "must be >= 1"));
  LOGSTAR_RETURN_IF_ERROR(Field(max_sessions >= 1, "max_sessions", "must be >= 1"));
  LOGSTAR_RETURN_IF_ERROR(Field(max_watchers >= 1, "max_watchers", "must be >= 1"));
  LOGSTAR_RETURN_IF_ERROR(Field(max_evaluations >= 1, "max_evaluations", "must be >= 1"));
  LOGSTAR_RETURN_IF_ERROR(Field(max_frame_work >= 1, "max_frame_work", "must be >= 1"));
  LOGSTAR_RETURN_IF_ERROR(Field(tls_cert_file.empty() == tls_key_file.empty(), "tls_key_file",
                                "and tls_cert_file must be given together"));
  LOGSTAR_RETURN_IF_ERROR(Field(tls_client_ca_file.empty() || !tls_cert_file.empty(),
                                "tls_client_ca_file", "needs tls_cert_file and tls_key_file"));
  // The daemon accepts its Unix socket itself to know its callers
  // (server/unix_listener.h); the socket file's mode guards it, not TLS.
  LOGSTAR_RETURN_IF_ERROR(Field(tls_cert_file.empty() || !IsUnixSocketAddress(listen_address),
                                "tls_cert_file",
                                "cannot be used with a Unix socket listen_address"));
  return ParseLogLevel(log_level).status();
}

bool IsUnixSocketAddress(absl::string_view address) {
  return absl::StartsWith(address, "unix:") || absl::StartsWith(address, "unix-abstract:");
}

std::string RedisAddress::ToString() const {
  return absl::StrCat("redis://", host, ":", port, "/", db);
}

absl::StatusOr<RedisAddress> ParseSessionStoreUrl(absl::string_view url) {
  const auto bad = [&](absl::string_view why) {
    return absl::InvalidArgumentError(
        absl::StrCat("session_store: ", why, " (want redis://HOST:PORT[/DB]), got '", url, "'"));
  };
  constexpr absl::string_view kScheme = "redis://";
  if (!absl::StartsWith(url, kScheme)) return bad("only redis:// is supported");
  absl::string_view rest = url.substr(kScheme.size());
  RedisAddress a;
  if (const size_t slash = rest.find('/'); slash != absl::string_view::npos) {
    if (!absl::SimpleAtoi(rest.substr(slash + 1), &a.db) || a.db < 0) {
      return bad("the database must be a number >= 0");
    }
    rest = rest.substr(0, slash);
  }
  if (const size_t colon = rest.rfind(':'); colon != absl::string_view::npos) {
    if (!absl::SimpleAtoi(rest.substr(colon + 1), &a.port) || a.port < 1 || a.port > 65535) {
      return bad("the port must be in [1, 65535]");
    }
    rest = rest.substr(0, colon);
  }
  if (rest.empty()) return bad("no host");
  a.host = std::string(rest);
  return a;
}

int ServerOptions::GrpcReceiveLimit() const {
  return static_cast<int>(std::min<int64_t>(2 * max_message_bytes, INT32_MAX));
}

absl::StatusOr<ServerOptions> OptionsFromConfig(const v1::DaemonConfig& c) {
  ServerOptions o;
  if (c.has_listen_address()) o.listen_address = c.listen_address();
  if (c.has_engine_threads()) o.engine_threads = c.engine_threads();
  if (c.has_max_concurrent_frames()) o.max_concurrent_frames = c.max_concurrent_frames();
  if (c.has_max_message_bytes()) o.max_message_bytes = c.max_message_bytes();
  if (c.has_max_pixels()) o.max_pixels = c.max_pixels();
  if (c.has_session_idle_timeout_s()) o.session_idle_timeout_s = c.session_idle_timeout_s();
  if (c.has_state_dir()) o.state_dir = c.state_dir();
  if (c.has_state_save_interval_s()) o.state_save_interval_s = c.state_save_interval_s();
  if (c.has_session_store() && !c.session_store().empty()) {
    LOGSTAR_ASSIGN_OR_RETURN(o.session_store, ParseSessionStoreUrl(c.session_store()));
  }
  if (c.has_default_queue_capacity()) o.default_queue_capacity = c.default_queue_capacity();
  if (c.has_max_pending_responses()) o.max_pending_responses = c.max_pending_responses();
  if (c.has_shutdown_grace_s()) o.shutdown_grace_s = c.shutdown_grace_s();
  if (c.has_tls_cert_file()) o.tls_cert_file = c.tls_cert_file();
  if (c.has_tls_key_file()) o.tls_key_file = c.tls_key_file();
  if (c.has_tls_client_ca_file()) o.tls_client_ca_file = c.tls_client_ca_file();
  if (c.has_auth_token_file()) o.auth_token_file = c.auth_token_file();
  if (c.has_metrics_address()) o.metrics_address = c.metrics_address();
  if (c.has_log_level()) o.log_level = c.log_level();
  if (c.has_port_file()) o.port_file = c.port_file();
  if (c.has_memory_budget_bytes()) o.memory_budget_bytes = c.memory_budget_bytes();
  if (c.has_max_unary_calls()) o.max_unary_calls = c.max_unary_calls();
  if (c.has_max_sessions()) o.max_sessions = c.max_sessions();
  if (c.has_max_watchers()) o.max_watchers = c.max_watchers();
  if (c.has_max_evaluations()) o.max_evaluations = c.max_evaluations();
  if (c.has_max_frame_work()) o.max_frame_work = c.max_frame_work();
  LOGSTAR_RETURN_IF_ERROR(o.Validate());
  return o;
}

absl::StatusOr<v1::DaemonConfig> LoadConfigFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot read config file ", path));
  std::stringstream text;
  text << in.rdbuf();
  v1::DaemonConfig config;
  if (absl::EndsWith(path, ".json")) {
    const auto s = google::protobuf::util::JsonStringToMessage(text.str(), &config);
    if (!s.ok()) {
      return absl::InvalidArgumentError(absl::StrCat(path, ": ", s.message().as_string()));
    }
    return config;
  }
  std::string error;
  if (!ParseText(text.str(), &config, &error)) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": ", error));
  }
  return config;
}

absl::StatusOr<v1::DaemonConfig> ConfigFromCommandLine(const std::vector<std::string>& args,
                                                       bool* help) {
  *help = false;
  v1::DaemonConfig config;
  std::vector<std::pair<std::string, std::string>> overrides;
  for (const std::string& arg : args) {
    if (arg == "--help" || arg == "-h") {
      *help = true;
      return config;
    }
    if (!absl::StartsWith(arg, "--") || arg.find('=') == std::string::npos) {
      return absl::InvalidArgumentError(
          absl::StrCat("arguments are --name=value, got \"", arg, "\""));
    }
    const size_t eq = arg.find('=');
    overrides.emplace_back(arg.substr(2, eq - 2), arg.substr(eq + 1));
  }
  for (const auto& [name, value] : overrides) {
    if (name != "config") continue;
    LOGSTAR_ASSIGN_OR_RETURN(v1::DaemonConfig file, LoadConfigFile(value));
    config.MergeFrom(file);
  }
  // Each flag is the field's text-format line, so every field of the
  // config is a flag with the file's syntax and checks.
  const google::protobuf::Descriptor* descriptor = v1::DaemonConfig::descriptor();
  for (const auto& [name, value] : overrides) {
    if (name == "config") continue;
    const google::protobuf::FieldDescriptor* field = descriptor->FindFieldByName(name);
    if (field == nullptr) {
      return absl::InvalidArgumentError(absl::StrCat("unknown flag --", name, " (see --help)"));
    }
    const bool quoted = field->cpp_type() == google::protobuf::FieldDescriptor::CPPTYPE_STRING;
    const std::string line = quoted ? absl::StrCat(name, ": \"", absl::CEscape(value), "\"")
                                    : absl::StrCat(name, ": ", value);
    v1::DaemonConfig one;
    std::string error;
    if (!ParseText(line, &one, &error)) {
      return absl::InvalidArgumentError(
          absl::StrCat("--", name, ": bad value \"", value, "\" (", error, ")"));
    }
    config.MergeFrom(one);
  }
  return config;
}

std::string CommandLineHelp() {
  std::vector<std::string> names;
  const google::protobuf::Descriptor* d = v1::DaemonConfig::descriptor();
  for (int i = 0; i < d->field_count(); ++i) names.push_back("--" + d->field(i)->name() + "=...");
  return absl::StrCat(
      "logstard: the logstar gRPC daemon\n\n"
      "usage: logstard [--config=FILE] [--FIELD=VALUE ...]\n\n"
      "FILE is a logstar.v1.DaemonConfig in protobuf text format, or JSON when it ends in .json\n"
      "(proto/logstar/v1/daemon.proto documents every field and its default). Each field is\n"
      "also a flag, and flags override the file:\n  ",
      absl::StrJoin(names, "\n  "), "\n");
}

}  // namespace logstar::server
