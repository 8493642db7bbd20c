// The physics prior file (PRIOR.json), read one way everywhere: the protobuf
// JSON mapping of logstar.v1.PhysicsPrior (proto/logstar/v1/session.proto),
// as the Python client reads it (logstar.settings.prior_message), then the
// daemon's own conversion to the engine's prior (server::ParsePrior), so
// that the CLI, the Python client and logstard accept and refuse the same
// files. Lengths in angstrom, densities per nm^2:
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
//   {"auto": true, "pixel_size_angstrom": 0.125}   (or the pixel size alone;
//    or {"auto": true}: derived from the first frame, in pixels)
//
// Field names are snake_case (the mapping's lowerCamelCase is accepted too);
// unknown fields are errors naming the field. Writing (PriorToJson) keeps
// the snake_case layout `logstar synth` has always written.
//
// Thread-safety: pure functions.
#ifndef LOGSTAR_CLIENTS_CLI_PRIOR_H_
#define LOGSTAR_CLIENTS_CLI_PRIOR_H_

#include <string>

#include <nlohmann/json.hpp>

#include "absl/status/statusor.h"
#include "engine/physics/physics_prior.h"
#include "server/convert.h"
#include "server/session_config.h"

namespace logstar::cli {

// The prior in `text` (a file's contents); errors are INVALID_ARGUMENT, one
// line, starting with `where`. A given prior must give its pixel size (the
// CLI's frames carry none) and is fully checked; an auto one is returned as
// such (server::PriorSetting::derive).
absl::StatusOr<server::PriorSetting> ParsePrior(const std::string& text, const std::string& where);

// ReadTextFile (NOT_FOUND, PERMISSION_DENIED naming the path) and ParsePrior.
absl::StatusOr<server::PriorSetting> ReadPriorFile(const std::string& path);

// The prior as the JSON above (the lattice nested, density when given,
// sublattices when there are any).
nlohmann::ordered_json PriorToJson(const PhysicsPrior& prior);

// The prior a result was analysed with, as RESULT.json reports it: the
// prior's JSON with "derived" (true with --prior auto), "pixel_units" (true
// when derived without a pixel size: every length is then in px and
// pixel_size_angstrom is null), and nearest_neighbor_px and
// column_density_per_px2.
nlohmann::ordered_json PriorUsedToJson(const server::PriorInUse& used);

}  // namespace logstar::cli

#endif  // LOGSTAR_CLIENTS_CLI_PRIOR_H_
