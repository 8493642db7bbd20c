// `logstar status`: the health of logstard and of its analysis service, its
// sessions' counters and, per --session, a session's settings and cache.
#include <algorithm>
#include <cstdio>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "clients/cli/commands.h"
#include "clients/cli/common.h"
#include "clients/cli/remote.h"
#include "clients/cpp/client.h"

namespace logstar::cli {
namespace {

constexpr char kStatusUsage[] =
    "usage: logstar status --server ADDR [--session ID]... [--tls ...] [--token T]\n"
    "Health of logstard and of its analysis service, then one line per session the\n"
    "server holds (attached streams, time since last use, frame counters, window cache\n"
    "and amorphous-stage cache counters) and their total; with a shared session\n"
    "store, sessions other replicas hold are listed without counters; with --session, that\n"
    "session's settings and cache contents too.\n"
    "Exit code 0 when both are SERVING and every listing succeeded; 1 otherwise.\n";

// Seconds since a server timestamp, by this machine's clock (the daemon's
// and the client's clocks may differ a little; never negative).
double SecondsSince(const google::protobuf::Timestamp& t) {
  const absl::Time then = absl::FromUnixSeconds(t.seconds()) + absl::Nanoseconds(t.nanos());
  return std::max(0.0, absl::ToDoubleSeconds(absl::Now() - then));
}

std::string SessionRow(const std::string& id, int id_width, const std::string& streams,
                       const std::string& idle, const v1::SessionCounters& c) {
  return absl::StrFormat("  %-*s %7s %9s %9u %9u %8u %7u %7u %7u %8u %8u %8u %8u\n", id_width, id,
                         streams, idle, c.frames_received(), c.frames_analysed(),
                         c.frames_dropped(), c.frames_failed(), c.cache_hits(), c.cache_misses(),
                         c.cache_retunes(), c.amorphous_hits(), c.amorphous_misses(),
                         c.amorphous_retunes());
}

// The table of every session and their total. Returns false when the
// listing failed (reported on stderr).
bool PrintSessionTable(Client& client) {
  auto list = client.ListSessions();
  if (!list.ok()) {
    if (absl::IsUnimplemented(list.status())) {
      // A daemon older than ListSessions: health still says what it can.
      std::printf("sessions: not listed (this logstard has no ListSessions; use --session ID)\n");
      return true;
    }
    std::fprintf(stderr, "logstar: error: %s\n", std::string(list.status().message()).c_str());
    return false;
  }
  std::printf("sessions: %zu (counters since each session was created)\n", list->size());
  if (list->empty()) return true;
  int id_width = 7;  // "session"
  for (const v1::SessionInfo& info : *list) {
    id_width = std::max(id_width, static_cast<int>(info.session_id().size()));
  }
  // Two header lines: the column groups, then the columns.
  std::printf("  %-*s %7s %9s %-36s %-23s %s\n", id_width, "", "", "", "frames", "cache (windows)",
              "amorphous cache (windows)");
  std::printf("  %-*s %7s %9s %9s %9s %8s %7s %7s %7s %8s %8s %8s %8s\n", id_width, "session",
              "streams", "idle", "received", "analysed", "dropped", "failed", "hits", "misses",
              "retunes", "hits", "misses", "retunes");
  v1::SessionCounters total;
  int total_streams = 0;
  for (const v1::SessionInfo& info : *list) {
    if (info.only_in_store()) {
      // Saved in the shared store by another replica: its counters live
      // there, not here, and are not in the total.
      std::printf("  %-*s %7s %9s %s\n", id_width, info.session_id().c_str(), "-", "-",
                  "held by another replica (listed from the shared session store)");
      continue;
    }
    const v1::SessionCounters& c = info.counters();
    total.set_frames_received(total.frames_received() + c.frames_received());
    total.set_frames_analysed(total.frames_analysed() + c.frames_analysed());
    total.set_frames_dropped(total.frames_dropped() + c.frames_dropped());
    total.set_frames_failed(total.frames_failed() + c.frames_failed());
    total.set_cache_hits(total.cache_hits() + c.cache_hits());
    total.set_cache_misses(total.cache_misses() + c.cache_misses());
    total.set_cache_retunes(total.cache_retunes() + c.cache_retunes());
    total.set_amorphous_hits(total.amorphous_hits() + c.amorphous_hits());
    total.set_amorphous_misses(total.amorphous_misses() + c.amorphous_misses());
    total.set_amorphous_retunes(total.amorphous_retunes() + c.amorphous_retunes());
    total_streams += info.attached_streams();
    std::fputs(SessionRow(info.session_id(), id_width, absl::StrCat(info.attached_streams()),
                          absl::StrFormat("%.1f s", SecondsSince(info.last_active())), c)
                   .c_str(),
               stdout);
  }
  std::fputs(SessionRow("total", id_width, absl::StrCat(total_streams), "", total).c_str(), stdout);
  return true;
}

// --session may repeat: collects those before the one-value-per-flag parser.
void SplitSessionFlags(const std::vector<std::string>& args, std::vector<std::string>& sessions,
                       std::vector<std::string>& rest) {
  for (size_t i = 0; i < args.size(); ++i) {
    if (args[i] == "--session" && i + 1 < args.size()) {
      sessions.push_back(args[++i]);
    } else if (args[i].rfind("--session=", 0) == 0) {
      sessions.push_back(args[i].substr(10));
    } else {
      rest.push_back(args[i]);
    }
  }
}

// One session's settings, counters and cache contents. Returns false when
// the session could not be read (reported on stderr).
bool PrintSession(Client& client, const std::string& id) {
  auto info = client.GetSession(id, /*include_cache=*/true);
  if (!info.ok()) {
    std::fprintf(stderr, "logstar: error: %s\n", std::string(info.status().message()).c_str());
    return false;
  }
  const v1::SessionCounters& c = info->counters();
  int tuned = 0;
  for (const v1::CachedWindow& w : info->cache().windows()) tuned += w.tuned();
  std::printf("session %s\n", id.c_str());
  std::printf("  %-24s %d\n", "attached streams", info->attached_streams());
  std::printf("  %-24s received %llu, analysed %llu, dropped %llu, failed %llu\n", "frames",
              static_cast<unsigned long long>(c.frames_received()),
              static_cast<unsigned long long>(c.frames_analysed()),
              static_cast<unsigned long long>(c.frames_dropped()),
              static_cast<unsigned long long>(c.frames_failed()));
  std::printf("  %-24s hits %llu, misses %llu, re-tunes %llu\n", "cache (windows)",
              static_cast<unsigned long long>(c.cache_hits()),
              static_cast<unsigned long long>(c.cache_misses()),
              static_cast<unsigned long long>(c.cache_retunes()));
  std::printf("  %-24s hits %llu, misses %llu, re-tunes %llu\n", "amorphous cache",
              static_cast<unsigned long long>(c.amorphous_hits()),
              static_cast<unsigned long long>(c.amorphous_misses()),
              static_cast<unsigned long long>(c.amorphous_retunes()));
  std::printf("  %-24s %d of %d windows tuned (%ux%u frames)\n", "cache contents", tuned,
              info->cache().windows_size(), info->cache().width(), info->cache().height());
  std::printf("  %-24s %.4f A/px, window %d, evaluations %d\n", "settings",
              info->settings().prior().pixel_size_angstrom(), info->settings().analysis().window(),
              info->settings().analysis().evaluations());
  if (info->has_prior_used()) {
    // What the last frame ran with: with an auto prior, the one derived.
    const v1::PriorUsed& used = info->prior_used();
    const char* unit = used.pixel_units() ? "px" : "A";
    std::printf("  %-24s %s: nearest neighbour %.4g %s, %.4g columns per %s, %d sublattices\n",
                "prior", used.derived() ? "derived from the first frame" : "as given",
                used.prior().nearest_neighbor_angstrom(), unit,
                used.prior().column_density_per_nm2(), used.pixel_units() ? "100 px^2" : "nm^2",
                used.prior().sublattices_size());
  } else if (info->settings().prior().auto_()) {
    std::printf("  %-24s auto: derived from the first frame with a lattice (none yet)\n", "prior");
  }
  return true;
}

}  // namespace

int RunStatus(const std::vector<std::string>& args) {
  std::vector<std::string> sessions, rest;
  SplitSessionFlags(args, sessions, rest);
  auto flags = Flags::Parse(rest, kClientFlagNames, {"tls"});
  if (!flags.ok()) return UsageError(std::string(flags.status().message()), kStatusUsage);
  if (flags->help()) {
    std::fputs(kStatusUsage, stdout);
    std::fputs(kClientFlagsUsage, stdout);
    return 0;
  }
  if (!flags->positional().empty()) {
    return UsageError(absl::StrCat("unexpected argument '", flags->positional()[0], "'"),
                      kStatusUsage);
  }
  auto options = ClientOptionsFromFlags(ClientFlagsFrom(*flags));
  if (!options.ok()) return UsageError(std::string(options.status().message()), kStatusUsage);
  if (absl::Status s = CheckListening(ClientFlagsFrom(*flags), *options); !s.ok()) return Fail(s);
  auto client = Client::Connect(*options);
  if (!client.ok()) return Fail(client.status());
  int rc = 0;
  std::printf("logstard at %s\n", options->address.c_str());
  for (const std::string service : {"", "logstar.v1.LogStar"}) {
    auto health = (*client)->Health(service);
    if (!health.ok()) return Fail(health.status());
    std::printf("  %-24s %s\n", service.empty() ? "health (server)" : "health (logstar.v1.LogStar)",
                ServingStatusName(*health));
    if (*health != ServingStatus::kServing) rc = 1;
  }
  if (!PrintSessionTable(**client)) rc = 1;
  for (const std::string& id : sessions) {
    if (!PrintSession(**client, id)) rc = 1;
  }
  return rc;
}

}  // namespace logstar::cli
