#include "clients/cpp/prior_loader.h"

#include <filesystem>
#include <fstream>
#include <sstream>
#include <system_error>

#include <google/protobuf/util/json_util.h>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace logstar {

absl::StatusOr<v1::PhysicsPrior> ParsePriorJson(absl::string_view json, absl::string_view where) {
  v1::PhysicsPrior prior;
  // Unknown fields are errors (the default): a misspelt field must not
  // silently fall back.
  const auto parsed = google::protobuf::util::JsonStringToMessage(
      google::protobuf::StringPiece(json.data(), json.size()), &prior);
  if (!parsed.ok()) {
    // The parser points at the spot on further lines; the message is one line.
    const std::string message(parsed.message());
    return absl::InvalidArgumentError(
        absl::StrCat(where,
                     ": not a valid prior JSON (pixel_size_angstrom, column_density_per_nm2, "
                     "nearest_neighbor_angstrom, lattice {a_angstrom, b_angstrom, gamma_deg, "
                     "columns_per_cell}, sublattices [{name, column_density_per_nm2, "
                     "relative_brightness}], auto): ",
                     message.substr(0, message.find('\n'))));
  }
  return prior;
}

absl::StatusOr<v1::PhysicsPrior> LoadPriorFile(const std::string& path) {
  absl::StatusOr<std::string> text = ReadTextFile(path);
  if (!text.ok()) return text.status();
  return ParsePriorJson(*text, path);
}

absl::StatusOr<std::string> ReadTextFile(const std::string& path) {
  std::error_code ec;
  if (!std::filesystem::is_regular_file(path, ec)) {
    return absl::NotFoundError(absl::StrCat(path, ": no such file"));
  }
  std::ifstream in(path);
  if (!in) return absl::PermissionDeniedError(absl::StrCat(path, ": cannot open for reading"));
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

}  // namespace logstar
