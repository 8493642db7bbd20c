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
//   GET  /api/events?session=ID server-sent events: `watching` once attached,
//                               `result` events {preview_scale, png, result,
//                               skipped} and an `ended` event {error} when the
//                               watch ends; comments as keep-alives
//   POST /api/choose            session, window, front_index: UpdateSession
//                               with one FrontChoice; answers GetSession's JSON
// Answers are protobuf's JSON mapping with the proto field names, except
// the result events' `result`: what the page draws (console_json.h).
//
// Cost on the daemon's machine (issue 18, item 4): one Watch call per
// watched session, whatever the number of pages open on it, read at most
// --max-rate times a second; each answer read is made into its event once
// (console_json.h) and shared by those pages. The watch is cancelled when
// the session's last page closes, so an idle console costs nothing.
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
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include <google/protobuf/util/json_util.h>

#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "clients/cli/commands.h"
#include "clients/cli/common.h"
#include "clients/cli/console_assets.h"  // generated: kConsoleAssets
#include "clients/cli/console_json.h"
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
    "  --max-rate HZ         updates per second of a watched session (default 10; 0:\n"
    "                        every result), made once for all the pages open on it; the\n"
    "                        daemon skips the results in between\n"
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

// One Watch call of a session, shared by every page open on it: a thread
// reads it at most max_rate_hz times a second (the daemon keeps its latest
// result meanwhile and counts the ones skipped) and makes each answer into
// its event once. Pages wait for the next event with Wait(); Cancel() ends
// the call. Thread-safe.
class Feed {
 public:
  // What pages see: `version` counts the events made (0: none yet), `answers`
  // the daemon's results they stand for (each event's own and the ones the
  // daemon skipped before it); `body` is the latest event
  // (ConsoleEventBody).
  struct State {
    bool watching = false;  // the daemon has attached the watcher
    uint64_t version = 0;
    uint64_t answers = 0;
    std::shared_ptr<const std::string> body;
    std::optional<absl::Status> ended;  // why the watch ended
  };

  Feed(Client* client, std::string session, double max_rate_hz)
      : client_(client),
        session_(std::move(session)),
        max_rate_hz_(max_rate_hz),
        reader_([this] { Run(); }) {}
  ~Feed() {
    Cancel();
    reader_.join();
  }

  // Ends the watch (a Read in progress returns at once).
  void Cancel() {
    MutexLock lock(&mu_);
    cancelled_ = true;
    if (watcher_ != nullptr) watcher_->Cancel();
    changed_.SignalAll();
  }

  // Waits at most `timeout` for news past what a page has (`version`,
  // `watching`): a newer event, the watcher attached or the watch ended.
  State Wait(uint64_t version, bool watching, std::chrono::nanoseconds timeout) {
    const auto until = std::chrono::steady_clock::now() + timeout;
    MutexLock lock(&mu_);
    while (state_.version == version && state_.watching == watching && !state_.ended.has_value()) {
      const auto left = until - std::chrono::steady_clock::now();
      if (left <= std::chrono::nanoseconds(0)) break;
      changed_.WaitWithTimeout(&mu_, left);
    }
    return state_;
  }

  State Now() {
    MutexLock lock(&mu_);
    return state_;
  }

 private:
  // The reader: attaches, reads until the watch ends or is cancelled.
  void Run() {
    std::unique_ptr<Watcher> watcher = Attach();
    if (watcher == nullptr) return;
    const bool cancelled = ReadAll(*watcher);
    {
      MutexLock lock(&mu_);
      watcher_ = nullptr;
    }
    if (cancelled) {  // stopped between reads: the call is still open
      watcher->Cancel();
      while (watcher->Read().has_value()) {
      }
    }
    End(watcher->Finish());
  }

  // The Watch call, or null once ended (refused, or cancelled meanwhile).
  std::unique_ptr<Watcher> Attach() {
    absl::StatusOr<std::unique_ptr<Watcher>> watcher =
        client_->Watch({.session_id = session_, .include_preview = true});
    MutexLock lock(&mu_);
    if (!watcher.ok()) {
      EndLocked(watcher.status());
      return nullptr;
    }
    if (cancelled_) {
      EndLocked(absl::CancelledError("no page left"));
      return nullptr;  // its destructor cancels the call
    }
    watcher_ = watcher->get();
    state_.watching = true;
    changed_.SignalAll();
    return *std::move(watcher);
  }

  // Reads at most max_rate_hz_ answers a second and makes each the latest
  // event. Returns true when stopped by Cancel() between reads, false when
  // a read ended the call (cancelled during it, or ended by the daemon).
  bool ReadAll(Watcher& watcher) {
    const auto period =
        std::chrono::microseconds(max_rate_hz_ > 0 ? static_cast<int64_t>(1e6 / max_rate_hz_) : 0);
    auto next_read = std::chrono::steady_clock::now();
    while (true) {
      {
        MutexLock lock(&mu_);
        while (!cancelled_ && std::chrono::steady_clock::now() < next_read) {
          changed_.WaitWithTimeout(&mu_, next_read - std::chrono::steady_clock::now());
        }
        if (cancelled_) return true;
      }
      std::optional<v1::WatchResponse> w = watcher.Read();
      if (!w.has_value()) return false;
      next_read = std::chrono::steady_clock::now() + period;
      auto body = std::make_shared<const std::string>(ConsoleEventBody(*w));
      MutexLock lock(&mu_);
      ++state_.version;
      state_.answers += 1 + w->skipped();
      state_.body = std::move(body);
      changed_.SignalAll();
    }
  }

  void End(const absl::Status& why) {
    MutexLock lock(&mu_);
    EndLocked(why);
  }
  void EndLocked(const absl::Status& why) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    state_.ended = why;
    changed_.SignalAll();
  }

  Client* const client_;
  const std::string session_;
  const double max_rate_hz_;
  Mutex mu_;
  CondVar changed_;
  bool cancelled_ ABSL_GUARDED_BY(mu_) = false;
  Watcher* watcher_ ABSL_GUARDED_BY(mu_) = nullptr;  // while reading
  State state_ ABSL_GUARDED_BY(mu_);
  std::thread reader_;  // last: starts once the rest is made
};

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
      for (auto& [session, feed] : feeds_) feed->Cancel();
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

  // A page's event stream. Its session's feed (one Watch call for all the
  // pages on it) makes each event once; the page gets the latest when it
  // is ready for one (a slow page skips events, counted in `skipped`, and
  // never slows the feed or the other pages). Keep-alive comments while
  // nothing happens notice a closed page within two of them.
  struct Page {
    std::shared_ptr<Feed> feed;  // null: the console is stopping
    uint64_t version = 0;        // the feed's event it has
    uint64_t answers = 0;        // and the daemon's results that stood for
    bool watching = false;       // told the feed is attached
  };
  static constexpr std::chrono::seconds kKeepAlive{1};

  void Events(const std::string& session, httplib::Response& res) {
    res.set_header("Cache-Control", "no-store");
    auto page = std::make_shared<Page>();
    page->feed = Join(session);
    if (page->feed != nullptr) {
      // From the feed's latest event (a new page shows the current frame),
      // which the page did not skip.
      const uint64_t answers = page->feed->Now().answers;
      page->answers = answers > 0 ? answers - 1 : 0;
    }
    res.set_chunked_content_provider(
        "text/event-stream",
        [this, page](size_t, httplib::DataSink& sink) { return SendNext(*page, sink); },
        [this, page](bool) { Leave(std::move(page->feed)); });
  }

  // Writes what is new for the page (or a keep-alive after kKeepAlive).
  // False: the page is gone.
  bool SendNext(Page& page, httplib::DataSink& sink) {
    if (page.feed == nullptr)
      return EndEvents(sink, absl::CancelledError("the console is stopping"));
    const Feed::State s = page.feed->Wait(page.version, page.watching, kKeepAlive);
    if (s.watching && !page.watching) {
      page.watching = true;
      return Write(sink, "event: watching\ndata: {}\n\n");
    }
    if (s.version > page.version) {
      const std::string end = ConsoleEventEnd(s.answers - page.answers - 1);
      page.version = s.version;
      page.answers = s.answers;
      return Write(sink, *s.body) && Write(sink, end);
    }
    if (s.ended.has_value()) return EndEvents(sink, *s.ended);
    return Write(sink, ": keep-alive\n\n");
  }

  static bool Write(httplib::DataSink& sink, absl::string_view text) {
    return sink.write(text.data(), text.size());
  }

  bool EndEvents(httplib::DataSink& sink, const absl::Status& why) {
    Write(sink, absl::StrCat("event: ended\ndata: ", ErrorJson(why), "\n\n"));
    sink.done();
    return true;
  }

  // The feed of `session` for one more page (a new one when there is none
  // or it ended); null when the console is stopping.
  std::shared_ptr<Feed> Join(const std::string& session) {
    MutexLock lock(&mu_);
    if (stopping_) return nullptr;
    std::shared_ptr<Feed>& feed = feeds_[session];
    if (feed == nullptr || feed->Now().ended.has_value()) {
      feed = std::make_shared<Feed>(client_.get(), session, max_rate_hz_);
    }
    ++pages_[feed.get()];
    return feed;
  }

  // A page closed: the last one of a feed ends its watch (the daemon then
  // makes no preview for this console, and this process reads nothing).
  void Leave(std::shared_ptr<Feed> feed) {
    if (feed == nullptr) return;
    {
      MutexLock lock(&mu_);
      if (--pages_[feed.get()] > 0) return;
      pages_.erase(feed.get());
      for (auto it = feeds_.begin(); it != feeds_.end(); ++it) {
        if (it->second == feed) {
          feeds_.erase(it);
          break;
        }
      }
    }
    feed.reset();  // the last owner: cancels the watch and joins its reader
  }

  const std::unique_ptr<Client> client_;
  const std::string token_;
  const std::string host_;
  int port_;
  const bool allow_remote_;
  const double max_rate_hz_;  // events per second per watched session; 0: every result
  httplib::Server server_;
  Mutex mu_;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  // The sessions' feeds (the latest of each) and how many pages each
  // serves (older, ended feeds too, until their pages close).
  std::map<std::string, std::shared_ptr<Feed>> feeds_ ABSL_GUARDED_BY(mu_);
  std::map<const Feed*, int> pages_ ABSL_GUARDED_BY(mu_);
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
