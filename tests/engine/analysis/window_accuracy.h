// Per-window accuracy of a frame's analysis against the generator's truth,
// for the warm-start quality checks (issue 21, item 1): the atoms a window
// reports (Atom::window) against the true columns inside its core, matched
// within 0.3 × the prior's nearest-neighbour distance (MatchToTruth).
#ifndef LOGSTAR_TESTS_ENGINE_ANALYSIS_WINDOW_ACCURACY_H_
#define LOGSTAR_TESTS_ENGINE_ANALYSIS_WINDOW_ACCURACY_H_

#include <vector>

#include "absl/status/statusor.h"
#include "engine/analysis/analyzer.h"
#include "engine/base/status_macros.h"
#include "engine/image/synth.h"
#include "engine/physics/accuracy.h"

namespace logstar::testing {

// One Accuracy per window of `analysis`, in window order.
inline absl::StatusOr<std::vector<Accuracy>> WindowAccuracy(const FrameAnalysis& analysis,
                                                            const SynthFrame& frame) {
  const double radius = 0.3 * frame.prior.NearestNeighborPx();
  std::vector<Accuracy> out;
  for (const WindowResult& w : analysis.windows) {
    const PixelRegion& core = w.window.core;
    auto inside = [&](double x, double y) {
      return x >= core.col0 - 0.5 && x < core.col0 + core.cols - 0.5 && y >= core.row0 - 0.5 &&
             y < core.row0 + core.rows - 0.5;
    };
    std::vector<PointXY> detected, truth;
    for (const Atom& a : analysis.atoms) {
      if (a.window == w.window.index) detected.push_back({a.x, a.y});
    }
    for (const SynthAtom& a : frame.atoms) {
      if (inside(a.x, a.y)) truth.push_back({a.x, a.y});
    }
    LOGSTAR_ASSIGN_OR_RETURN(Accuracy a, MatchToTruth(detected, truth, radius));
    out.push_back(a);
  }
  return out;
}

}  // namespace logstar::testing

#endif  // LOGSTAR_TESTS_ENGINE_ANALYSIS_WINDOW_ACCURACY_H_
