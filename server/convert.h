// Where proto messages (proto/logstar/v1) and engine types meet: frames to
// images, engine results (with their steering) and caches to messages and
// back. Settings become engine options in server/session_config.h. Nothing
// else in server/ reads pixel bytes.
//
// Errors are INVALID_ARGUMENT naming the offending field by its path in the
// request (e.g. "frame.pixels.data", "cache.windows"),
// or RESOURCE_EXHAUSTED for frames over the server's pixel limit.
//
// Coordinates pass through unchanged: x = column, y = row, px, origin at the
// centre of the top-left pixel, on both sides.
//
// Thread-safety: pure functions.
#ifndef LOGSTAR_SERVER_CONVERT_H_
#define LOGSTAR_SERVER_CONVERT_H_

#include <cstdint>
#include <optional>
#include <vector>

#include <google/protobuf/timestamp.pb.h>
#include <opencv2/core.hpp>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "engine/analysis/analyzer.h"
#include "engine/analysis/steering.h"
#include "engine/physics/physics_prior.h"
#include "logstar/v1/daemon.pb.h"
#include "logstar/v1/frame.pb.h"
#include "logstar/v1/result.pb.h"
#include "logstar/v1/session.pb.h"
#include "proto/wire/pixels.h"
#include "server/session_config.h"
#include "server/shared_memory.h"

namespace logstar::server {

// ---- Frames ----

struct DecodedFrame {
  // valid rows × width, of the wire's element type (CV_8U, CV_16U, CV_16S,
  // CV_32F, CV_64F). For pixels in the message usually a view of
  // frame.pixels().data() (no copy): the frame must outlive it.
  cv::Mat image;
  // The image's minimum and maximum, measured with its finite check, for
  // the engine's normalisation (LogStarAnalyzer::Analyze with a range).
  // Set by DecodeFrame; a frame made otherwise leaves it empty, and the
  // engine measures the range itself.
  std::optional<PixelRange> range;
  bool partial = false;              // valid_rows < height
  double pixel_size_angstrom = 0.0;  // from the frame; 0 when it gives none
};

// What can be checked without touching the pixels (cheap enough for a
// reactor): RESOURCE_EXHAUSTED when width × height exceeds max_pixels.
absl::Status CheckFrameLimits(const v1::Frame& frame, int64_t max_pixels);

// Everything: limits, dtype, shape against byte count, valid_rows, pixel
// sizes, finite pixels (the first bad pixel's x and y are named), and in
// the same pass the pixels' range (server/pixel_check.h). Pixels
// in shared memory are copied out of `shared_memory` (INVALID_ARGUMENT
// naming frame.pixels.shared_memory without one, or for a region not held
// or too short), with the context's threads when one is given; pixels in
// the message are viewed in place.
absl::StatusOr<DecodedFrame> DecodeFrame(const v1::Frame& frame, int64_t max_pixels,
                                         const SharedMemoryRegistry* shared_memory = nullptr,
                                         ExecutionContext* context = nullptr);

// ---- Results and caches ----

// The prior a frame ran with, as its result reports it (FrameResult.prior_used).
struct PriorInUse {
  PhysicsPrior prior;
  bool derived = false;      // from a frame (settings.prior.auto)
  bool pixel_units = false;  // derived without pixel size: its lengths are px
};
void PriorUsedToProto(const PriorInUse& prior, v1::PriorUsed* out);
// Structural only (the prior is not validated); an unset message gives an
// empty prior.
PriorInUse PriorUsedFromProto(const v1::PriorUsed& prior);

// Fills the analysis part of a result: atoms (with their 1-based
// sublattice), windows, rewards, cache counts, regions of interest, the
// prior's warnings, the measured lattice, crystalline shares, sublattice
// counts, and the engine's stages of the latency. `pixel_size_angstrom`
// (the frame's) gives the amorphous regions' sizes in ångström; `prior`
// (optional) fills prior_used, and its pixel size (unless in pixel units)
// the measured lattice's ångström figures.
void FrameAnalysisToProto(const FrameAnalysis& analysis, const std::vector<SteeringRegion>& regions,
                          double pixel_size_angstrom, v1::FrameResult* out,
                          const PriorInUse* prior = nullptr);

void CacheToProto(const LogStarAnalyzer::CacheSnapshot& cache, v1::CacheContents* out);
// Structural checks only; LogStarAnalyzer::RestoreCache checks the rest.
absl::StatusOr<LogStarAnalyzer::CacheSnapshot> CacheFromProto(const v1::CacheContents& cache);

google::protobuf::Timestamp ToProtoTime(absl::Time t);
absl::Time FromProtoTime(const google::protobuf::Timestamp& t);

// ---- The client's direction (the CLI and logstar::Client users) ----

// Images to the wire's PixelData and back live in proto/wire/pixels.h
// (logstar_wire, which a client links without the engine); named here too
// for the CLI's and the tests' sake.
using wire::ImageToPixels;
using wire::PixelsToImage;
v1::PhysicsPrior PriorToProto(const PhysicsPrior& prior);
// `auto: true` with its pixel size when derived, else the prior.
v1::PhysicsPrior PriorToProto(const PriorSetting& prior);
// The message's fields as the engine's prior (gamma_deg 0 read as 90),
// unchecked: ParsePrior (session_config.h) is the reader that checks.
PhysicsPrior PriorFromProto(const v1::PhysicsPrior& prior);
// Settings whose analysis on the server equals LogStarAnalyzer(options,
// prior); the overload policy and queue are left to the caller.
v1::SessionSettings SettingsFromOptions(const AnalyzerOptions& options, const PhysicsPrior& prior);
// The same with a prior that may be auto (derived by the server from the
// stream's first frame).
v1::SessionSettings SettingsFromOptions(const AnalyzerOptions& options, const PriorSetting& prior);
// A result's atoms (sublattice as the engine's index, -1 none), windows,
// rewards, cache counts, warnings, measured lattice, crystalline shares and
// sublattice counts as the engine's type; the times are the server's
// (normalize and LoG stages, total from arrival to answer). The prior used
// is PriorUsedFromProto(result.prior_used()).
FrameAnalysis AnalysisFromResult(const v1::FrameResult& result);

}  // namespace logstar::server

#endif  // LOGSTAR_SERVER_CONVERT_H_
