// What the CLI needs to talk to logstard: the client options from flags, and
// (from server/convert.h, where every proto <-> engine conversion lives)
// images to frame envelopes and back, the CLI's analysis options to session
// settings, results to the engine's FrameAnalysis (so that RESULT.json is
// written by one code path in process and through the daemon).
//
// Coordinates pass through unchanged: x = column, y = row, px, origin at the
// centre of the top-left pixel.
//
// Thread-safety: pure functions.
#ifndef LOGSTAR_CLIENTS_CLI_REMOTE_H_
#define LOGSTAR_CLIENTS_CLI_REMOTE_H_

#include <optional>
#include <set>
#include <string>

#include <opencv2/core.hpp>

#include "absl/status/statusor.h"
#include "clients/cli/common.h"
#include "clients/cpp/client.h"
#include "engine/analysis/analyzer.h"
#include "engine/image/normalize.h"
#include "engine/physics/physics_prior.h"
#include "logstar/v1/frame.pb.h"
#include "logstar/v1/result.pb.h"
#include "logstar/v1/session.pb.h"
#include "server/convert.h"

namespace logstar::cli {

// The conversions live with the server's, in one place (server/convert.h).
using server::AnalysisFromResult;
using server::DecodeFrame;
using server::ImageToPixels;
using server::PixelsToImage;
using server::PriorToProto;
using server::SettingsFromOptions;
using server::ToProtoTime;

// --server ADDR [--tls] [--tls-ca F] [--tls-cert F --tls-key F] [--token T]
// [--token-file F] [--connect-timeout S] [--compress C]; `get` returns a
// flag's value.
struct ClientFlags {
  std::optional<std::string> server{}, tls_ca{}, tls_cert{}, tls_key{}, token{}, token_file{},
      connect_timeout{};
  std::optional<std::string> compress{};  // --compress none|zstd|zstd-delta
  bool tls = false;
};
absl::StatusOr<ClientOptions> ClientOptionsFromFlags(const ClientFlags& flags);
// Fails fast when nothing listens at the address: UNAVAILABLE "cannot reach
// logstard at ADDR: connection refused ..." (or "no such socket", "unknown
// host") within about a second, where the client would retry until its
// connect timeout. Only without --connect-timeout: a timeout given asks to
// wait for a daemon that is still starting. OK when something listens, when
// the probe cannot tell (a filtered port, a gRPC target such as dns:///...)
// or when the flag was given; the client's own connect then decides.
absl::Status CheckListening(const ClientFlags& flags, const ClientOptions& options);
// The client flags among a command's parsed flags.
ClientFlags ClientFlagsFrom(const Flags& flags);
// The names of the client flags that take a value (--tls is a switch).
extern const std::set<std::string> kClientFlagNames;
inline constexpr char kClientFlagsUsage[] =
    "  --server ADDR         logstard's host:port\n"
    "  --tls                 connect with TLS (system roots unless --tls-ca)\n"
    "  --tls-ca F            PEM of the CA that signed the server's certificate (implies --tls)\n"
    "  --tls-cert F, --tls-key F  client certificate and key for mutual TLS (imply --tls)\n"
    "  --token T             bearer token (or --token-file F, first line)\n"
    "  --connect-timeout S   seconds to wait for a server that is starting (default: a\n"
    "                        refused connection fails at once, else 10 s)\n"
    "  --compress C          none (default), zstd or zstd-delta: lossless compression of the\n"
    "                        pixels in the messages, for slow links (used when the daemon\n"
    "                        accepts it); zstd-delta codes uint16 counts from the row above,\n"
    "                        about 15 % smaller, and needs a daemon that knows it\n";

}  // namespace logstar::cli

#endif  // LOGSTAR_CLIENTS_CLI_REMOTE_H_
