#include "server/status.h"

#include <string>

namespace logstar::server {

grpc::Status ToGrpcStatus(const absl::Status& status) {
  if (status.ok()) return grpc::Status::OK;
  const int code = static_cast<int>(status.code());
  // absl has no code gRPC lacks and vice versa (0..16); anything outside is
  // a bug somewhere and is reported as such rather than guessed.
  if (code < 0 || code > static_cast<int>(grpc::StatusCode::UNAUTHENTICATED)) {
    return grpc::Status(
        grpc::StatusCode::INTERNAL,
        "unexpected status code " + std::to_string(code) + ": " + std::string(status.message()));
  }
  return grpc::Status(static_cast<grpc::StatusCode>(code), std::string(status.message()));
}

}  // namespace logstar::server
