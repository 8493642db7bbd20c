// `logstar analyze`'s RESULT.json: one writer per kind of record, so that
// the frame, its windows and the --fixed path report rewards, parameters and
// atoms under the same keys. Coordinates as kCoordinates says; lengths in
// pixels, times in milliseconds. Defined in analysis_json.cc.
//
// Thread-safety: pure functions.
#ifndef LOGSTAR_CLIENTS_CLI_ANALYSIS_JSON_H_
#define LOGSTAR_CLIENTS_CLI_ANALYSIS_JSON_H_

#include <string>

#include <nlohmann/json.hpp>
#include <opencv2/core.hpp>

#include "engine/analysis/analyzer.h"
#include "engine/log/log_detector.h"
#include "engine/physics/lattice.h"
#include "engine/physics/physics_prior.h"
#include "engine/physics/rewards.h"

namespace logstar::cli {

using Json = nlohmann::ordered_json;

inline constexpr char kCoordinates[] =
    "x = column, y = row, in pixels, origin at the centre of the top-left pixel; "
    "radius = sigma * sqrt(2)";

Json RewardsToJson(const Rewards& r);
// Appends to `j`, which may already hold keys that must come first.
Json LogParametersToJson(const LogParameters& p, Json j = Json::object());
Json AtomToJson(double x, double y, double sigma, float response);
// One window as RESULT.json's "windows" (and replay's --results lines) give
// it: index, tile and core, cache ("hit", "miss", "retuned"), parameters,
// rewards, its Pareto front (each point's parameters, qc and er) and the
// chosen point's index into it.
Json WindowToJson(const WindowResult& w);
// What a frame's analysis adds to RESULT.json, for one IMAGE and per frame:
// atoms (with their sublattice's name, or null, when `prior` has
// sublattices), rewards, windows (with their Pareto fronts and crystalline
// share), cache counts, and the checks of the prior: warnings (always, [] when
// none), crystalline_fraction, lattice (as measured, when it was), and with
// sublattices their counts and sublattice_note. `prior` is the one analysed
// with; its pixel size (unless `pixel_units`) gives the lattice in angstrom.
void AddFrameAnalysis(const FrameAnalysis& a, const PhysicsPrior& prior, bool pixel_units,
                      Json& out);
// A prior warning as RESULT.json and the summaries give it.
Json WarningToJson(const PriorWarning& w);
// A measured lattice: px, and angstrom when the pixel size is known (> 0).
Json LatticeToJson(const LatticeMeasurement& m, double pixel_size_angstrom);
Json AnalysisTimings(double load_ms, const FrameAnalysis& a, double overlay_ms, double total_ms);
// The input image: path, size, dtype as loaded.
Json ImageToJson(const std::string& path, const cv::Mat& raw);

}  // namespace logstar::cli

#endif  // LOGSTAR_CLIENTS_CLI_ANALYSIS_JSON_H_
