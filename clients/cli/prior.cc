#include "clients/cli/prior.h"

#include <google/protobuf/util/json_util.h>

#include "absl/strings/str_cat.h"
#include "clients/cli/common.h"
#include "logstar/v1/session.pb.h"
#include "server/session_config.h"

namespace logstar::cli {

absl::StatusOr<PhysicsPrior> ParsePrior(const std::string& text, const std::string& where) {
  v1::PhysicsPrior proto;
  // Unknown fields are errors (the default): a misspelt field must not
  // silently fall back.
  const auto parsed = google::protobuf::util::JsonStringToMessage(text, &proto);
  if (!parsed.ok()) {
    // The parser points at the spot on further lines; the message is one line.
    const std::string message(parsed.message());
    return absl::InvalidArgumentError(
        absl::StrCat(where,
                     ": not a valid prior JSON (pixel_size_angstrom, column_density_per_nm2, "
                     "nearest_neighbor_angstrom, lattice {a_angstrom, b_angstrom, gamma_deg, "
                     "columns_per_cell}): ",
                     message.substr(0, message.find('\n'))));
  }
  // The daemon's conversion and checks; the CLI's frames carry no pixel
  // size, so the prior must give one.
  absl::StatusOr<PhysicsPrior> prior = server::ParsePrior(proto);
  if (prior.ok()) prior = server::ResolvePrior(*prior, 0.0);
  if (!prior.ok()) {
    return absl::InvalidArgumentError(absl::StrCat(where, ": ", prior.status().message()));
  }
  return prior;
}

absl::StatusOr<PhysicsPrior> ReadPriorFile(const std::string& path) {
  absl::StatusOr<std::string> text = ReadTextFile(path);
  if (!text.ok()) return text.status();
  return ParsePrior(*text, path);
}

nlohmann::ordered_json PriorToJson(const PhysicsPrior& prior) {
  nlohmann::ordered_json j;
  j["pixel_size_angstrom"] = prior.pixel_size_angstrom;
  if (prior.column_density_per_nm2) j["column_density_per_nm2"] = *prior.column_density_per_nm2;
  if (prior.lattice) {
    j["lattice"] = {{"a_angstrom", prior.lattice->a_angstrom},
                    {"b_angstrom", prior.lattice->b_angstrom},
                    {"gamma_deg", prior.lattice->gamma_deg},
                    {"columns_per_cell", prior.lattice->columns_per_cell}};
  }
  j["nearest_neighbor_angstrom"] = prior.nearest_neighbor_angstrom;
  return j;
}

}  // namespace logstar::cli
