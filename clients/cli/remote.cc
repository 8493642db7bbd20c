#include "clients/cli/remote.h"

#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cmath>
#include <cstring>
#include <fstream>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "proto/wire/compression.h"

namespace logstar::cli {

const std::set<std::string> kClientFlagNames = {"server",          "tls-ca",  "tls-cert",
                                                "tls-key",         "token",   "token-file",
                                                "connect-timeout", "compress"};

namespace {

// How long a probe waits for one address to answer: a refusal comes back
// at once; a silent (filtered) port is left to the client's timeout.
constexpr int kProbeMs = 1000;

enum class Probe { kListening, kRefused, kUnknown };

// One connect(2) to `addr`, non-blocking, waiting at most kProbeMs.
Probe ProbeAddress(const sockaddr* addr, socklen_t len, int family, int* error) {
  const int fd = socket(family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return Probe::kUnknown;
  Probe result = Probe::kUnknown;
  if (connect(fd, addr, len) == 0) {
    result = Probe::kListening;
  } else if (errno == EINPROGRESS || errno == EAGAIN) {
    pollfd p{.fd = fd, .events = POLLOUT, .revents = 0};
    if (poll(&p, 1, kProbeMs) == 1) {
      int so_error = 0;
      socklen_t so_len = sizeof(so_error);
      getsockopt(fd, SOL_SOCKET, SO_ERROR, &so_error, &so_len);
      *error = so_error;
      result = so_error == 0 ? Probe::kListening
                             : (so_error == ECONNREFUSED ? Probe::kRefused : Probe::kUnknown);
    }
  } else {
    *error = errno;
    result = errno == ECONNREFUSED || errno == ENOENT ? Probe::kRefused : Probe::kUnknown;
  }
  close(fd);
  return result;
}

absl::Status Unreachable(const std::string& address, const std::string& reason) {
  return absl::UnavailableError(absl::StrCat("cannot reach logstard at ", address, ": ", reason,
                                             " (is logstard running there? --connect-timeout S "
                                             "waits for one that is starting)"));
}

}  // namespace

absl::Status CheckListening(const ClientFlags& flags, const ClientOptions& options) {
  if (flags.connect_timeout) return absl::OkStatus();
  const std::string& address = options.address;
  int error = 0;
  if (absl::StartsWith(address, "unix:")) {
    std::string path = address.substr(5);
    if (absl::StartsWith(path, "//")) path = path.substr(2);
    sockaddr_un un{};
    un.sun_family = AF_UNIX;
    if (path.empty() || path.size() >= sizeof(un.sun_path)) return absl::OkStatus();
    std::memcpy(un.sun_path, path.data(), path.size());
    if (ProbeAddress(reinterpret_cast<const sockaddr*>(&un), sizeof(un), AF_UNIX, &error) ==
        Probe::kRefused) {
      return Unreachable(address, error == ENOENT ? "no such socket" : "connection refused");
    }
    return absl::OkStatus();
  }
  // host:port, [v6]:port; other gRPC targets (dns:///, ipv4:, ...) are left to gRPC.
  if (address.find("://") != std::string::npos || absl::StartsWith(address, "ipv4:") ||
      absl::StartsWith(address, "ipv6:") || absl::StartsWith(address, "dns:")) {
    return absl::OkStatus();
  }
  const size_t colon = address.rfind(':');
  if (colon == std::string::npos) return absl::OkStatus();
  std::string host = address.substr(0, colon);
  const std::string port = address.substr(colon + 1);
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') {
    host = host.substr(1, host.size() - 2);
  }
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* found = nullptr;
  const int rc = getaddrinfo(host.empty() ? nullptr : host.c_str(), port.c_str(), &hints, &found);
  if (rc == EAI_NONAME) return Unreachable(address, absl::StrCat("unknown host '", host, "'"));
  if (rc != 0) return absl::OkStatus();
  bool refused = found != nullptr;
  for (addrinfo* a = found; a != nullptr; a = a->ai_next) {
    const Probe p = ProbeAddress(a->ai_addr, a->ai_addrlen, a->ai_family, &error);
    if (p != Probe::kRefused) refused = false;
    if (p == Probe::kListening) break;
  }
  freeaddrinfo(found);
  if (refused) return Unreachable(address, "connection refused");
  return absl::OkStatus();
}

ClientFlags ClientFlagsFrom(const Flags& flags) {
  return ClientFlags{.server = flags.Get("server"),
                     .tls_ca = flags.Get("tls-ca"),
                     .tls_cert = flags.Get("tls-cert"),
                     .tls_key = flags.Get("tls-key"),
                     .token = flags.Get("token"),
                     .token_file = flags.Get("token-file"),
                     .connect_timeout = flags.Get("connect-timeout"),
                     .compress = flags.Get("compress"),
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
  if (f.compress) {
    absl::StatusOr<v1::PixelCodec> codec = wire::ParseCodec(*f.compress);
    if (!codec.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat("--compress must be none, zstd or zstd-delta, got '", *f.compress, "'"));
    }
    o.compression = *codec;
  }
  if (absl::Status s = o.Validate(); !s.ok()) return s;
  return o;
}

}  // namespace logstar::cli
