// The operator console's per-update payload (`logstar console`,
// clients/cli/console.cc): a Watch answer as the JSON and image the page
// (clients/cli/console/console.js) draws, and nothing else. Hand-built
// rather than protobuf's generic JSON printer, which cost the console most
// of its time per update (every field of every atom, by reflection), on
// the daemon's own machine.
//
// Keys are the proto field names (what the page reads), in this shape:
//   {"sequence", "width", "height",
//    "atoms": [{"x", "y", "sigma", "amorphous"?, "sublattice"?}],
//    "amorphous_regions": [{"area_px2", "contour_x": [], "contour_y": []}],
//    "regions_of_interest": [{"box": {"col0", "row0", "cols", "rows"}}]  (the first 5),
//    "prior_used": {"prior": {"pixel_size_angstrom", "sublattices": [{"name"}]},
//                   "pixel_units"},
//    "windows": [{"index", "core", "cache_state", "objectives", "chosen",
//                 "num_atoms", "parameters", "rewards": {"qc", "er"},
//                 "front": [{"parameters", "qc", "er", "misses", "spurious"}]}],
//    "rewards": {"qc", "er"}, "latency": {"total_ms"}, "counters": {...}}
// where "parameters" is {"min_sigma", "max_sigma", "num_sigma", "threshold",
// "overlap"}, "core" is the window's core (its tile when the core is unset),
// enums are their proto names, and "counters" all of SessionCounters.
// An atom's "amorphous" appears only when true and "sublattice" only when
// > 0 (the page reads a missing key as false and none).
//
// Numbers: positions and sizes in px (atoms' x, y, sigma; contours) to
// 0.01 px, trailing zeros dropped (a 512² frame: the page draws at most 1.5
// preview px per frame px); every other double exactly (the shortest text
// that reads back to the same double, so a front point's threshold matches
// the daemon's); integers as JSON numbers (uint64 too: counters stay far
// below 2^53); NaN and infinities as null.
//
// Thread-safety: pure functions.
#ifndef LOGSTAR_CLIENTS_CLI_CONSOLE_JSON_H_
#define LOGSTAR_CLIENTS_CLI_CONSOLE_JSON_H_

#include <string>

#include "logstar/v1/result.pb.h"
#include "logstar/v1/service.pb.h"

namespace logstar::cli {

// How many ranked regions of interest the page draws (and the JSON holds).
inline constexpr int kConsoleRegionsOfInterest = 5;

// Appends `result` as the page's JSON (the shape above) to `out`.
void AppendConsoleResultJson(const v1::FrameResult& result, std::string* out);

// The preview as a PNG (8-bit grey, lossless) for a data: URL; empty when
// the preview has no pixels or they do not match its size. Uncompressed
// (stored deflate blocks, no row filter): a noisy micrograph barely
// compresses (OpenCV's fastest deflate saved 10 % of a 512² preview for
// about 30 times the time), and the page is read over loopback or a LAN.
std::string ConsolePreviewPng(const v1::FramePreview& preview);

// One Watch answer as the body of a server-sent `result` event, up to its
// per-page `skipped` count, which the caller appends with
// ConsoleEventEnd: "event: result\ndata: {\"preview_scale\":S,\"png\":\"BASE64\",
// \"result\":{...},\"skipped\":". Made once per answer and shared by every
// page watching the session (each has its own skipped count).
std::string ConsoleEventBody(const v1::WatchResponse& w);
// The end of a `result` event after ConsoleEventBody: "N}\n\n".
std::string ConsoleEventEnd(uint64_t skipped);

}  // namespace logstar::cli

#endif  // LOGSTAR_CLIENTS_CLI_CONSOLE_JSON_H_
