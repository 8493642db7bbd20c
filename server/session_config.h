// A session's settings, parsed once ("parse, don't validate"): the
// SessionSettings message a client sends becomes the engine's validated
// options here and nowhere else, and a Session holds the result, so what a
// session runs with can no longer be invalid or converted twice.
//
// Each bound is checked in one place. What the engine accepts its own
// Validate() methods check (AnalyzerOptions, PhysicsPrior, SteeringOptions),
// their messages prefixed with where the field lives in the request
// ("settings.analysis.window must be 0 or >= 16 px, got 8"). This file adds
// only what exists on the wire alone (enum values, a missing pixel size) and
// the daemon's own policy caps (SettingsCaps): limits on what one session
// may cost, not rules of the analysis.
//
// Errors are INVALID_ARGUMENT naming the field by its path in the request
// (settings.prior.*, settings.analysis.*, settings.steering.*, ...).
//
// Thread-safety: pure functions; SessionConfig is a value.
#ifndef LOGSTAR_SERVER_SESSION_CONFIG_H_
#define LOGSTAR_SERVER_SESSION_CONFIG_H_

#include <cstdint>
#include <optional>
#include <string>

#include <opencv2/core.hpp>

#include "absl/status/statusor.h"
#include "engine/analysis/analyzer.h"
#include "engine/analysis/steering.h"
#include "engine/base/context.h"
#include "engine/physics/lattice.h"
#include "engine/physics/physics_prior.h"
#include "logstar/v1/session.pb.h"

namespace logstar::server {

// The daemon's limits on what a session may ask for.
struct SettingsCaps {
  // settings.analysis[.amorphous].evaluations, >= 1: the per-window work
  // budget. A search's model work grows with the cube of its evaluations
  // (one 128² window, one thread: 100 evaluations 0.25 s, 200 1.75 s, 400
  // 23 s, 800 430 s), and cancellation is checked between evaluations, so
  // past a few hundred one frame holds a slot for minutes and an abandoned
  // one for seconds (issue 16, item 2). 500 is ten times the published
  // budget.
  int max_evaluations = 500;
  int max_regions = 1000;              // settings.steering.max_regions
  uint32_t max_queue_capacity = 1024;  // settings.queue_capacity
  // The per-frame work budget, in evaluation-pixels (FrameWork): what one
  // frame's searches may cost when every window is tuned, so that no frame
  // holds an analysis slot for long however its settings combine
  // evaluations, window and stride (issue 16, item 2). An evaluation costs
  // about 10-15 ns per window pixel on the 2-core reference machine, so the
  // default, 2^34 (1.7e10), is a few minutes of one frame's work: 20 times
  // the default settings (50 evaluations, no overlap) on the largest frame,
  // and every evaluation count within max_evaluations for both stages
  // without overlapping windows; overlap multiplies the work (stride =
  // window / 2: four times).
  int64_t max_frame_work = int64_t{1} << 34;
  // The largest frame the daemon takes (its max_pixels): the frame size the
  // work is estimated at, since the settings are checked before any frame.
  int64_t max_frame_pixels = int64_t{4096} * 4096;
};

// The work of one frame of `max_frame_pixels` pixels analysed with
// `analyzer` when every window of both stages is tuned, in
// evaluation-pixels: for LoG* and, when enabled, the amorphous stage,
// evaluations × the frame's pixels × (window / stride)² (how many times the
// windows cover the frame; 1 for window 0, one window). An estimate of a
// frame's search cost, not a measurement: each evaluation scans its
// window's pixels once (the optimiser's own model work, which grows with
// the evaluations rather than the pixels, is not counted; max_evaluations
// bounds it).
double FrameWork(const AnalyzerOptions& analyzer, int64_t max_frame_pixels);

// settings.prior parsed: a prior to analyse with, or `auto`, a prior to
// derive from the stream's first frame (DeriveFramePrior).
struct PriorSetting {
  // `auto: true`, or a prior that gives pixel_size_angstrom and nothing else.
  bool derive = false;
  // Given: the prior, its pixel_size_angstrom 0 when the frames give it.
  // With derive only pixel_size_angstrom is set (0: the frames', or none).
  PhysicsPrior prior;
};

struct SessionConfig {
  v1::SessionSettings settings;  // as sent: reported back and saved with the session
  AnalyzerOptions analyzer;
  // Its prior's pixel_size_angstrom is 0 when the frames give it (see PriorAt).
  PriorSetting prior;
  SteeringOptions steering;
  v1::OverloadPolicy overload_policy = v1::OVERLOAD_POLICY_LATEST_WINS;  // never UNSPECIFIED
  uint32_t queue_capacity = 0;                                           // 0: the server's default

  // A given prior at a frame's pixel size when it gives one (> 0), else at
  // the settings'. Fails, naming settings.prior.*, without either, or when
  // the pixel size samples the lattice too coarsely. Not for an auto prior
  // (FAILED_PRECONDITION): that one comes from DeriveFramePrior.
  absl::StatusOr<PhysicsPrior> PriorAt(double frame_pixel_size_angstrom) const;
};

// The prior as given (pixel_size_angstrom 0: from the frames), checked as far
// as it can be without a pixel size, or `auto`; errors name
// "settings.prior.<field>" (sublattices included: "settings.prior.
// sublattices..." as the engine's PhysicsPrior::Validate names them).
// Every reader of a prior goes through it: sessions, and the CLI's prior
// files (protobuf JSON mapping, then this), so both accept the same files.
absl::StatusOr<PriorSetting> ParsePrior(const v1::PhysicsPrior& prior);

// The pixel size an auto prior is derived at: the frame's (> 0), else the
// settings' (> 0), else `fallback` (> 0: e.g. the one the stream used
// before), else none (the derived prior is then in pixels).
std::optional<double> AutoPixelSize(const PriorSetting& setting, double frame_pixel_size_angstrom,
                                    double fallback = 0.0);

// The lattice of one frame (the raw pixels as decoded, any supported depth)
// as the analyzer measures it: normalised with options.normalize, measured
// with the analyzer's lattice options (engine/physics/lattice.h
// MeasureLattice). A frame without lattice is not an error (found = false).
absl::StatusOr<LatticeMeasurement> MeasureFrameLattice(const cv::Mat& frame,
                                                       const AnalyzerOptions& options,
                                                       ExecutionContext* context);

// An auto prior from one frame: its lattice (MeasureFrameLattice) made a
// prior (engine/physics/lattice.h DerivePrior) at
// `pixel_size_angstrom` (nullopt: the prior is in pixels). A frame without
// lattice is INVALID_ARGUMENT "<field>: auto: the frame shows no lattice:
// <reason>". `context` may be null. Shared by sessions and `logstar analyze
// --prior auto`.
// The analyzer options for a derived prior. One in pixels (no pixel size
// anywhere) has no ångström to read column_sigma_angstrom in, so the column
// width becomes kColumnSigmaPerSpacing × its nearest-neighbour spacing, in
// its pixel units; other priors keep the options. INVALID_ARGUMENT naming
// settings.analysis.column_sigma_angstrom when that was given explicitly
// (`column_sigma_given`): a width in Å needs a pixel size.
inline constexpr double kColumnSigmaPerSpacing = 0.18;  // the defaults': 0.45 Å / YBCO's 2.55 Å
absl::StatusOr<AnalyzerOptions> OptionsForDerived(AnalyzerOptions options,
                                                  const DerivedPrior& derived,
                                                  bool column_sigma_given);

absl::StatusOr<DerivedPrior> DeriveFramePrior(const cv::Mat& frame, const AnalyzerOptions& options,
                                              std::optional<double> pixel_size_angstrom,
                                              ExecutionContext* context,
                                              const std::string& field = "settings.prior");

// `prior` (from ParsePrior) at a frame's pixel size (> 0 replaces the
// prior's), fully checked. INVALID_ARGUMENT when neither gives one.
absl::StatusOr<PhysicsPrior> ResolvePrior(PhysicsPrior prior, double frame_pixel_size_angstrom);

// The one conversion of a session's settings. A prior without pixel size is
// checked as far as it can be until frames give one. Settings whose
// FrameWork exceeds caps.max_frame_work are RESOURCE_EXHAUSTED naming the
// estimate, the budget and what sets it (settings.analysis.evaluations,
// window, stride).
absl::StatusOr<SessionConfig> ParseSessionSettings(const v1::SessionSettings& settings,
                                                   const SettingsCaps& caps = {});

}  // namespace logstar::server

#endif  // LOGSTAR_SERVER_SESSION_CONFIG_H_
