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
// D is reduced by PCA to k components (default 2, as published) and a GMM
// is fitted to the result.
//
// Which components are amorphous: sign-free. A component's dispersion is
// the trace of its posterior-weighted scatter about its mean (invariant to
// the sign, indeed any rotation, of the PCA axes), divided by the noise
// floor, the median squared distance of a feature to the feature median —
// crystal atoms, assumed to be the majority, sit at the noise floor. A
// component is amorphous when its dispersion exceeds dispersion_ratio; an
// atom's amorphous posterior is the summed posterior of the amorphous
// components, and it is amorphous when that exceeds the threshold. A frame
// whose components are all at the noise floor has no amorphous atom.
//
// Border atoms: an atom whose patch, or every translated patch, leaves the
// frame is not classified (classified = false, posterior NaN, never amorphous).
//
// Regions: amorphous atoms paint disks of mask_radius_nn × nearest-neighbour
// distance, closed with a disk of closing_radius_nn × that distance
// (engine/regions.h).
//
// Tuning (RunAmorphous): MinimizeTwoObjectives over patch size (integer,
// px), threshold, covariance type (categorical) and number of components
// (integer). Both objectives are minimised:
//   f1 = (1 - Q) + λ c,   f2 = P/sqrt(WH) + λ c,
// with Q the isoperimetric quotient of the regions (compactness maximised),
// P their perimeter (minimised) and c the inconsistency of the classified
// share s with the frame's evidence e:  c = |s - e| / max(e, min_share).
// e is the share of atoms whose lattice-difference energy |D_i|² at the
// middle of the searched patch sizes exceeds outlier_factor × its median — a
// property of the frame, not of the candidate, so that no candidate can make
// its own evidence vanish. Without regions Q-deficit and P are 0, so "no
// region" scores (λ c, λ c) = (λ, λ) on a frame with evidence and the
// utopia (0, 0) on a crystal; one tiny disk scores nearly as badly. The
// chosen point is the one closest to the utopia on the front (normalised).
//
// Coordinates: x = column, y = row, pixels, origin at the centre of the
// top-left pixel. Thread-safety: AmorphousScene is immutable after Create()
// and may be shared; RunAmorphous may run concurrently.
#ifndef LOGSTAR_ENGINE_AMORPHOUS_H_
#define LOGSTAR_ENGINE_AMORPHOUS_H_

#include <string>
#include <vector>

#include <Eigen/Dense>
#include <opencv2/core.hpp>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "engine/context.h"
#include "engine/gmm.h"
#include "engine/mobo.h"
#include "engine/pareto.h"
#include "engine/physics_prior.h"
#include "engine/regions.h"
#include "engine/rewards.h"

namespace logstar {

// What the search tunes.
struct AmorphousParameters {
  int patch_size_px = 11;  // odd, >= 3
  double threshold = 0.5;  // on the amorphous posterior, in (0, 1)
  CovarianceType covariance_type = CovarianceType::kFull;
  int num_components = 2;  // GMM components, >= 1
};

struct AmorphousOptions {
  int pca_components = 2;         // k, >= 1
  double dispersion_ratio = 4.0;  // > 0, see the file comment
  int num_translations = 4;       // autocorrelation peaks used (each with its negative), >= 1
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
  double evidence_weight = 2.0;  // λ, >= 0
  double min_share = 0.02;       // in (0, 1)
  double outlier_factor = 2.0;   // > 1
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
  std::vector<double> dispersion;  // per component, in noise floors
  std::vector<bool> component_amorphous;
  Eigen::VectorXd weights;  // mixture weights
  double noise_floor = 0.0;
};

// Fits the mixture to `features` (n × k) and applies the dispersion rule.
// Exposed so that the rule's independence of axis signs can be tested.
absl::StatusOr<FeatureClassification> ClassifyFeatures(const Eigen::MatrixXd& features,
                                                       const AmorphousParameters& parameters,
                                                       const AmorphousOptions& options);

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
  double evidence = 0.0;  // the frame's outlier share (see the file comment)
  Objectives2 objectives = {0.0, 0.0};
};

// One frame (or window) prepared for many evaluations: the normalised
// image, the atoms, the lattice translations and the frame evidence.
class AmorphousScene {
 public:
  // `image`: single-channel CV_32F, finite (e.g. from NormalizeFrame); the
  // scene keeps a reference-counted header of it. `atoms` in pixels.
  // InvalidArgument for an empty atom list, non-finite positions, or fewer
  // classifiable atoms than the components need.
  static absl::StatusOr<AmorphousScene> Create(const cv::Mat& image,
                                               absl::Span<const PointXY> atoms,
                                               const PhysicsPrior& prior,
                                               const AmorphousOptions& options);

  absl::StatusOr<AmorphousEvaluation> Evaluate(const AmorphousParameters& parameters) const;

  const std::vector<PointXY>& translations_px() const { return translations_; }
  double evidence() const { return evidence_; }
  double nearest_neighbor_px() const { return nn_px_; }
  const AmorphousOptions& options() const { return options_; }

 private:
  AmorphousScene() = default;
  // Lattice-difference patches of size w (rows: kept atoms).
  absl::StatusOr<Eigen::MatrixXd> Features(int size_px, std::vector<int>& kept) const;

  cv::Mat image_;
  std::vector<PointXY> atoms_;
  std::vector<PointXY> translations_;
  AmorphousOptions options_;
  double nn_px_ = 0.0;
  double evidence_ = 0.0;
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
  AmorphousEvaluation chosen;  // the chosen point, evaluated
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

#endif  // LOGSTAR_ENGINE_AMORPHOUS_H_
