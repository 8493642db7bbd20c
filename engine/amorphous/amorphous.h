// Amorphous regions: which atoms sit in disordered material, by a Gaussian
// mixture on atom-centred patches, tuned by region rewards (issue 4; the
// second half of Barakati et al., Digital Discovery 2024, re-thought).
//
// Features. The published method clusters raw patches: on a crystal with
// several kinds of site (YBCO has Ba, Y and Cu columns) the leading principal
// components separate the site kinds, not order from disorder. Here an atom's
// feature is its *lattice-difference patch*: its patch minus the patch one
// lattice translation away, D_i = P(c_i) - P(c_i + T), with T the translation
// among ±T_1..±T_m that makes |D_i| smallest. In a crystal some T maps the
// neighbourhood onto itself and D_i is noise; in amorphous material no T
// does. The translations are the strongest peaks of the frame's
// autocorrelation (computed once per frame, sub-pixel by parabolic fits).
// Patches are read from the frame low-passed by a Gaussian of
// smoothing_sigma_nn × NN distance: at the noise levels of interest D_i is
// otherwise dominated by white noise, whose bilinear samples even change
// variance with the sub-pixel offset (by up to 4×), so that the crystal
// itself splits into "clusters" of sub-pixel phase; atomic columns are much
// wider than the kernel and survive. D is reduced by PCA to k components
// (default 2, as published) and a GMM is fitted to the result. Features and
// their PCA are computed once per patch size when the scene is created; an
// evaluation only fits the mixture and paints the regions.
//
// Which components are amorphous: sign-free. A component's dispersion is
// the trace of its posterior-weighted scatter about its mean (invariant to
// the sign, indeed any rotation, of the PCA axes). The noise floor is the
// dispersion of the tightest component holding at least floor_min_weight of
// the atoms — crystal atoms, whose D is noise, form the tightest cluster
// whatever the amorphous share. A component is amorphous when its dispersion
// exceeds dispersion_ratio × the floor; an atom's amorphous posterior is the
// summed posterior of the amorphous components, and it is amorphous when that
// exceeds the threshold. A frame whose components are all near the floor has
// no amorphous atom.
//
// Evidence: the mixture's own answer to "is part of this frame
// disordered, and how much?", a property of the frame that no candidate can
// change. On the per-atom log energy log |D_i|² at the middle of the searched
// patch sizes, 1 and 2 component mixtures are fitted; the evidence share e is
// the weight of the high-energy component when BIC prefers 2 components and
// that component's mean lies at least evidence_separation standard
// deviations of the low (crystal) component above it, and 0 otherwise. The
// evidence area a_e is the area fraction of the regions painted (as below)
// from the atoms whose high-component posterior exceeds 1/2 — the reward
// compares areas, because what the mixture calls clearly disordered is a
// subset of the atoms in the disordered area (some displaced atoms still
// resemble their neighbours), while the disks and closing fill the area.
//
// The verdict (AmorphousVerdict): whether the stage can stand by its result.
// It is uncertain, with a code and a reason, when
//  * too few atoms: fewer than 1 / min_share atoms were classified, so a
//    region of the smallest reported size (min_share of the area) would not
//    hold one atom, and no region or its absence means anything;
//  * the evidence disagrees: c (above, |A - a_e| / max(a_e, min_share)) is
//    more than disagreement_tolerance: the chosen regions cover an area the
//    frame's own evidence does not support (e.g. evidence 0.80 of the area,
//    chosen 0 regions);
//  * below resolution: the evidence found no disorder, but only because it
//    cannot resolve it: BIC prefers two populations of log energy by more
//    than resolution_bic_gain (6: "strong" on the Kass-Raftery scale; 36
//    generated crystals, three lattices at noise 0.05-0.6, all score below
//    -5), while the upper one lies fewer than
//    evidence_separation standard deviations of the crystal's log energy —
//    the evidence's own noise — above it. Some atoms differ from their
//    lattice more than noise explains, but the stage cannot tell which, so
//    "0 regions" would be a guess.
// Otherwise it is confident. The verdict is a property of the evidence and
// the chosen result; it does not change the result.
//
// Border atoms: an atom whose patch, or every translated patch, leaves the
// frame is not classified (classified = false, posterior NaN, never amorphous).
//
// Regions: amorphous atoms paint disks of mask_radius_nn × nearest-neighbour
// distance, closed with a disk of closing_radius_nn × that distance
// (engine/amorphous/regions.h).
//
// Tuning (RunAmorphous): MinimizeTwoObjectives over patch size (integer,
// px), threshold, covariance type (categorical) and number of components
// (integer). Both objectives are minimised:
//   f1 = (1 - Q) + λ c,   f2 = P/sqrt(WH) + λ c,
// with Q the isoperimetric quotient 4πA/P² of the regions (compactness
// maximised; 1 for one disk), P their perimeter (minimised) and c the
// inconsistency of the regions' area fraction A with the evidence area:
// c = |A - a_e| / max(a_e, min_share).
// Without regions (1 - Q) and P count as 0, so on a frame with evidence "no
// region" scores (λ, λ) and one tiny disk about the same, both far from what
// a region of the evidence's area scores; on a frame without evidence
// (a_e = 0) any painted area costs λ A / min_share and "no region" is the
// utopia (0, 0). The chosen point is the one closest to the utopia on the
// front (objectives normalised over the front).
//
// Coordinates: x = column, y = row, pixels, origin at the centre of the
// top-left pixel. Thread-safety: AmorphousScene is immutable after Create()
// and may be shared; RunAmorphous may run concurrently.
#ifndef LOGSTAR_ENGINE_AMORPHOUS_AMORPHOUS_H_
#define LOGSTAR_ENGINE_AMORPHOUS_AMORPHOUS_H_

#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <Eigen/Dense>
#include <opencv2/core.hpp>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "engine/amorphous/gmm.h"
#include "engine/amorphous/regions.h"
#include "engine/base/context.h"
#include "engine/optimize/mobo.h"
#include "engine/optimize/pareto.h"
#include "engine/physics/physics_prior.h"
#include "engine/physics/rewards.h"

namespace logstar {

// What the search tunes.
struct AmorphousParameters {
  int patch_size_px = 11;  // odd, >= 3
  double threshold = 0.5;  // on the amorphous posterior, in (0, 1)
  CovarianceType covariance_type = CovarianceType::kFull;
  int num_components = 2;  // GMM components, >= 1
};

struct AmorphousOptions {
  int pca_components = 2;            // k, >= 1
  double dispersion_ratio = 3.0;     // > 1, see the file comment
  double floor_min_weight = 0.1;     // in [0, 1), see the file comment
  double smoothing_sigma_nn = 0.05;  // >= 0, Gaussian low-pass / NN distance; 0 = none
  int num_translations = 4;          // autocorrelation peaks used (each with its negative), >= 1
  double reg_covar = 1e-6;
  double tol = 1e-3;
  int max_iter = 100;
  int n_init = 1;
  uint64_t seed = 0;
  bool normalize_patches = false;
  double mask_radius_nn = 1.0;     // > 0, disk radius per amorphous atom / NN distance
  double closing_radius_nn = 1.0;  // >= 0

  // Search space: patch size in units of the nearest-neighbour distance
  // (rounded to odd pixels, at least 3), threshold, components.
  double min_patch_nn = 0.25;
  double max_patch_nn = 0.75;
  double min_threshold = 0.2;
  double max_threshold = 0.9;
  int min_components = 2;
  int max_components = 4;
  // Rewards.
  double evidence_weight = 5.0;      // λ, >= 0
  double min_share = 0.02;           // in (0, 1)
  double evidence_separation = 2.5;  // > 0, in standard deviations of log energy
  // The verdict (see the file comment).
  double disagreement_tolerance = 0.5;  // > 0, on c
  double resolution_bic_gain = 6.0;     // >= 0
  MoboOptions optimizer = DefaultOptimizer();

  static MoboOptions DefaultOptimizer() {
    MoboOptions o;
    o.num_evaluations = 30;
    o.num_initial = 10;
    return o;
  }
  FrontChoiceRule choice = FrontChoiceRule::kEuclidean;

  absl::Status Validate() const;
};

// The result of classifying features with one mixture.
struct FeatureClassification {
  Eigen::VectorXd posterior;       // amorphous posterior per row
  std::vector<double> dispersion;  // per component, in noise floors (the floor is 1)
  std::vector<bool> component_amorphous;
  Eigen::VectorXd weights;   // mixture weights
  double noise_floor = 0.0;  // squared feature units
};

// Fits the mixture to `features` (n × k) and applies the dispersion rule.
// Exposed so that the rule's independence of axis signs can be tested.
absl::StatusOr<FeatureClassification> ClassifyFeatures(const Eigen::MatrixXd& features,
                                                       const AmorphousParameters& parameters,
                                                       const AmorphousOptions& options);

// Whether the stage stands by its result (see the file comment).
struct AmorphousVerdict {
  enum class State { kConfident, kUncertain };
  enum class Code {
    kNone,               // confident
    kTooFewAtoms,        // fewer classified atoms than 1 / min_share
    kEvidenceDisagrees,  // the chosen area and the evidence's differ (c > tolerance)
    kBelowResolution,    // a second population the evidence cannot resolve
    kNotRun,             // the stage could not run (the reason says why)
  };
  State state = State::kConfident;
  Code code = Code::kNone;
  std::string reason;  // empty when confident; otherwise one sentence with the figures

  bool uncertain() const { return state == State::kUncertain; }
  static AmorphousVerdict Uncertain(Code code, std::string reason) {
    return {State::kUncertain, code, std::move(reason)};
  }
};
const char* VerdictCodeName(AmorphousVerdict::Code code);

struct AtomClass {
  bool classified = false;  // false for border atoms (see the file comment)
  bool amorphous = false;
  double posterior = 0.0;  // NaN when not classified
};

struct AmorphousEvaluation {
  AmorphousParameters parameters;
  std::vector<AtomClass> atoms;  // one per input atom
  FeatureClassification mixture;
  RegionSet regions;
  double share = 0.0;     // amorphous / classified atoms
  double evidence = 0.0;  // the frame's evidence area a_e (see the file comment)
  Objectives2 objectives = {0.0, 0.0};
  AmorphousVerdict verdict;  // of these regions against the evidence
};

// The frame's evidence (see the file comment), with what it was decided on.
struct AmorphousEvidence {
  double share = 0.0;          // e, 0 when the frame shows no disorder
  double area_fraction = 0.0;  // a_e, 0 when e is
  int patch_size_px = 0;       // where it was read
  double bic_gain = 0.0;       // BIC(1 component) - BIC(2 components); > 0 favours 2
  double separation = 0.0;     // (high mean - low mean) / low standard deviation
  double high_weight = 0.0;    // weight of the high-energy component of the 2-fit
};

// The verdict on a result covering `area_fraction` of the frame (or window)
// whose evidence is `evidence`, from `num_classified` classified atoms.
AmorphousVerdict JudgeAmorphous(const AmorphousEvidence& evidence, double area_fraction,
                                int num_classified, const AmorphousOptions& options);

// A PCA basis for one patch size: features are (D - mean) · componentsᵀ.
struct PatchProjection {
  int patch_size_px = 0;
  Eigen::RowVectorXd mean;     // size² entries
  Eigen::MatrixXd components;  // k × size², orthonormal rows
};

// What a scene prepares. A tuning run needs every patch size with a PCA
// fitted to the frame. A frame that reuses a window's cached parameters
// needs one size, projected on the basis cached with them (the principal
// axes of a lattice's differences are a property of the lattice and the
// imaging, not of one frame, and fitting them is most of the cost), plus
// the evidence's size, whose log energies need no projection; it can also
// reuse the cached lattice translations.
struct SceneOptions {
  // Patch sizes to prepare with a fitted PCA; empty without `projection`:
  // every size of the search range (ResolvePatchSizes).
  std::vector<int> patch_sizes_px;
  // Not empty: these translations (px) instead of the autocorrelation's.
  std::vector<PointXY> translations_px;
  // Set: its patch size is prepared with this basis instead of a fitted one.
  std::optional<PatchProjection> projection;
  // Set: the frame's evidence is taken as given (a cached window's, read
  // when its parameters were tuned) instead of being read from this frame,
  // and the evidence's patch size is not prepared.
  std::optional<AmorphousEvidence> evidence;
  // Not owned; when given, the scene samples the atoms' patches and paints
  // regions in its arena (the results do not depend on it). It must outlive
  // the scene.
  ExecutionContext* context = nullptr;
};

// One frame (or window) prepared for many evaluations: the low-passed image,
// the atoms, the lattice translations, features per patch size and the
// evidence.
class AmorphousScene {
 public:
  // `image`: single-channel CV_32F, finite (e.g. from NormalizeFrame); not
  // kept. `atoms` in pixels. InvalidArgument for an empty atom list,
  // non-finite positions, a frame without lattice period, fewer
  // classifiable atoms than the components need, or a requested patch size
  // outside the search range.
  static absl::StatusOr<AmorphousScene> Create(const cv::Mat& image,
                                               absl::Span<const PointXY> atoms,
                                               const PhysicsPrior& prior,
                                               const AmorphousOptions& options,
                                               const SceneOptions& scene = {});

  // InvalidArgument for a threshold outside (0, 1) or a patch size the
  // scene did not prepare; FailedPrecondition when the mixture cannot be
  // fitted.
  absl::StatusOr<AmorphousEvaluation> Evaluate(const AmorphousParameters& parameters) const;

  // The objectives a given mask (CV_8U of the frame's size, non-zero =
  // amorphous) would score: the reward alone, no mixture. For tests of the
  // reward (e.g. on a truth mask) and for masks from elsewhere.
  absl::StatusOr<Objectives2> ScoreMask(const cv::Mat& mask) const;

  // Lattice-difference patches D of size `size_px` (rows: the atoms
  // `kept_atoms(size_px)` lists, size_px² columns, flattened row by row).
  // InvalidArgument for a size outside patch_sizes().
  absl::StatusOr<const Eigen::MatrixXd*> LatticeDifferences(int size_px) const;
  absl::StatusOr<const std::vector<int>*> KeptAtoms(int size_px) const;
  // The basis the features of `size_px` were projected on.
  absl::StatusOr<PatchProjection> Projection(int size_px) const;

  const std::vector<PointXY>& translations_px() const { return translations_; }
  const AmorphousEvidence& evidence() const { return evidence_; }
  double nearest_neighbor_px() const { return nn_px_; }
  const AmorphousOptions& options() const { return options_; }
  int min_patch_px() const { return 2 * min_half_ + 1; }
  int max_patch_px() const { return 2 * (min_half_ + static_cast<int>(sizes_.size()) - 1) + 1; }

 private:
  struct SizeFeatures {
    bool differences_ready = false;
    bool projected_ready = false;  // Evaluate() can use this size
    Eigen::MatrixXd differences;   // D, kept × size²
    Eigen::MatrixXd projected;     // D on the basis below, kept × k
    PatchProjection basis;
    std::vector<int> kept;
  };
  AmorphousScene() = default;
  absl::StatusOr<const SizeFeatures*> At(int size_px, bool projected) const;
  // D for each of `sizes` (odd, in range), every atom's patches sampled
  // once at the largest size.
  void SampleDifferences(const std::vector<int>& sizes, ExecutionContext* context);
  // The projection of D for `size_px` on `basis` (when given) or on a PCA
  // fitted to it.
  absl::Status Project(int size_px, const PatchProjection* basis, SizeFeatures& out) const;
  // The frame's evidence (see the file comment), read from the differences
  // of `size_px` (sampled).
  absl::Status ReadFrameEvidence(int size_px);
  absl::StatusOr<RegionSet> Paint(absl::Span<const PointXY> atoms) const;
  Objectives2 Score(const RegionSet& regions) const;

  cv::Mat smoothed_;
  ExecutionContext* context_ = nullptr;  // not owned; may be null
  int width_ = 0, height_ = 0;
  std::vector<PointXY> atoms_;
  std::vector<PointXY> translations_;
  AmorphousOptions options_;
  double nn_px_ = 0.0;
  int min_half_ = 1;
  std::vector<SizeFeatures> sizes_;  // half-size min_half_ + i
  AmorphousEvidence evidence_;
};

// Patch sizes the search may use for `prior` (odd, >= 3).
struct PatchSizeRange {
  int lower = 3;
  int upper = 3;
};
PatchSizeRange ResolvePatchSizes(const AmorphousOptions& options, const PhysicsPrior& prior);

struct AmorphousFrontPoint {
  AmorphousParameters parameters;
  Objectives2 objectives = {0.0, 0.0};
};

struct AmorphousResult {
  AmorphousEvaluation chosen;            // the chosen point, evaluated
  AmorphousEvidence evidence;            // the frame's, what the rewards compared with
  std::vector<PointXY> translations_px;  // the lattice translations the features used
  PatchProjection projection;            // the basis of the chosen patch size
  std::vector<AmorphousFrontPoint> front;
  int chosen_index = 0;  // into front
  int num_evaluations = 0;
  double tuning_ms = 0.0;

  std::string Summary() const;
};

// Tunes the stage on one frame; `warm_start` parameters are evaluated first.
absl::StatusOr<AmorphousResult> RunAmorphous(const cv::Mat& image, absl::Span<const PointXY> atoms,
                                             const PhysicsPrior& prior,
                                             const AmorphousOptions& options,
                                             ExecutionContext* context,
                                             absl::Span<const AmorphousParameters> warm_start = {});

}  // namespace logstar

#endif  // LOGSTAR_ENGINE_AMORPHOUS_AMORPHOUS_H_
