// Structured log lines: one JSON object per line on stderr, e.g.
//   {"ts":"2026-11-23T10:00:00.123Z","level":"info","event":"listening","address":"127.0.0.1:50051"}
// so that log collectors parse them without patterns. Lines below the level
// set with SetLogLevel (default info) are skipped before they are formatted.
//
// Thread-safety: everything here may be called from any thread; a line is
// written with one call, so lines never interleave.
#ifndef LOGSTAR_SERVER_LOG_H_
#define LOGSTAR_SERVER_LOG_H_

#include <initializer_list>
#include <utility>
#include "absl/strings/string_view.h"

#include <nlohmann/json.hpp>

#include "absl/status/statusor.h"

namespace logstar::server {

enum class LogLevel { kDebug = 0, kInfo = 1, kWarning = 2, kError = 3 };

// "debug", "info", "warning", "error".
absl::StatusOr<LogLevel> ParseLogLevel(absl::string_view name);
void SetLogLevel(LogLevel level);
bool LogEnabled(LogLevel level);

using LogFields = std::initializer_list<std::pair<const char*, nlohmann::json>>;
void Log(LogLevel level, absl::string_view event, LogFields fields = {});

}  // namespace logstar::server

#endif  // LOGSTAR_SERVER_LOG_H_
