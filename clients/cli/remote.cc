#include "clients/cli/remote.h"

#include <cmath>
#include <cstring>
#include <fstream>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"

namespace logstar::cli {

const std::set<std::string> kClientFlagNames = {"server", "tls-ca",     "tls-cert",       "tls-key",
                                                "token",  "token-file", "connect-timeout"};

ClientFlags ClientFlagsFrom(const Flags& flags) {
  return ClientFlags{.server = flags.Get("server"),
                     .tls_ca = flags.Get("tls-ca"),
                     .tls_cert = flags.Get("tls-cert"),
                     .tls_key = flags.Get("tls-key"),
                     .token = flags.Get("token"),
                     .token_file = flags.Get("token-file"),
                     .connect_timeout = flags.Get("connect-timeout"),
                     .tls = flags.Has("tls")};
}

absl::StatusOr<ClientOptions> ClientOptionsFromFlags(const ClientFlags& f) {
  ClientOptions o;
  if (!f.server || f.server->empty()) {
    return absl::InvalidArgumentError("--server ADDR (logstard's host:port) is required");
  }
  o.address = *f.server;
  o.use_tls = f.tls || f.tls_ca || f.tls_cert || f.tls_key;
  o.tls_root_certs_file = f.tls_ca.value_or("");
  o.tls_client_cert_file = f.tls_cert.value_or("");
  o.tls_client_key_file = f.tls_key.value_or("");
  if (o.tls_client_cert_file.empty() != o.tls_client_key_file.empty()) {
    return absl::InvalidArgumentError("--tls-cert and --tls-key go together (mutual TLS)");
  }
  if (f.token && f.token_file) {
    return absl::InvalidArgumentError("give --token or --token-file, not both");
  }
  if (f.token) o.token = *f.token;
  if (f.token_file) {
    std::ifstream in(*f.token_file);
    if (!in || !std::getline(in, o.token)) {
      return absl::NotFoundError(absl::StrCat("--token-file ", *f.token_file, ": cannot read"));
    }
    o.token = std::string(absl::StripAsciiWhitespace(o.token));
  }
  if (f.connect_timeout) {
    if (!absl::SimpleAtod(*f.connect_timeout, &o.connect_timeout_s) || !(o.connect_timeout_s > 0)) {
      return absl::InvalidArgumentError(absl::StrCat(
          "--connect-timeout must be a number of seconds > 0, got '", *f.connect_timeout, "'"));
    }
  }
  if (absl::Status s = o.Validate(); !s.ok()) return s;
  return o;
}

}  // namespace logstar::cli
