// `logstar console`: the operator console (issue 18, item 2). A small HTTP
// server for a browser on the operator's machine that is itself a gRPC
// client of logstard: it watches a session (the Watch RPC) and passes the
// operator's picks on (UpdateSession). Companion process rather than an
// HTTP surface in logstard: the daemon stays a thin gRPC layer, the console
// works against any daemon it can reach (remote, in a cluster, behind TLS)
// through the public API only, and a console that misbehaves cannot hurt
// the stream.
//
// HTTP (cpp-httplib, Debian's libcpp-httplib-dev, header-only):
//   GET  /                      the page (clients/cli/console/, embedded at build time)
//   GET  /console.js, .css      its script and style
//   GET  /api/sessions          ListSessions as JSON
//   GET  /api/session?id=ID     GetSession (counters, settings, picks) as JSON
//   GET  /api/events?session=ID server-sent events, one Watch call each:
//                               `result` events {skipped, preview_scale, png, result}
//                               and an `ended` event {error} when the watch ends
//   POST /api/choose            session, window, front_index: UpdateSession
//                               with one FrontChoice; answers GetSession's JSON
// JSON is protobuf's JSON mapping with the proto field names.
//
// Security: listens on loopback unless --allow-remote; with a daemon token
// (--token/--token-file) the browser must present the same token (the
// page's ?token= once, kept as an HttpOnly SameSite=Strict cookie, or an
// Authorization: Bearer header); the Host header must name the listen
// address (no DNS rebinding) and a POST's Origin, when sent, must be that
// host.
#include <signal.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include <google/protobuf/util/json_util.h>
#include <opencv2/imgcodecs.hpp>

#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "clients/cli/commands.h"
#include "clients/cli/common.h"
#include "clients/cli/console_assets.h"  // generated: kConsoleAssets
#include "clients/cli/remote.h"
#include "clients/cpp/client.h"
#include "engine/base/mutex.h"
#include "engine/image/overlay.h"

// Last: it brings <resolv.h>, whose `_res` macro breaks Eigen's headers.
#include <httplib.h>

namespace logstar::cli {
namespace {

constexpr char kConsoleUsage[] =
    "usage: logstar console --server ADDR [--listen HOST:PORT] [--allow-remote]\n"
    "                       [--session ID] [--max-rate HZ] [--port-file F] [--tls ...]\n"
    "                       [--token T]\n"
    "The operator console: a web page that shows a live session of logstard (the latest\n"
    "frame with its atoms, amorphous regions and regions of interest, the window grid by\n"
    "cache state, each window's Pareto front, a timeline and the counters) and sends the\n"
    "operator's choice on a front to the daemon. Runs until SIGINT/SIGTERM.\n"
    "  --listen HOST:PORT    where the page is served (default 127.0.0.1:8765; port 0 picks\n"
    "                        one). Loopback only unless --allow-remote\n"
    "  --allow-remote        allow a non-loopback --listen (plain HTTP: prefer an SSH tunnel)\n"
    "  --session ID          the session the page opens with (default: the first one)\n"
    "  --port-file F         write the bound port there once listening\n"
    "  --max-rate HZ         updates per second per open page (default 10; 0: every\n"
    "                        result); the daemon skips the results in between\n"
    "With a token the browser must give it too: open the URL printed at start-up\n"
    "(…/?token=T), which keeps it in a cookie for the session.\n";

constexpr char kCookie[] = "logstar_console";

// Compares in time independent of where the strings differ.
bool ConstantTimeEquals(absl::string_view a, absl::string_view b) {
  if (a.size() != b.size()) return false;
  unsigned char diff = 0;
  for (size_t i = 0; i < a.size(); ++i) diff |= static_cast<unsigned char>(a[i] ^ b[i]);
  return diff == 0;
}

bool IsLoopbackHost(absl::string_view host) {
  return host == "127.0.0.1" || host == "localhost" || host == "::1" || host == "[::1]" ||
         absl::StartsWith(host, "127.");
}

std::string ToJson(const google::protobuf::Message& m) {
  google::protobuf::util::JsonPrintOptions o;
  o.preserve_proto_field_names = true;
  o.always_print_primitive_fields = true;
  std::string out;
  (void)google::protobuf::util::MessageToJsonString(m, &out, o);
  return out;
}

std::string ErrorJson(const absl::Status& s) {
  return absl::StrCat("{\"error\":\"", absl::CEscape(s.ToString()), "\"}");
}

int HttpCode(const absl::Status& s) {
  switch (s.code()) {
    case absl::StatusCode::kInvalidArgument:
    case absl::StatusCode::kFailedPrecondition:
      return 400;
    case absl::StatusCode::kNotFound:
      return 404;
    case absl::StatusCode::kUnauthenticated:
    case absl::StatusCode::kPermissionDenied:
      return 403;
    default:
      return 502;  // the daemon failed or is unreachable
  }
}

// One watch answer as a server-sent event: the result as JSON and the
// preview as a base64 PNG (so the frame and its overlay arrive together).
std::string ResultEvent(v1::WatchResponse& w) {
  std::string png;
  const v1::PixelData& px = w.preview().pixels();
  if (px.width() > 0 && px.data().size() == static_cast<size_t>(px.width()) * px.height()) {
    const cv::Mat image(static_cast<int>(px.height()), static_cast<int>(px.width()), CV_8U,
                        const_cast<char*>(px.data().data()));
    std::vector<uchar> bytes;
    if (cv::imencode(".png", image, bytes)) {
      png = absl::Base64Escape(
          absl::string_view(reinterpret_cast<const char*>(bytes.data()), bytes.size()));
    }
  }
  return absl::StrCat("event: result\ndata: {\"skipped\":", w.skipped(),
                      ",\"preview_scale\":", w.preview().scale(), ",\"png\":\"", png,
                      "\",\"result\":", ToJson(w.result()), "}\n\n");
}

// The overlays' colours (engine/image/overlay.h), so that the page draws
// sublattices and cache states as `logstar replay --overlays` does: CSS
// colours of the sublattices (1-based in results: index 0 here is
// sublattice 1) and of the window states.
std::string PaletteJson() {
  const auto css = [](const cv::Scalar& bgr) {
    return absl::StrCat("\"rgb(", static_cast<int>(bgr[2]), ",", static_cast<int>(bgr[1]), ",",
                        static_cast<int>(bgr[0]), ")\"");
  };
  std::string sub;
  for (int i = 0; i < 8; ++i) absl::StrAppend(&sub, i ? "," : "", css(SublatticeColour(i)));
  return absl::StrCat("{\"sublattices\":[", sub,
                      "],\"windows\":{\"CACHE_STATE_HIT\":", css(WindowColour(WindowMark::kHit)),
                      ",\"CACHE_STATE_MISS\":", css(WindowColour(WindowMark::kTuned)),
                      ",\"CACHE_STATE_RETUNED\":", css(WindowColour(WindowMark::kRetuned)), "}}");
}

class Console {
 public:
  Console(std::unique_ptr<Client> client, std::string token, std::string host, int port,
          bool allow_remote, double max_rate_hz)
      : client_(std::move(client)),
        token_(std::move(token)),
        host_(std::move(host)),
        port_(port),
        allow_remote_(allow_remote),
        max_rate_hz_(max_rate_hz) {}

  // Binds; returns the port or an error.
  absl::StatusOr<int> Bind() {
    Routes();
    // One thread per connection: each open page holds one for its event
    // stream, the rest serve requests.
    server_.new_task_queue = [] { return new httplib::ThreadPool(24); };
    server_.set_keep_alive_max_count(20);
    port_ = port_ == 0 ? server_.bind_to_any_port(host_) : server_.bind_to_port(host_, port_);
    if (port_ <= 0) {
      return absl::UnavailableError(absl::StrCat("cannot listen on ", host_));
    }
    return port_;
  }
  void Serve() { server_.listen_after_bind(); }

  // Ends every event stream (their Watch calls are cancelled) and the server.
  void Stop() {
    {
      MutexLock lock(&mu_);
      stopping_ = true;
      for (Watcher* w : watchers_) w->Cancel();
    }
    server_.stop();
  }

 private:
  void Routes() {
    for (const ConsoleAsset& a : kConsoleAssets) {
      std::string path = "/";
      if (a.path != std::string_view("index.html")) path.append(a.path);
      server_.Get(path, [this, &a](const httplib::Request& req, httplib::Response& res) {
        if (!Admit(req, res)) return;
        res.set_header("Cache-Control", "no-store");
        res.set_content(std::string(a.body), a.type);
      });
    }
    server_.Get("/api/palette", [this](const httplib::Request& req, httplib::Response& res) {
      if (!Admit(req, res)) return;
      res.set_content(PaletteJson(), "application/json");
    });
    server_.Get("/api/sessions", [this](const httplib::Request& req, httplib::Response& res) {
      if (!Admit(req, res)) return;
      absl::StatusOr<std::vector<v1::SessionInfo>> list = client_->ListSessions();
      if (!list.ok()) return Refuse(res, list.status());
      v1::ListSessionsResponse out;
      for (v1::SessionInfo& s : *list) *out.add_sessions() = std::move(s);
      res.set_content(ToJson(out), "application/json");
    });
    server_.Get("/api/session", [this](const httplib::Request& req, httplib::Response& res) {
      if (!Admit(req, res)) return;
      absl::StatusOr<v1::SessionInfo> info = client_->GetSession(req.get_param_value("id"));
      if (!info.ok()) return Refuse(res, info.status());
      res.set_content(ToJson(*info), "application/json");
    });
    server_.Post("/api/choose", [this](const httplib::Request& req, httplib::Response& res) {
      if (!Admit(req, res)) return;
      Choose(req, res);
    });
    server_.Get("/api/events", [this](const httplib::Request& req, httplib::Response& res) {
      if (!Admit(req, res)) return;
      Events(req.get_param_value("session"), res);
    });
  }

  void Refuse(httplib::Response& res, const absl::Status& s) {
    res.status = HttpCode(s);
    res.set_content(ErrorJson(s), "application/json");
  }

  // The checks every request passes: the Host header names this server
  // (a page of another site cannot reach it by DNS rebinding), the token
  // when there is one (a ?token= is turned into the cookie and dropped from
  // the URL), and a POST's Origin, when given, is this host.
  bool Admit(const httplib::Request& req, httplib::Response& res) {
    const std::string host = req.get_header_value("Host");
    const std::string host_name = host.substr(0, host.rfind(':'));
    if (!allow_remote_ && !IsLoopbackHost(host_name)) {
      res.status = 403;
      res.set_content("Host must be a loopback address", "text/plain");
      return false;
    }
    if (req.method == "POST" && req.has_header("Origin") &&
        req.get_header_value("Origin") != "http://" + host) {
      res.status = 403;
      res.set_content("cross-origin request refused", "text/plain");
      return false;
    }
    if (token_.empty()) return true;
    if (req.has_param("token") && ConstantTimeEquals(req.get_param_value("token"), token_)) {
      res.set_header("Set-Cookie",
                     absl::StrCat(kCookie, "=", token_, "; HttpOnly; SameSite=Strict; Path=/"));
      std::string rest;
      for (const auto& [k, v] : req.params) {
        if (k != "token") absl::StrAppend(&rest, rest.empty() ? "?" : "&", k, "=", v);
      }
      res.set_redirect(req.path + rest, 303);
      return false;
    }
    const std::string bearer = req.get_header_value("Authorization");
    if (ConstantTimeEquals(bearer, "Bearer " + token_)) return true;
    for (absl::string_view c : absl::StrSplit(req.get_header_value("Cookie"), ';')) {
      c = absl::StripLeadingAsciiWhitespace(c);
      if (absl::ConsumePrefix(&c, absl::StrCat(kCookie, "=")) && ConstantTimeEquals(c, token_)) {
        return true;
      }
    }
    res.status = 401;
    res.set_content("the console needs the daemon's token: open it as /?token=T", "text/plain");
    return false;
  }

  void Choose(const httplib::Request& req, httplib::Response& res) {
    int window = 0, index = 0;
    const std::string session = req.get_param_value("session");
    if (session.empty() || !absl::SimpleAtoi(req.get_param_value("window"), &window) ||
        !absl::SimpleAtoi(req.get_param_value("front_index"), &index)) {
      return Refuse(res, absl::InvalidArgumentError(
                             "POST /api/choose needs session, window and front_index"));
    }
    v1::UpdateSessionRequest update;
    update.set_session_id(session);
    v1::FrontChoice* c = update.add_choices();
    c->set_window(window);
    c->set_front_index(index);
    if (absl::StatusOr<v1::SessionInfo> s = client_->UpdateSession(update); !s.ok()) {
      return Refuse(res, s.status());
    }
    absl::StatusOr<v1::SessionInfo> info = client_->GetSession(session);  // without the cache
    if (!info.ok()) return Refuse(res, info.status());
    res.set_content(ToJson(*info), "application/json");
  }

  // One Watch call per open page: the daemon keeps its latest result while
  // the browser is slow (skips counted), so a slow page never slows the
  // stream and this process holds one event at a time per page. A page
  // gets at most max_rate_hz events a second (the eye does not follow
  // more; the daemon skips the rest), which bounds what each page costs
  // this process (a PNG and a JSON per event) whatever the frame rate.
  void Events(const std::string& session, httplib::Response& res) {
    res.set_header("Cache-Control", "no-store");
    auto watcher = std::make_shared<std::unique_ptr<Watcher>>();
    auto next_read = std::make_shared<std::chrono::steady_clock::time_point>();
    res.set_chunked_content_provider(
        "text/event-stream",
        [this, session, watcher, next_read](size_t, httplib::DataSink& sink) {
          if (*watcher == nullptr) {
            absl::StatusOr<std::unique_ptr<Watcher>> w =
                client_->Watch({.session_id = session, .include_preview = true});
            if (!w.ok()) return EndEvents(sink, w.status());
            *watcher = *std::move(w);
            if (!Track(watcher->get())) return EndEvents(sink, absl::CancelledError("stopping"));
            const std::string hello = "event: watching\ndata: {}\n\n";
            if (!sink.write(hello.data(), hello.size())) return false;
          }
          std::this_thread::sleep_until(*next_read);
          std::optional<v1::WatchResponse> w = (*watcher)->Read();
          if (!w.has_value()) return EndEvents(sink, (*watcher)->Finish());
          const std::string event = ResultEvent(*w);
          if (max_rate_hz_ > 0) {
            *next_read = std::chrono::steady_clock::now() +
                         std::chrono::microseconds(static_cast<int64_t>(1e6 / max_rate_hz_));
          }
          return sink.write(event.data(), event.size());
        },
        [this, watcher](bool) {
          if (*watcher != nullptr) {
            Untrack(watcher->get());
            watcher->reset();  // cancels a watch still running
          }
        });
  }

  bool EndEvents(httplib::DataSink& sink, const absl::Status& why) {
    const std::string event = absl::StrCat("event: ended\ndata: ", ErrorJson(why), "\n\n");
    sink.write(event.data(), event.size());
    sink.done();
    return true;
  }

  bool Track(Watcher* w) {
    MutexLock lock(&mu_);
    if (stopping_) return false;
    watchers_.insert(w);
    return true;
  }
  void Untrack(Watcher* w) {
    MutexLock lock(&mu_);
    watchers_.erase(w);
  }

  const std::unique_ptr<Client> client_;
  const std::string token_;
  const std::string host_;
  int port_;
  const bool allow_remote_;
  const double max_rate_hz_;  // events per second per page; 0: every result
  httplib::Server server_;
  Mutex mu_;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::set<Watcher*> watchers_ ABSL_GUARDED_BY(mu_);
};

}  // namespace

int RunConsole(const std::vector<std::string>& args) {
  if (std::find(args.begin(), args.end(), "--help") != args.end()) {
    std::fputs(kConsoleUsage, stdout);
    std::fputs(kClientFlagsUsage, stdout);
    return 0;
  }
  std::set<std::string> names = kClientFlagNames;
  names.insert({"listen", "session", "port-file", "max-rate"});
  absl::StatusOr<Flags> flags = Flags::Parse(args, names, {"tls", "allow-remote"});
  if (!flags.ok()) return UsageError(std::string(flags.status().message()), kConsoleUsage);
  const ClientFlags client_flags = ClientFlagsFrom(*flags);
  if (!client_flags.server.has_value()) {
    return UsageError("--server is required", kConsoleUsage);
  }
  const std::string listen = flags->Get("listen").value_or("127.0.0.1:8765");
  const size_t colon = listen.rfind(':');
  int port = -1;
  if (colon == std::string::npos || !absl::SimpleAtoi(listen.substr(colon + 1), &port) ||
      port < 0 || port > 65535) {
    return UsageError("--listen must be HOST:PORT", kConsoleUsage);
  }
  std::string host = listen.substr(0, colon);
  if (absl::StartsWith(host, "[") && absl::EndsWith(host, "]"))
    host = host.substr(1, host.size() - 2);
  const bool allow_remote = flags->Has("allow-remote");
  const absl::StatusOr<double> max_rate = flags->Double("max-rate", 10.0);
  if (!max_rate.ok() || *max_rate < 0) {
    return UsageError("--max-rate must be a number of events per second >= 0", kConsoleUsage);
  }
  if (!allow_remote && !IsLoopbackHost(host)) {
    return UsageError(absl::StrCat("--listen ", listen,
                                   " is not a loopback address: the console is plain HTTP and "
                                   "steers the microscope; give --allow-remote to mean it (or use "
                                   "an SSH tunnel)"),
                      kConsoleUsage);
  }

  absl::StatusOr<ClientOptions> options = ClientOptionsFromFlags(client_flags);
  if (!options.ok()) return UsageError(std::string(options.status().message()), kConsoleUsage);
  if (absl::Status s = CheckListening(client_flags, *options); !s.ok()) return Fail(s);
  absl::StatusOr<std::unique_ptr<Client>> client = Client::Connect(*options);
  if (!client.ok()) return Fail(client.status());

  // SIGINT/SIGTERM are taken by sigwait below, in no other thread.
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGINT);
  sigaddset(&stop_signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);

  const std::string token = options->token;
  Console console(*std::move(client), token, host, port, allow_remote, *max_rate);
  absl::StatusOr<int> bound = console.Bind();
  if (!bound.ok()) return Fail(bound.status());
  if (std::optional<std::string> f = flags->Get("port-file")) {
    std::ofstream(*f, std::ios::trunc) << *bound << "\n";
  }
  std::string url = absl::StrCat(
      "http://", host.find(':') != std::string::npos ? "[" + host + "]" : host, ":", *bound, "/");
  std::string query;
  if (std::optional<std::string> s = flags->Get("session")) absl::StrAppend(&query, "session=", *s);
  if (!token.empty()) absl::StrAppend(&query, query.empty() ? "" : "&", "token=", token);
  if (!query.empty()) absl::StrAppend(&url, "?", query);
  std::printf("logstar console: %s (logstard at %s)\n", url.c_str(), options->address.c_str());
  std::fflush(stdout);

  std::thread serving([&console] { console.Serve(); });
  int signal_number = 0;
  sigwait(&stop_signals, &signal_number);
  console.Stop();
  serving.join();
  std::fprintf(stderr, "logstar console: stopped\n");
  return 0;
}

}  // namespace logstar::cli
