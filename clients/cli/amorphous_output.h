// `logstar analyze --gmm`: the amorphous stage (engine/amorphous/amorphous.h) on an
// analysed frame and what it adds to RESULT.json, the mask PNG and the
// overlay. Kept apart from commands.cc so that analyze only calls it.
//
// RESULT.json gains, with x = column, y = row in pixels, origin at the
// centre of the top-left pixel:
//  * per atom (same order as "atoms"): "amorphous" (bool) and "posterior"
//    (the amorphous posterior in [0, 1]; null for atoms too near the border
//    to classify, which are never amorphous);
//  * "regions": [{"area_angstrom2", "perimeter_angstrom", "area_px2",
//    "perimeter_px", "centroid": {"x", "y"} (px), "bbox": {"col0", "row0",
//    "cols", "rows"} (px), "contour": [[x, y], ...] (px, outer boundary
//    through boundary pixel centres)}];
//  * "amorphous": the chosen parameters, the Pareto front of the tuning
//    (each point with its parameters and objectives), the frame's evidence,
//    the amorphous share of atoms and area, the mask path and times.
//
// Not thread-safe across calls writing the same files; otherwise stateless.
#ifndef LOGSTAR_CLIENTS_CLI_AMORPHOUS_OUTPUT_H_
#define LOGSTAR_CLIENTS_CLI_AMORPHOUS_OUTPUT_H_

#include <optional>
#include <string>

#include <nlohmann/json.hpp>
#include <opencv2/core.hpp>

#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "engine/analysis/analyzer.h"
#include "engine/base/context.h"
#include "engine/image/normalize.h"
#include "engine/image/overlay.h"
#include "engine/physics/physics_prior.h"

namespace logstar::cli {

struct AmorphousRequest {
  cv::Mat raw;  // the frame as loaded
  NormalizeOptions normalize;
  PhysicsPrior prior;
  ExecutionContext* context = nullptr;
  std::optional<std::string> mask_path;     // 8-bit PNG, 255 = amorphous
  std::optional<std::string> overlay_path;  // atoms and regions on the frame
  OverlayOptions overlay;                   // its annotations (AnnotatedOverlay)
};

struct AmorphousReport {
  std::string console;  // one clause for analyze's summary line
  double stage_ms = 0.0;
  double overlay_ms = 0.0;
};

// Runs the stage on `atoms` (the analysis of `request.raw`), adds the keys
// above to `result` (whose "atoms" array must hold one object per atom, in
// order) and writes the mask and the overlay when asked.
absl::StatusOr<AmorphousReport> AddAmorphous(const AmorphousRequest& request,
                                             absl::Span<const Atom> atoms,
                                             nlohmann::ordered_json& result);

}  // namespace logstar::cli

#endif  // LOGSTAR_CLIENTS_CLI_AMORPHOUS_OUTPUT_H_
