// Early-return helpers for absl::Status, in the style used inside Google.
#ifndef LOGSTAR_ENGINE_BASE_STATUS_MACROS_H_
#define LOGSTAR_ENGINE_BASE_STATUS_MACROS_H_

#include "absl/status/status.h"
#include "absl/status/statusor.h"

#define LOGSTAR_RETURN_IF_ERROR(expr)                  \
  do {                                                 \
    const ::absl::Status logstar_status_ = (expr);     \
    if (!logstar_status_.ok()) return logstar_status_; \
  } while (0)

#define LOGSTAR_STATUS_CONCAT_INNER_(a, b) a##b
#define LOGSTAR_STATUS_CONCAT_(a, b) LOGSTAR_STATUS_CONCAT_INNER_(a, b)

// LOGSTAR_ASSIGN_OR_RETURN(auto x, StatusOrExpression());
#define LOGSTAR_ASSIGN_OR_RETURN(lhs, rexpr) \
  LOGSTAR_ASSIGN_OR_RETURN_IMPL_(LOGSTAR_STATUS_CONCAT_(logstar_statusor_, __LINE__), lhs, rexpr)

#define LOGSTAR_ASSIGN_OR_RETURN_IMPL_(statusor, lhs, rexpr) \
  auto statusor = (rexpr);                                   \
  if (!statusor.ok()) return std::move(statusor).status();   \
  lhs = std::move(statusor).value()

#endif  // LOGSTAR_ENGINE_BASE_STATUS_MACROS_H_
