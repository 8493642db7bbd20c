// The one place where engine and server errors (absl::Status) become gRPC
// statuses. Both follow google.rpc.Code, so the code is kept as is and the
// message passed through: INVALID_ARGUMENT stays INVALID_ARGUMENT and still
// names the offending field.
#ifndef LOGSTAR_SERVER_STATUS_H_
#define LOGSTAR_SERVER_STATUS_H_

#include <grpcpp/support/status.h>

#include "absl/status/status.h"

namespace logstar::server {

grpc::Status ToGrpcStatus(const absl::Status& status);

}  // namespace logstar::server

#endif  // LOGSTAR_SERVER_STATUS_H_
