#include "server/log.h"

#include <atomic>
#include <cstdio>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"

namespace logstar::server {
namespace {

std::atomic<int> g_level{static_cast<int>(LogLevel::kInfo)};

const char* Name(LogLevel level) {
  switch (level) {
    case LogLevel::kDebug:
      return "debug";
    case LogLevel::kWarning:
      return "warning";
    case LogLevel::kError:
      return "error";
    case LogLevel::kInfo:
    default:
      return "info";
  }
}

}  // namespace

absl::StatusOr<LogLevel> ParseLogLevel(absl::string_view name) {
  for (LogLevel l : {LogLevel::kDebug, LogLevel::kInfo, LogLevel::kWarning, LogLevel::kError}) {
    if (name == Name(l)) return l;
  }
  return absl::InvalidArgumentError(
      absl::StrCat("log_level must be debug, info, warning or error, got \"", name, "\""));
}

void SetLogLevel(LogLevel level) { g_level.store(static_cast<int>(level)); }

bool LogEnabled(LogLevel level) { return static_cast<int>(level) >= g_level.load(); }

void Log(LogLevel level, absl::string_view event, LogFields fields) {
  if (!LogEnabled(level)) return;
  // Invalid UTF-8 (e.g. in a client's session id) is replaced, not thrown.
  auto dump = [](const nlohmann::json& j) {
    return j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  };
  // Written field by field so that ts, level and event come first.
  std::string text = absl::StrCat(
      "{\"ts\":\"", absl::FormatTime("%Y-%m-%dT%H:%M:%E3SZ", absl::Now(), absl::UTCTimeZone()),
      "\",\"level\":\"", Name(level), "\",\"event\":", dump(std::string(event)));
  for (const auto& [key, value] : fields) {
    absl::StrAppend(&text, ",", dump(std::string(key)), ":", dump(value));
  }
  text += "}\n";
  std::fwrite(text.data(), 1, text.size(), stderr);
}

}  // namespace logstar::server
