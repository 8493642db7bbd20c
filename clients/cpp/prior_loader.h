// The physics prior file (PRIOR.json) as a v1::PhysicsPrior, for a
// session's settings: the protobuf JSON mapping of logstar.v1.PhysicsPrior
// (proto/logstar/v1/session.proto), the schema the CLI's --prior, the Python
// client and the docs use. Lengths in angstrom, densities per nm^2:
//
//   {"pixel_size_angstrom": 0.125, "column_density_per_nm2": 13.4,
//    "nearest_neighbor_angstrom": 2.55}
//   {"pixel_size_angstrom": 0.125, "nearest_neighbor_angstrom": 2.55,
//    "lattice": {"a_angstrom": 3.82, "b_angstrom": 11.68, "gamma_deg": 90,
//                "columns_per_cell": 6}}
//   {"pixel_size_angstrom": 0.125, "column_density_per_nm2": 13.11,
//    "nearest_neighbor_angstrom": 2.76,
//    "sublattices": [{"name": "A", "column_density_per_nm2": 6.56,
//                     "relative_brightness": 1},
//                    {"name": "B", "column_density_per_nm2": 6.56,
//                     "relative_brightness": 0.4}]}
//   {"auto": true}   (derived from the first frame)
//
//   absl::StatusOr<v1::PhysicsPrior> prior = LoadPriorFile("sto110.json");
//   v1::SessionSettings settings;
//   *settings.mutable_prior() = *prior;
//
// Field names are snake_case (the mapping's lowerCamelCase is accepted too);
// an unknown field or a value of the wrong type is an error naming the
// field. Only the form is checked here: the values (positive lengths, a
// lattice that fits its density, ...) are the daemon's to check, when the
// session opens (INVALID_ARGUMENT naming settings.prior.<field>), so that
// every client accepts and refuses the same priors.
//
// Thread-safety: pure functions.
#ifndef LOGSTAR_CLIENTS_CPP_PRIOR_LOADER_H_
#define LOGSTAR_CLIENTS_CPP_PRIOR_LOADER_H_

#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "logstar/v1/session.pb.h"

namespace logstar {

// The prior in `json` (a file's contents). INVALID_ARGUMENT, one line,
// starting with `where` (a file name, say) and naming the offending field.
absl::StatusOr<v1::PhysicsPrior> ParsePriorJson(absl::string_view json,
                                                absl::string_view where = "prior");

// The prior in the file at `path`: ReadTextFile, then
// ParsePriorJson(contents, path).
absl::StatusOr<v1::PhysicsPrior> LoadPriorFile(const std::string& path);

// The whole of the regular file at `path` (a prior, a results file):
// NOT_FOUND or PERMISSION_DENIED naming the path.
absl::StatusOr<std::string> ReadTextFile(const std::string& path);

}  // namespace logstar

#endif  // LOGSTAR_CLIENTS_CPP_PRIOR_LOADER_H_
