// LogStarAnalyzer: LoG* over sliding windows of a stream of frames, with a
// cache of tuned parameters per window position.
//
// A frame is cut into windows of `window` × `window` pixels every `stride`
// pixels (the last window of a row or column is moved in to end at the
// frame's edge, so every pixel is covered and no window is clipped). Each
// window is analysed on its own pixels plus a halo (context for the LoG
// kernels and for pruning), and owns the atoms whose centre falls in its
// core: with overlapping windows the cores split the overlaps at their
// middle, so the cores tile the frame and each atom is reported by exactly
// one window. Atoms of neighbouring windows closer than half the
// nearest-neighbour distance across a core boundary are the same column
// seen twice; the weaker one is dropped.
//
// The crystalline area (issue 15, item 2). On the first frame of a
// geometry, with the lattice (MeasureLattice), the analyzer maps where the
// frame shows that lattice (MeasureCrystallinity, engine/physics/
// crystallinity.h: ~5 ms on 1024², 24 ms on 2048²); both are kept until the
// cache is emptied, since a stream keeps its sample in view. Expected counts
// and both reward pairs are then taken over each window's crystalline part
// only (engine/physics/rewards.h), and a detection off the crystal is
// reported only when it looks like a column by itself (CrystalArea,
// engine/analysis/logstar.h; the frame's pixel noise for that is estimated
// on every frame, under 1 ms on 1024²).
// A window whose tile is less than min_crystal_share crystalline is not
// tuned toward a count (a count over a sliver of crystal is a count of a
// few columns, and over none it would pull noise in): it detects with the
// parameters of the nearest tuned window (tile centres; the lowest index
// on a tie) on the same frame, so that vacuum keeps the threshold that
// parts columns from noise, and WindowResult::crystal_note says so. When no
// window reaches the share, the one with the most crystal is tuned (and
// says so). The tuned windows run first, in parallel, then the lent ones.
// A frame without a lattice, or whose lattice shows nowhere clearly enough
// to map, keeps the published behaviour (whole-tile counts, every window
// tuned) and FrameAnalysis::crystal_note says why. So does, silently, a
// frame at least 98 % crystalline (all crystal but a few pixels at its
// edge): a crystal frame is analysed exactly as before.
//
// The cache: the first frame tunes every window (a miss). The next frames
// run each window with its cached parameters — one exact detection and the
// rewards, no search (a hit) — and re-tune a window only when its rewards
// drift more than drift_tolerance from their values at tuning time (a
// re-tune, warm-started from the cached front; see warm starts below). A
// change of frame size, window layout or prior empties the cache. A lent
// window's entry holds the lent parameters and no front: it is a hit while
// the lender keeps its parameters, and follows a re-tuned lender without
// evaluations (counted as re-tuned). An entry without a front found at a window that has crystal
// enough (e.g. restored from another stream) is tuned, warm-started from
// it. RestoreCache takes the saved lattice and crystalline map when the
// snapshot carries them (the daemon's state files do), so a restored stream
// counts over the same crystal; without them the next frame measures afresh.
//
// Warm starts (issue 21, item 1; AnalyzerOptions::warm_start, on by
// default). The windows of a frame almost always share the crystal and the
// imaging, so searching each from nothing repeats work. The tuned windows
// run in three phases, each in parallel:
//  1. When more windows than seed_windows + 1 are to be tuned with nothing
//     cached, seed_windows of them, spread over the frame, are tuned from
//     nothing (else all of them); every cached window is checked for drift.
//  2. The same for the drifted windows: seed_windows of them (else all) are
//     re-tuned, each from its own front.
//  3. Every other window first detects with its nearest seed's chosen
//     point (phase 1's for a fresh window, phase 2's for a drifted one),
//     and keeps the seed's front without a search when its rewards come
//     within adopt_tolerance of the seed's (WindowResult::adopted; with the
//     lattice pair the front's points are scored on the window and it
//     chooses among them itself): a dose or focus change dims a region of
//     windows alike, and a crystal's windows differ in the count mostly by
//     where the tile cuts the lattice. Otherwise a fresh window starts from
//     the seeds' chosen points and points along the nearest seed's front, a
//     drifted one from its own front.
// A warm search runs in a trust region around its starting points
// (BoundsAround, engine/analysis/logstar.h: a sigma grid of fewer scales, a
// higher response floor), with a short budget, and stops once its model
// expects no point to add min_relative_improvement of its front's
// hypervolume (MoboOptions::min_relative_improvement). A drifted window's
// threshold is searched whole. A search whose chosen point ends on a side
// of its region that the whole space does not have opens that side and
// runs again from its front (WindowResult::widened), so the region never
// holds the answer in.
// Measured on generated frames against the truth, per window
// (tests/bench/warm_start_quality.cc, tests/bench/first_result.cc): mean F1
// as independent tuning's within the spread of two independent runs; the
// 2048² first frame's windows and a drift re-tune of half of them for a
// fraction of the time (docs/performance.md). Results do not depend on the
// thread count.
//
// The amorphous stage (optional, engine/amorphous/amorphous.h) runs on the frame's
// atoms after LoG*, over windows of its own (the whole frame by default),
// with a cache of the same kind: the first frame tunes the GMM parameters of
// each of its windows; the next reuse them with the PCA basis and lattice
// translations found at tuning (patches, projection and one mixture fit, no
// search; the evidence, amorphous.h, is the one read at tuning), and re-tune
// a window, warm-started from its cached front, when its result drifts:
// when its amorphous area moves by more than drift_tolerance of the window
// from its value at tuning (a region grew, shrank, appeared or went: the
// re-tuning reads the frame's evidence afresh), or when the crystal's noise
// floor in feature space moves by more than floor_drift_ratio either way
// (the lattice, focus or dose changed, so the cached basis and translations
// no longer describe the frame).
// Its windows default to the whole frame because the stage measures
// disorder against the crystal around it: a window that is all amorphous
// has no crystal to compare with and shows no region.
// Each window's result carries the stage's verdict (confident or uncertain,
// with a code and a reason; amorphous.h), read against the evidence it was
// scored with (a cached window's: the tuning frame's); a skipped window is
// uncertain (kNotRun). The frame's verdict is its first uncertain window's
// (prefixed with the window when there are several), else confident.
// The frame's regions get ids that last while a region overlaps its
// predecessor (engine/amorphous/region_tracker.h). A region smaller than
// min_share of the frame is reported only when it continues a tracked one
// of at least half that (hysteresis: single amorphous atoms flickering in
// the noise would otherwise change the count from frame to frame); its
// atoms keep their amorphous flag. The tracks are kept per
// analyzer (one stream), saved and restored with the cache, and reset
// whenever the cache is emptied (new geometry, SetPrior, ClearCache).
//
// Windows are analysed in parallel in the context's arena; results do not
// depend on the thread count.
//
// Thread-safety: Analyze() calls are serialised internally (one stream per
// analyzer); the accessors may be called from any thread.
#ifndef LOGSTAR_ENGINE_ANALYSIS_ANALYZER_H_
#define LOGSTAR_ENGINE_ANALYSIS_ANALYZER_H_

#include <atomic>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <opencv2/core.hpp>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "engine/amorphous/amorphous.h"
#include "engine/amorphous/region_tracker.h"
#include "engine/analysis/logstar.h"
#include "engine/base/context.h"
#include "engine/base/mutex.h"
#include "engine/image/normalize.h"
#include "engine/log/gaussian_fit.h"
#include "engine/physics/crystallinity.h"
#include "engine/physics/physics_prior.h"
#include "engine/physics/rewards.h"
#include "engine/physics/sublattice.h"

namespace logstar {

struct Window {
  int index = 0;     // row-major over the layout
  PixelRegion tile;  // the window's pixels: rewards and tuning
  PixelRegion core;  // where its atoms must lie to be reported by it
};

// Windows of size `window` every `stride` pixels over a width × height frame
// (a window larger than the frame shrinks to it). window >= 16, 1 <= stride <= window.
absl::StatusOr<std::vector<Window>> LayoutWindows(int width, int height, int window, int stride);

// The amorphous stage of a stream (see the file comment).
struct AmorphousStageOptions {
  bool enabled = false;
  int window = 0;  // px; 0 = the whole frame is one window (recommended)
  int stride = 0;  // px; 0 = window
  // Re-tune when the amorphous area moves by more than this fraction of the
  // window from its value at tuning (see the file comment).
  double drift_tolerance = 0.1;  // > 0
  // Re-tune when the noise floor leaves [floor / ratio, floor × ratio] of
  // its value at tuning.
  double floor_drift_ratio = 4.0;  // > 1
  AmorphousOptions options;
  RegionTrackerOptions tracking;  // region ids across frames

  absl::Status Validate() const;
};

// Warm starts (issue 21, item 1): the windows of a frame almost always share
// the crystal and the imaging, so what one window's search found is where
// another's should start. See the file comment.
struct WarmStartOptions {
  bool enabled = true;
  // Windows tuned from nothing on a frame with nothing cached: spread over
  // the frame (the tuned window nearest the centre of each cell of a
  // ceil(√n) × ceil(√n) grid, first n). A frame with no more windows to tune
  // than seed_windows + 1 tunes them all from nothing.
  int seed_windows = 4;  // >= 1
  // A fresh window starts from every seed's chosen point, then points spread
  // along the nearest seed's front, at most this many in all.
  int max_points = 8;  // >= 1
  // Budget of a warm search, the points it starts from included (the budget
  // grows to hold them all plus two); a search and the rounds that open its
  // region's sides together never exceed logstar.optimizer.num_evaluations.
  int evaluations = 16;  // >= 2
  // The warm search stops once the model expects no point to add this share
  // of the front's hypervolume (MoboOptions::min_relative_improvement).
  double min_relative_improvement = 0.01;  // >= 0
  // The trust region: the box of the points it starts from, grown on each
  // side by this share of each parameter's range (BoundsAround). A search
  // whose chosen point ends on a side of the region that is not a side of
  // the whole space opens that side to the whole range and runs again from
  // its front (WindowResult::widened).
  double margin = 0.08;  // in [0, 1]
  // The same for a window re-tuned for drift, around its own front (its
  // threshold is searched whole): what drifted may have moved its scales too.
  double drift_margin = 0.2;  // in [0, 1]
  // Adoption: a window that would start warm first detects with its nearest
  // seed's chosen point (a drifted window: its nearest drift seed's, see the
  // file comment). When both rewards of the pair searched then come within
  // adopt_tolerance of the seed's, or better, the window keeps the seed's
  // front without a search (WindowResult::adopted): with the published pair
  // a front of one point, that point; with the lattice pair every point of
  // the seed's front scored on the window (one detection each), the
  // window's front the non-dominated ones among them and its choice by the
  // session's rule, so the window keeps a trade-off to choose on (adopting
  // the chosen point alone left one-point fronts). A lattice-pair window
  // adopts only when its front keeps at least three of the seed's points
  // (all, when the seed has fewer), and only on a fresh frame: a drifted
  // window's trade-off moved, and adopting its drift seed's lost 0.013 of
  // F1 on tests/engine/analysis/warm_start_test.cc's dimmed frame (0.009
  // searching). Else it searches as above (those detections are not
  // counted). 0.05: a crystal's windows differ in their count by up to 5 %
  // by where the tile cuts the lattice (2048² YBCO), and in misses and
  // spurious by as much.
  bool adopt = true;
  double adopt_tolerance = 0.05;  // >= 0, in reward units

  absl::Status Validate() const;
};

struct AnalyzerOptions {
  int window = 256;  // px; 0 = the whole frame is one window
  int stride = 0;    // px; 0 = window (no overlap)
  LogStarOptions logstar;
  NormalizeOptions normalize;
  // A cached window is re-tuned when |QC - QC at tuning| or |ER - ER at
  // tuning| exceeds this (rewards are fractions of the expected count), or
  // with the lattice pair |misses - misses at tuning| or |spurious -
  // spurious at tuning| (fractions of sites and of detections).
  double drift_tolerance = 0.1;  // > 0
  // How windows without a useful cache are tuned: from the seed windows'
  // fronts, and a drifted window from its own (see WarmStartOptions).
  WarmStartOptions warm_start;
  AmorphousStageOptions amorphous;
  // With a prior that lists sublattices every atom is labelled with one
  // (engine/physics/sublattice.h); these are the classifier's options.
  SublatticeOptions sublattices;
  // Report only the atoms of this sublattice (a name in the prior's
  // sublattices); empty = all atoms. The atoms of all sublattices are still
  // detected, tuned on and counted (rewards, FrameAnalysis::sublattices):
  // the filter applies to the atoms reported.
  std::string sublattice;
  // How far the prior may be from the lattice measured on the frame before
  // every result carries a warning (engine/physics/lattice.h, CheckPrior).
  PriorTolerances prior_tolerances;
  // Where the frame shows its lattice (engine/physics/crystallinity.h), and
  // the share of a window's tile that must show it for the window to be
  // tuned toward a count (see the file comment). A tenth of a 256² tile of
  // perovskite holds about 13 columns, the fewest a count is worth tuning
  // toward; below it the tile is all but vacuum or amorphous.
  CrystallinityOptions crystallinity;
  double min_crystal_share = 0.1;  // (0, 1]

  absl::Status Validate() const;
};

enum class CacheState {
  kMiss,     // nothing cached: tuned
  kHit,      // cached parameters used
  kRetuned,  // cached parameters drifted: tuned again, warm-started
};
const char* CacheStateName(CacheState state);

struct WindowResult {
  Window window;
  CacheState state = CacheState::kMiss;
  LogParameters parameters;       // used on this frame
  Rewards rewards;                // of this frame's atoms in the tile
  Rewards tuned_rewards;          // at tuning time (drift is measured from these)
  std::vector<FrontPoint> front;  // the cached front
  int chosen = 0;                 // index into front
  int evaluations = 0;            // objective evaluations spent on this frame
  // With warm starts: the points the search started from (0: from nothing,
  // or not tuned on this frame), and whether its chosen point ended on a
  // side of the trust region, so that the side was opened and the search
  // ran again (its evaluations count every round).
  int warm_points = 0;
  bool widened = false;
  // With warm starts: the window kept its nearest seed's front (with the
  // published pair its one point) without a search
  // (WarmStartOptions::adopt).
  bool adopted = false;
  int num_atoms = 0;  // atoms owned (in the core, after seam merging)
  double ms = 0.0;
  // The atoms rewards.num_erroneous counts (px, frame coordinates): of the
  // window's own detection in its tile, so near a seam they may include an
  // atom another window reports, or one dropped as seen twice.
  std::vector<PointXY> er_flagged;
  // The objective pair the window was tuned with (kPublished when the
  // lattice pair was asked for and the frame shows no lattice, or shows one
  // whose crystal could not be mapped: lattice_note says why), and with the
  // lattice pair this frame's (misses, spurious).
  ObjectivePair objectives = ObjectivePair::kPublished;
  std::string lattice_note;
  std::optional<LatticeRewards> lattice_rewards;
  // Share of the tile that shows the frame's lattice (its expected counts
  // are over that area; 1 when counts are over the whole tile, see
  // FrameAnalysis::crystal_note). Not empty when the tile has too little
  // crystal to be tuned toward a count: says so and what was done instead
  // (the window whose parameters it used; its evaluations are 0 and its
  // front empty).
  double crystalline_fraction = 1.0;
  std::string crystal_note;
};

struct Atom {
  double x = 0.0;      // column, px (sub-pixel when refinement is on)
  double y = 0.0;      // row, px
  double sigma = 0.0;  // px, the LoG scale it was found at
  float response = 0.0f;
  int window = 0;  // owner
  // Index into the prior's sublattices; -1 when the prior has none or the
  // atom was not assigned (engine/physics/sublattice.h).
  int sublattice = -1;
  // With RefineMode::kGaussian: the column's fit (frame coordinates; its x,
  // y are the atom's). Its status says whether the fit succeeded; when it
  // failed, x, y are the detection's and x_err, y_err the fallback.
  // Unset: not fitted (another refinement, or a result from before it).
  std::optional<ColumnFit> fit = std::nullopt;
};

// One window of the amorphous stage on one frame.
struct AmorphousWindowResult {
  Window window;
  CacheState state = CacheState::kMiss;
  // Not empty when the stage could not run on this window (e.g. too few
  // atoms, or no lattice period): its atoms stay unclassified and nothing
  // is cached for it.
  std::string skipped;
  AmorphousParameters parameters;             // used on this frame
  Objectives2 objectives = {0.0, 0.0};        // of this frame
  Objectives2 tuned_objectives = {0.0, 0.0};  // at tuning time
  AmorphousEvidence evidence;  // this frame's when tuned, the tuning frame's when cached
  std::vector<AmorphousFrontPoint> front;  // the cached front
  int chosen = 0;                          // index into front
  int evaluations = 0;                     // spent on this frame
  int num_classified = 0;                  // owned atoms classified
  int num_amorphous = 0;                   // owned atoms amorphous
  double ms = 0.0;
  AmorphousVerdict verdict;  // kNotRun when skipped
};

// The amorphous stage's result for a frame.
struct FrameAmorphous {
  std::vector<AtomClass> atoms;  // parallel to FrameAnalysis::atoms
  RegionSet regions;             // over the whole frame, px; Region::id set (file comment)
  std::vector<AmorphousWindowResult> windows;
  AmorphousVerdict verdict;  // the frame's (see the file comment)
  int hits = 0, misses = 0, retunes = 0, skipped = 0;
  double ms = 0.0;
};

struct FrameAnalysis {
  int width = 0;
  int height = 0;
  std::vector<Atom> atoms;  // by window, then decreasing response
  std::vector<WindowResult> windows;
  Rewards rewards;  // of all atoms over the whole frame
  // With the lattice pair and a lattice found: the pair of all atoms over
  // the whole frame (counts only: no responses under the threshold).
  std::optional<LatticeRewards> lattice_rewards;
  int hits = 0, misses = 0, retunes = 0;
  int seam_duplicates = 0;                  // atoms dropped as seen twice across a seam
  std::optional<FrameAmorphous> amorphous;  // when the stage is enabled
  // The prior checked against the lattice measured on the frame (on the
  // first frame of a geometry; repeated on every result until the cache is
  // emptied): empty when they agree or the frame shows no lattice.
  std::vector<PriorWarning> warnings;
  // The frame's lattice as measured (found = false with a reason when it
  // shows none); not set when it was not measured.
  std::optional<LatticeMeasurement> lattice;
  // Share of the frame that shows the lattice; expected counts are over it.
  double crystalline_fraction = 1.0;
  // Not empty when expected counts are over the whole frame instead (the
  // frame shows no lattice, or it could not be mapped): says why.
  std::string crystal_note;
  // With prior sublattices: per-sublattice counts over the frame, in the
  // prior's order (all of them, also when only one is reported), and a note
  // when the frame does not show them as the prior says.
  std::vector<SublatticeCount> sublattices;
  std::string sublattice_note;
  double normalize_ms = 0.0;
  double windows_ms = 0.0;    // LoG* over the windows
  double amorphous_ms = 0.0;  // the amorphous stage
  double total_ms = 0.0;

  std::string Summary() const;
};

// What the cache holds for one window position.
struct CachedWindow {
  LogParameters parameters;
  Rewards tuned_rewards;
  std::vector<FrontPoint> front;
  int chosen = 0;
  ObjectivePair objectives = ObjectivePair::kPublished;  // the pair tuned with
  std::string lattice_note;
  // With the lattice pair: its rewards at tuning time, which drift is also
  // measured from (a cache saved without them drifts on QC and ER only).
  std::optional<LatticeRewards> tuned_lattice_rewards;
};

// What the cache holds for one window position of the amorphous stage.
struct CachedAmorphousWindow {
  AmorphousParameters parameters;
  Objectives2 tuned_objectives = {0.0, 0.0};
  std::vector<AmorphousFrontPoint> front;
  int chosen = 0;
  // What drift is measured from (see the file comment), and the evidence
  // cached frames are scored against.
  double tuned_area_fraction = 0.0;   // of the window's painted regions
  double tuned_evidence_area = 0.0;   // the evidence's, a_e
  double tuned_evidence_share = 0.0;  // the evidence's share of atoms, e
  double tuned_noise_floor = 0.0;     // squared feature units
  // The rest of the evidence at tuning, for the verdict on cached frames
  // (0 in caches saved before they were kept: no "below resolution").
  double tuned_evidence_bic_gain = 0.0;
  double tuned_evidence_separation = 0.0;
  double tuned_evidence_high_weight = 0.0;
  // The lattice translations and the PCA basis of the chosen patch size:
  // properties of the lattice and the imaging, kept so that a cached frame
  // skips the autocorrelation and the PCA.
  std::vector<PointXY> translations_px;
  PatchProjection projection;
};

class LogStarAnalyzer {
 public:
  static absl::StatusOr<std::unique_ptr<LogStarAnalyzer>> Create(const AnalyzerOptions& options,
                                                                 const PhysicsPrior& prior);

  // Normalises `frame` (any type NormalizeFrame takes) and analyses it.
  absl::StatusOr<FrameAnalysis> Analyze(const cv::Mat& frame, ExecutionContext* context);

  // A new prior (e.g. the operator changed magnification) empties the cache.
  absl::Status SetPrior(const PhysicsPrior& prior);
  void ClearCache();

  // The cache, per window of the current layout (empty before a frame).
  std::vector<std::optional<CachedWindow>> Cache() const;
  // Whether a frame of this size would find every window of both stages
  // cached (it may still drift and be re-tuned). Copies nothing.
  bool FullyCached(int width, int height) const;
  const AnalyzerOptions& options() const { return options_; }

 private:
  LogStarAnalyzer(const AnalyzerOptions& options, const PhysicsPrior& prior)
      : options_(options), prior_(prior) {}

  // Which windows are tuned and which borrow parameters: donors[i] == i for
  // a tuned window, else the tuned window it borrows from; use_mask false
  // when every window is tuned over its whole tile (no map, or a frame
  // counted whole). Fills the crystalline shares and notes of `result`.
  struct Roles {
    std::vector<int> donors;
    bool use_mask = false;
  };
  // `unmapped`: why a found lattice was not mapped (e.g. the frame is too
  // small for its cell), for the note.
  Roles WindowRoles(const std::vector<Window>& layout, const LatticeMeasurement* lattice,
                    const Crystallinity* crystal, const std::string& unmapped,
                    FrameAnalysis& result) const;
  // `lattice`: the frame's (null or not found: no lattice pair); `crystal`:
  // its crystalline area, frame coordinates (null: the whole tile).
  // `cancel` (may be null) stops the search between evaluations (CANCELLED;
  // `cache` is then untouched).
  // A window's detection in frame coordinates: its blobs and, with
  // RefineMode::kGaussian, their fits (same order; else empty).
  struct WindowColumns {
    std::vector<Blob> blobs;
    std::vector<ColumnFit> fits;
  };
  // `transferred`: the seed windows' fronts, where a window with nothing
  // cached starts with warm starts on (empty: from nothing).
  absl::Status AnalyzeWindow(const cv::Mat& image, const Window& w, const PhysicsPrior& prior,
                             const LatticeMeasurement* lattice, const CrystalArea* crystal,
                             std::optional<CachedWindow>& cache, ExecutionContext* context,
                             WindowResult& out, WindowColumns& columns,
                             const std::atomic<bool>* cancel,
                             absl::Span<const LogParameters> transferred) const;
  // A window's detection `d` in its context region `ctx` as its result: its
  // rewards and lattice pair, its ER-flagged atoms and its columns in frame
  // coordinates (`d`'s blobs and fits are moved out).
  static void TakeDetection(const PixelRegion& ctx, LogDetection& d, WindowResult& out,
                            WindowColumns& columns);
  // The cache check of a window with an entry: true for a hit (`out` and
  // `columns` filled, state kHit); false when it must be tuned (an entry
  // without a front, or drifted).
  absl::StatusOr<bool> CheckCached(const cv::Mat& image, const Window& w, const PhysicsPrior& prior,
                                   const LatticeMeasurement* lattice, const CrystalArea* crystal,
                                   const CachedWindow& cache, ExecutionContext* context,
                                   WindowResult& out, WindowColumns& columns) const;
  // Tunes a window that missed or drifted: from `transferred` (fresh), its
  // own front (drifted) or its lent parameters, first trying to adopt
  // `donor`'s choice (may be null; see WarmStartOptions::adopt).
  absl::Status TuneEntry(const cv::Mat& image, const Window& w, const PhysicsPrior& prior,
                         const LatticeMeasurement* lattice, const CrystalArea* crystal,
                         std::optional<CachedWindow>& cache, ExecutionContext* context,
                         WindowResult& out, WindowColumns& columns, const std::atomic<bool>* cancel,
                         absl::Span<const LogParameters> transferred,
                         const WindowResult* donor) const;
  // WarmStartOptions::adopt: true when the window took `donor`'s front
  // (`out`, `columns` and `cache` filled), false to search.
  absl::StatusOr<bool> Adopt(const cv::Mat& image, const Window& w, const PhysicsPrior& prior,
                             const LatticeMeasurement* lattice, const CrystalArea* crystal,
                             const WindowResult& donor, std::optional<CachedWindow>& cache,
                             ExecutionContext* context, WindowResult& out,
                             WindowColumns& columns) const;
  // The tuned windows (`tuned`, indices into `layout`, ascending) with warm
  // starts on, in three phases, each in parallel (see the file comment).
  absl::Status RunWarmPhases(const cv::Mat& image, const std::vector<Window>& layout,
                             const std::vector<int>& tuned, const PhysicsPrior& prior,
                             const LatticeMeasurement* lattice, const CrystalArea* crystal,
                             std::vector<std::optional<CachedWindow>>& cache,
                             ExecutionContext* context, const std::atomic<bool>* cancel,
                             FrameAnalysis& result, std::vector<WindowColumns>& columns) const;
  // The search of one window: warm-started in a trust region around `warm`
  // when warm starts are on and `warm` is not empty, else over the whole
  // space with the whole budget (warm-started from `warm`). `drifted`: `warm`
  // is the window's own front, which drifted (the threshold is searched
  // whole).
  struct Tuned {
    LogStarResult result;  // num_evaluations counts both searches when widened
    bool widened = false;  // see WindowResult::widened
  };
  absl::StatusOr<Tuned> TuneWindow(const cv::Mat& image, const PixelRegion& region,
                                   const PhysicsPrior& prior, const LatticeMeasurement* lattice,
                                   const CrystalArea* crystal, absl::Span<const LogParameters> warm,
                                   bool drifted, ExecutionContext* context,
                                   const std::atomic<bool>* cancel) const;
  // A window with too little crystal: detected with `donor`'s parameters.
  absl::Status BorrowWindow(const cv::Mat& image, const Window& w, const PhysicsPrior& prior,
                            const LatticeMeasurement* lattice, const CrystalArea* crystal,
                            const WindowResult& donor, const std::vector<Blob>& donor_blobs,
                            std::optional<CachedWindow>& cache, ExecutionContext* context,
                            WindowResult& out, WindowColumns& columns) const;
  // RefineMode::kGaussian: fits every merged atom's column on `image` (the
  // normalized frame) once, starting from `previous` (the last frame's
  // fits; RefineGaussian), moves the atoms to the fitted centres and sets
  // their fits. Returns the fits (the next frame's `previous`).
  absl::StatusOr<std::vector<ColumnFit>> RefineFrame(const cv::Mat& image,
                                                     absl::Span<const ColumnFit> previous,
                                                     ExecutionContext* context,
                                                     std::vector<Atom>& atoms) const;
  // One exact detection of window `w` with `parameters`, scored with the
  // pair they were tuned with; `ctx` receives the context region used.
  absl::StatusOr<LogDetection> DetectWith(const cv::Mat& image, const Window& w,
                                          const PhysicsPrior& prior,
                                          const LatticeMeasurement* lattice,
                                          const CrystalArea* crystal,
                                          const LogParameters& parameters, ObjectivePair objectives,
                                          ExecutionContext* context, PixelRegion& ctx) const;
  absl::Status AmorphousWindow(const cv::Mat& image, const Window& w,
                               const std::vector<Atom>& atoms, const PhysicsPrior& prior,
                               std::optional<CachedAmorphousWindow>& cache,
                               ExecutionContext* context, AmorphousWindowResult& out,
                               std::vector<std::pair<int, AtomClass>>& classes,
                               std::optional<RegionSet>& frame_regions,
                               const std::atomic<bool>* cancel) const;
  // Both Analyze overloads: `range` null when the frame's is not known.
  absl::StatusOr<FrameAnalysis> AnalyzeFrame(const cv::Mat& frame, const PixelRange* range,
                                             ExecutionContext* context,
                                             const std::atomic<bool>* cancel);
  absl::StatusOr<FrameAmorphous> RunAmorphousStage(
      const cv::Mat& image, const std::vector<Atom>& atoms, const PhysicsPrior& prior,
      const std::vector<Window>& layout, std::vector<std::optional<CachedAmorphousWindow>>& cache,
      ExecutionContext* context, const std::atomic<bool>* cancel) const;

  const AnalyzerOptions options_;
  mutable Mutex mu_;
  Mutex analyze_mu_;  // serialises Analyze
  PhysicsPrior prior_ ABSL_GUARDED_BY(mu_);
  int width_ ABSL_GUARDED_BY(mu_) = 0;
  int height_ ABSL_GUARDED_BY(mu_) = 0;
  std::vector<Window> layout_ ABSL_GUARDED_BY(mu_);
  std::vector<std::optional<CachedWindow>> cache_ ABSL_GUARDED_BY(mu_);
  std::vector<Window> amorphous_layout_ ABSL_GUARDED_BY(mu_);
  std::vector<std::optional<CachedAmorphousWindow>> amorphous_cache_ ABSL_GUARDED_BY(mu_);
  RegionTrackerState amorphous_tracks_ ABSL_GUARDED_BY(mu_);
  // With the lattice pair: the lattice measured on the first frame of the
  // current geometry (the frame sees it through more noise than a window;
  // a stream keeps its lattice, so later frames do not pay the FFT).
  // Emptied with the cache.
  std::optional<LatticeMeasurement> lattice_ ABSL_GUARDED_BY(mu_);
  // Where that frame showed the lattice (when it was found and mapped);
  // measured and emptied with lattice_.
  std::optional<Crystallinity> crystallinity_ ABSL_GUARDED_BY(mu_);
  std::string crystallinity_note_ ABSL_GUARDED_BY(mu_);  // why it is not mapped
  // Bumped whenever the cache is emptied, so a frame that ran meanwhile
  // does not put back what it tuned under the old state.
  uint64_t generation_ ABSL_GUARDED_BY(mu_) = 0;
  // With RefineMode::kGaussian: the last frame's fits (frame coordinates),
  // the next frame's starting models while the cache is the one they were
  // made under (last_fits_generation_ == generation_).
  std::vector<ColumnFit> last_fits_ ABSL_GUARDED_BY(mu_);
  uint64_t last_fits_generation_ ABSL_GUARDED_BY(mu_) = 0;

 public:
  // For the daemon (server/): cancelling a frame, saving and restoring the cache.

  // As Analyze(), but gives up with CANCELLED once *cancel (not null) is
  // true: checked after normalisation, after the lattice is measured, before
  // each window starts and, inside a window's search (LoG* and the amorphous
  // stage), before each evaluation (MoboOptions::cancel) and each exact
  // polish step. So a cancelled frame costs at most one evaluation and one
  // iteration's model work per window running (issue 16, item 2: a 128²
  // frame with window 0 and 500 evaluations frees its thread within
  // tens of milliseconds instead of finishing its budget, docs/operations.md).
  // The cache is then left as it was: nothing half-tuned is kept.
  absl::StatusOr<FrameAnalysis> Analyze(const cv::Mat& frame, ExecutionContext* context,
                                        const std::atomic<bool>* cancel);

  // As Analyze(frame, context, cancel) for a frame the caller has already
  // read (NormalizeFrame's PixelRange, engine/image/normalize.h: every pixel
  // finite, their minimum and maximum): min-max normalisation then reads
  // the frame once, with the same result as Analyze's. The daemon's entry
  // (server/session.h), whose own check of the pixels it received measures
  // the range on the way (server/pixel_check.h).
  absl::StatusOr<FrameAnalysis> Analyze(const cv::Mat& frame, const PixelRange& range,
                                        ExecutionContext* context, const std::atomic<bool>* cancel);

  // The cache with the geometry it belongs to.
  struct CacheSnapshot {
    int width = 0;  // of the frames it was tuned on; 0 before the first frame
    int height = 0;
    std::vector<Window> layout;
    std::vector<std::optional<CachedWindow>> windows;  // one per layout window
    // The amorphous stage's, when it is enabled: its layout and one entry
    // per window of it (both empty before the first frame).
    std::vector<Window> amorphous_layout;
    std::vector<std::optional<CachedAmorphousWindow>> amorphous;
    // The amorphous regions' identities (empty when nothing was tracked).
    RegionTrackerState amorphous_tracks;
    // The lattice and the crystalline map measured on the first frame of the
    // geometry (unset before it, or when none was mapped). A restored cache
    // keeps them, so that the next frames count over the same crystal as
    // the saved stream did; without them the next frame measures afresh
    // (and a partly crystalline stream may then differ slightly from an
    // unbroken one). The map's mask must be width × height.
    std::optional<LatticeMeasurement> lattice;
    std::optional<Crystallinity> crystallinity;
  };
  CacheSnapshot Snapshot() const;

  // Replaces the cache with a saved one (e.g. after a restart), with the
  // lattice and crystalline map when it carries them. The layout
  // for width × height is recomputed from the options; `windows` must have
  // one entry per window of it, `layout` (if not empty) must equal it, and
  // every cached entry must hold valid parameters and a chosen index into
  // its front; the same for the amorphous stage's entries and region tracks
  // (RegionTracker::Check), which are ignored when the stage is off. The prior is the caller's
  // business: a cache is only meaningful for the prior it was tuned with. A frame running meanwhile
  // does not overwrite the restored cache.
  absl::Status RestoreCache(const CacheSnapshot& snapshot);
};

}  // namespace logstar

#endif  // LOGSTAR_ENGINE_ANALYSIS_ANALYZER_H_
