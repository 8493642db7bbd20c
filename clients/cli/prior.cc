#include "clients/cli/prior.h"

#include "absl/strings/str_cat.h"
#include "clients/cli/common.h"
#include "clients/cpp/prior_loader.h"
#include "logstar/v1/session.pb.h"

namespace logstar::cli {

absl::StatusOr<server::PriorSetting> ParsePrior(const std::string& text, const std::string& where) {
  // The JSON's form (the client library's loader), then its values.
  absl::StatusOr<v1::PhysicsPrior> proto = ParsePriorJson(text, where);
  if (!proto.ok()) return proto.status();
  // The daemon's conversion and checks; the CLI's frames carry no pixel
  // size, so a given prior must give one.
  absl::StatusOr<server::PriorSetting> prior = server::ParsePrior(*proto);
  if (prior.ok() && !prior->derive) {
    absl::StatusOr<PhysicsPrior> resolved = server::ResolvePrior(prior->prior, 0.0);
    if (resolved.ok()) {
      prior->prior = *std::move(resolved);
    } else {
      prior = resolved.status();
    }
  }
  if (!prior.ok()) {
    return absl::InvalidArgumentError(absl::StrCat(where, ": ", prior.status().message()));
  }
  return prior;
}

absl::StatusOr<server::PriorSetting> ReadPriorFile(const std::string& path) {
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
  if (!prior.sublattices.empty()) {
    nlohmann::ordered_json list = nlohmann::ordered_json::array();
    for (const SublatticePrior& s : prior.sublattices) {
      list.push_back({{"name", s.name},
                      {"column_density_per_nm2", s.column_density_per_nm2},
                      {"relative_brightness", s.relative_brightness}});
    }
    j["sublattices"] = std::move(list);
  }
  return j;
}

nlohmann::ordered_json PriorUsedToJson(const server::PriorInUse& used) {
  nlohmann::ordered_json j = PriorToJson(used.prior);
  // In pixel units the "angstrom" fields hold px (DerivedPrior): say so
  // rather than report a pixel size of 1 A.
  if (used.pixel_units) j["pixel_size_angstrom"] = nullptr;
  j["derived"] = used.derived;
  j["pixel_units"] = used.pixel_units;
  j["nearest_neighbor_px"] = used.prior.NearestNeighborPx();
  j["column_density_per_px2"] = used.prior.ColumnDensityPerPx2();
  return j;
}

}  // namespace logstar::cli
