#include "engine/amorphous/amorphous.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <limits>
#include <utility>

#include <opencv2/core.hpp>
#include <opencv2/imgproc.hpp>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "engine/amorphous/patches.h"
#include "engine/amorphous/pca.h"
#include "engine/base/status_macros.h"

namespace logstar {
namespace {

constexpr CovarianceType kTypes[] = {CovarianceType::kFull, CovarianceType::kTied,
                                     CovarianceType::kDiag, CovarianceType::kSpherical};

// Parabolic sub-pixel offset of a peak from three samples (left, centre, right).
double PeakOffset(double l, double c, double r) {
  const double denom = l - 2.0 * c + r;
  return denom < 0.0 ? std::clamp(0.5 * (l - r) / denom, -0.5, 0.5) : 0.0;
}

// The strongest peaks of the image's (linear, unnormalised) autocorrelation
// in one half-plane, between 0.7 NN distances and a quarter of the frame.
std::vector<PointXY> LatticeTranslations(const cv::Mat& image, double nn_px, int count) {
  const int h = image.rows, w = image.cols;
  const int reach = std::max(2, std::min(h, w) / 4);
  cv::Mat centred = image - cv::mean(image)[0];
  const int ph = cv::getOptimalDFTSize(h + reach + 1), pw = cv::getOptimalDFTSize(w + reach + 1);
  cv::Mat padded = cv::Mat::zeros(ph, pw, CV_32F);
  centred.copyTo(padded(cv::Rect(0, 0, w, h)));
  cv::Mat spectrum, power, ac;
  cv::dft(padded, spectrum, cv::DFT_COMPLEX_OUTPUT);
  cv::mulSpectrums(spectrum, spectrum, power, 0, /*conjB=*/true);
  cv::idft(power, ac, cv::DFT_REAL_OUTPUT | cv::DFT_SCALE);
  auto at = [&](int dx, int dy) { return ac.at<float>((dy + ph) % ph, (dx + pw) % pw); };
  struct Peak {
    float value;
    int dx, dy;
  };
  std::vector<Peak> peaks;
  const double rmin = 0.7 * nn_px;
  for (int dy = 0; dy <= reach; ++dy) {
    for (int dx = -reach; dx <= reach; ++dx) {
      if (dy == 0 && dx <= 0) continue;
      const double r = std::hypot(dx, dy);
      if (r < rmin || r > reach) continue;
      const float v = at(dx, dy);
      bool is_max = true;
      for (int j = -1; j <= 1 && is_max; ++j) {
        for (int i = -1; i <= 1; ++i) {
          if ((i != 0 || j != 0) && at(dx + i, dy + j) > v) {
            is_max = false;
            break;
          }
        }
      }
      if (is_max) peaks.push_back({v, dx, dy});
    }
  }
  std::stable_sort(peaks.begin(), peaks.end(),
                   [](const Peak& a, const Peak& b) { return a.value > b.value; });
  std::vector<PointXY> out;
  for (const Peak& p : peaks) {
    if (static_cast<int>(out.size()) >= count) break;
    const double ox = PeakOffset(at(p.dx - 1, p.dy), p.value, at(p.dx + 1, p.dy));
    const double oy = PeakOffset(at(p.dx, p.dy - 1), p.value, at(p.dx, p.dy + 1));
    out.push_back({p.dx + ox, p.dy + oy});
  }
  return out;
}

int OddPatch(double px) {
  return std::max(3, 2 * static_cast<int>(std::lround((px - 1.0) / 2.0)) + 1);
}

}  // namespace

absl::Status AmorphousOptions::Validate() const {
  auto bad = [](const char* field, double v, const char* want) {
    return absl::InvalidArgumentError(
        absl::StrCat("amorphous option ", field, " must be ", want, ", got ", v));
  };
  if (pca_components < 1) return bad("pca_components", pca_components, ">= 1");
  if (!(dispersion_ratio > 1.0 && std::isfinite(dispersion_ratio)))
    return bad("dispersion_ratio", dispersion_ratio, "> 1");
  if (!(floor_min_weight >= 0.0 && floor_min_weight < 1.0))
    return bad("floor_min_weight", floor_min_weight, "in [0, 1)");
  if (!(smoothing_sigma_nn >= 0.0 && smoothing_sigma_nn <= 1.0))
    return bad("smoothing_sigma_nn", smoothing_sigma_nn, "in [0, 1]");
  if (num_translations < 1) return bad("num_translations", num_translations, ">= 1");
  if (!(mask_radius_nn > 0.0 && std::isfinite(mask_radius_nn)))
    return bad("mask_radius_nn", mask_radius_nn, "> 0");
  if (!(closing_radius_nn >= 0.0 && std::isfinite(closing_radius_nn)))
    return bad("closing_radius_nn", closing_radius_nn, ">= 0");
  if (!(min_patch_nn > 0.0 && max_patch_nn >= min_patch_nn && std::isfinite(max_patch_nn))) {
    return bad("max_patch_nn", max_patch_nn, ">= min_patch_nn > 0");
  }
  if (!(min_threshold > 0.0 && max_threshold > min_threshold && max_threshold < 1.0)) {
    return bad("max_threshold", max_threshold, "> min_threshold > 0 and < 1");
  }
  if (min_components < 1 || max_components < min_components) {
    return bad("max_components", max_components, ">= min_components >= 1");
  }
  if (!(evidence_weight >= 0.0 && std::isfinite(evidence_weight)))
    return bad("evidence_weight", evidence_weight, ">= 0");
  if (!(min_share > 0.0 && min_share < 1.0)) return bad("min_share", min_share, "in (0, 1)");
  if (!(evidence_separation > 0.0 && std::isfinite(evidence_separation)))
    return bad("evidence_separation", evidence_separation, "> 0");
  if (!(disagreement_tolerance > 0.0 && std::isfinite(disagreement_tolerance)))
    return bad("disagreement_tolerance", disagreement_tolerance, "> 0");
  if (!(resolution_bic_gain >= 0.0 && std::isfinite(resolution_bic_gain)))
    return bad("resolution_bic_gain", resolution_bic_gain, ">= 0");
  GmmOptions gmm;
  gmm.reg_covar = reg_covar;
  gmm.tol = tol;
  gmm.max_iter = max_iter;
  gmm.n_init = n_init;
  LOGSTAR_RETURN_IF_ERROR(gmm.Validate());
  return optimizer.Validate();
}

const char* VerdictCodeName(AmorphousVerdict::Code code) {
  switch (code) {
    case AmorphousVerdict::Code::kTooFewAtoms:
      return "too_few_atoms";
    case AmorphousVerdict::Code::kEvidenceDisagrees:
      return "evidence_disagrees";
    case AmorphousVerdict::Code::kBelowResolution:
      return "below_resolution";
    case AmorphousVerdict::Code::kNotRun:
      return "not_run";
    case AmorphousVerdict::Code::kNone:
    default:
      return "none";
  }
}

AmorphousVerdict JudgeAmorphous(const AmorphousEvidence& evidence, double area_fraction,
                                int num_classified, const AmorphousOptions& options) {
  using Code = AmorphousVerdict::Code;
  // A region of min_share of the area must be able to hold an atom.
  const double min_atoms = 1.0 / options.min_share;
  if (num_classified < min_atoms) {
    return AmorphousVerdict::Uncertain(
        Code::kTooFewAtoms,
        absl::StrFormat("only %d atoms could be classified; a region of %.3g of the area (the "
                        "smallest reported) would hold less than one atom, so regions or their "
                        "absence mean little below %.0f atoms",
                        num_classified, options.min_share, std::ceil(min_atoms)));
  }
  // The consistency term of the rewards (file comment), the one measure of
  // how far the result is from the evidence.
  const double a_e = evidence.area_fraction;
  const double c = std::abs(area_fraction - a_e) / std::max(a_e, options.min_share);
  if (c > options.disagreement_tolerance) {
    return AmorphousVerdict::Uncertain(
        Code::kEvidenceDisagrees,
        absl::StrFormat("the evidence marks %.3f of the area as disordered (%.1f %% of the atoms) "
                        "but the chosen regions cover %.3f: they differ by %.2f x max(evidence, "
                        "min_share), more than the %.2g tolerated",
                        a_e, 100.0 * evidence.share, area_fraction, c,
                        options.disagreement_tolerance));
  }
  if (evidence.share == 0.0 && evidence.bic_gain > options.resolution_bic_gain &&
      evidence.separation < options.evidence_separation) {
    return AmorphousVerdict::Uncertain(
        Code::kBelowResolution,
        absl::StrFormat("a second population of %.1f %% of the atoms differs from the lattice "
                        "(BIC gain %.1f > %.3g) but stands only %.2f standard deviations of the "
                        "crystal's log energy above it, below the %.3g the stage resolves: "
                        "disorder may be present and cannot be located (too much noise?)",
                        100.0 * evidence.high_weight, evidence.bic_gain,
                        options.resolution_bic_gain, evidence.separation,
                        options.evidence_separation));
  }
  return {};
}

absl::StatusOr<FeatureClassification> ClassifyFeatures(const Eigen::MatrixXd& features,
                                                       const AmorphousParameters& parameters,
                                                       const AmorphousOptions& options) {
  GmmOptions g;
  g.num_components = parameters.num_components;
  g.covariance_type = parameters.covariance_type;
  g.reg_covar = options.reg_covar;
  g.tol = options.tol;
  g.max_iter = options.max_iter;
  g.n_init = options.n_init;
  g.seed = options.seed;
  LOGSTAR_ASSIGN_OR_RETURN(const GaussianMixture mixture, GaussianMixture::Fit(features, g));
  LOGSTAR_ASSIGN_OR_RETURN(const Eigen::MatrixXd proba, mixture.PredictProba(features));
  const Eigen::Index n = features.rows();
  const int num = mixture.num_components();
  FeatureClassification out;
  out.weights = mixture.weights();
  std::vector<double> scatter(num);
  for (int c = 0; c < num; ++c) {
    const Eigen::VectorXd d2 =
        (features.rowwise() - mixture.means().row(c)).rowwise().squaredNorm();
    const double mass = proba.col(c).sum();
    scatter[c] = mass > 0.0 ? proba.col(c).dot(d2) / mass : 0.0;
  }
  // Noise floor: the tightest component big enough to be the crystal (a
  // component of a few atoms can be tighter than the noise by chance).
  double floor = std::numeric_limits<double>::infinity();
  for (int c = 0; c < num; ++c) {
    if (out.weights(c) >= options.floor_min_weight) floor = std::min(floor, scatter[c]);
  }
  if (!std::isfinite(floor)) floor = *std::min_element(scatter.begin(), scatter.end());
  out.noise_floor = std::max(floor, std::numeric_limits<double>::min());
  out.posterior = Eigen::VectorXd::Zero(n);
  for (int c = 0; c < num; ++c) {
    const double dispersion = scatter[c] / out.noise_floor;
    out.dispersion.push_back(dispersion);
    const bool amorphous = dispersion > options.dispersion_ratio;
    out.component_amorphous.push_back(amorphous);
    if (amorphous) out.posterior += proba.col(c);
  }
  return out;
}

PatchSizeRange ResolvePatchSizes(const AmorphousOptions& options, const PhysicsPrior& prior) {
  const double nn = prior.NearestNeighborPx();
  PatchSizeRange r{OddPatch(options.min_patch_nn * nn), OddPatch(options.max_patch_nn * nn)};
  r.upper = std::max(r.upper, r.lower);
  return r;
}

namespace {

// The evidence is read at the middle of the searched patch sizes, fixed for
// the frame so that candidates cannot change it.
int EvidencePatch(const AmorphousOptions& options, const PhysicsPrior& prior) {
  const PatchSizeRange r = ResolvePatchSizes(options, prior);
  return std::clamp(
      OddPatch(0.5 * (options.min_patch_nn + options.max_patch_nn) * prior.NearestNeighborPx()),
      r.lower, r.upper);
}

// 1 vs 2 components on the per-atom log energy (see the file comment);
// `high` receives, per row of `d`, whether the atom counts as evidence.
absl::StatusOr<AmorphousEvidence> ReadEvidence(const Eigen::MatrixXd& d, int size_px,
                                               const AmorphousOptions& options,
                                               std::vector<bool>& high) {
  high.assign(d.rows(), false);
  AmorphousEvidence ev;
  ev.patch_size_px = size_px;
  Eigen::MatrixXd energy(d.rows(), 1);
  for (Eigen::Index i = 0; i < d.rows(); ++i) {
    // The floor keeps log finite for a noiseless exact copy.
    energy(i, 0) = std::log(d.row(i).squaredNorm() + 1e-12);
  }
  GmmOptions g;
  g.reg_covar = options.reg_covar;
  g.tol = options.tol;
  g.max_iter = options.max_iter;
  g.n_init = options.n_init;
  g.seed = options.seed;
  g.num_components = 1;
  LOGSTAR_ASSIGN_OR_RETURN(const GaussianMixture one, GaussianMixture::Fit(energy, g));
  g.num_components = 2;
  absl::StatusOr<GaussianMixture> two = GaussianMixture::Fit(energy, g);
  // A collapsed second component is no evidence of a second population.
  if (!two.ok()) {
    if (two.status().code() == absl::StatusCode::kFailedPrecondition) return ev;
    return two.status();
  }
  LOGSTAR_ASSIGN_OR_RETURN(const double bic1, one.Bic(energy));
  LOGSTAR_ASSIGN_OR_RETURN(const double bic2, two->Bic(energy));
  const int hi = two->means()(1, 0) > two->means()(0, 0) ? 1 : 0, lo = 1 - hi;
  ev.bic_gain = bic1 - bic2;
  ev.high_weight = two->weights()(hi);
  ev.separation = (two->means()(hi, 0) - two->means()(lo, 0)) /
                  std::sqrt(std::max(two->covariances()[lo](0, 0), 1e-300));
  if (ev.bic_gain > 0.0 && ev.separation >= options.evidence_separation) {
    ev.share = ev.high_weight;
    LOGSTAR_ASSIGN_OR_RETURN(const Eigen::MatrixXd proba, two->PredictProba(energy));
    for (Eigen::Index i = 0; i < d.rows(); ++i) high[i] = proba(i, hi) > 0.5;
  }
  return ev;
}

// The inputs of AmorphousScene::Create, checked as amorphous.h states.
absl::Status CheckSceneInputs(const cv::Mat& image, absl::Span<const PointXY> atoms,
                              const PhysicsPrior& prior, const AmorphousOptions& options,
                              const SceneOptions& scene) {
  LOGSTAR_RETURN_IF_ERROR(options.Validate());
  LOGSTAR_RETURN_IF_ERROR(prior.Validate());
  if (image.empty() || image.type() != CV_32FC1) {
    return absl::InvalidArgumentError(
        "amorphous: the image must be a non-empty single-channel CV_32F");
  }
  if (!cv::checkRange(image))
    return absl::InvalidArgumentError("amorphous: the image has non-finite pixels");
  if (atoms.empty())
    return absl::InvalidArgumentError("amorphous: no atoms to classify (empty atom list)");
  for (size_t i = 0; i < atoms.size(); ++i) {
    if (!std::isfinite(atoms[i].x) || !std::isfinite(atoms[i].y)) {
      return absl::InvalidArgumentError(
          absl::StrCat("amorphous: atom ", i, " has a non-finite position"));
    }
  }
  for (const PointXY& t : scene.translations_px) {
    if (!std::isfinite(t.x) || !std::isfinite(t.y) || std::hypot(t.x, t.y) < 0.5) {
      return absl::InvalidArgumentError(absl::StrCat("amorphous: a given lattice translation (",
                                                     t.x, ", ", t.y, ") px is not a translation"));
    }
  }
  return absl::OkStatus();
}

// The patch sizes a scene holds: odd, from 2·min_half + 1 to 2·max_half + 1.
struct SceneSizes {
  int min_half = 1;
  int max_half = 1;

  absl::Status Check(int size) const {
    if (size % 2 == 0 || size / 2 < min_half || size / 2 > max_half) {
      return absl::InvalidArgumentError(
          absl::StrCat("amorphous: patch size ", size, " px is not an odd size in [",
                       2 * min_half + 1, ", ", 2 * max_half + 1, "]"));
    }
    return absl::OkStatus();
  }
};

// What a scene prepares (see SceneOptions).
struct ScenePlan {
  // The sizes projected, each on the given basis, or on a PCA fitted to the
  // frame (null).
  std::vector<std::pair<int, const PatchProjection*>> projected;
  // Every size whose differences are sampled: the evidence's (unless the
  // evidence is given; it needs only the differences' energies) and the
  // projected ones.
  std::vector<int> sampled;
};

absl::StatusOr<ScenePlan> PlanScene(const SceneOptions& scene, const SceneSizes& sizes,
                                    int evidence_size) {
  ScenePlan plan;
  if (scene.projection.has_value()) {
    const PatchProjection& p = *scene.projection;
    const int d = p.patch_size_px * p.patch_size_px;
    if (p.mean.size() != d || p.components.cols() != d || p.components.rows() < 1 ||
        !p.mean.allFinite() || !p.components.allFinite()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "amorphous: the given projection for ", p.patch_size_px, " px patches needs a mean of ",
          d, " and components of ", d, " finite entries"));
    }
    LOGSTAR_RETURN_IF_ERROR(sizes.Check(p.patch_size_px));
    plan.projected.emplace_back(p.patch_size_px, &p);
  }
  std::vector<int> fitted = scene.patch_sizes_px;
  if (fitted.empty() && !scene.projection.has_value()) {
    for (int h = sizes.min_half; h <= sizes.max_half; ++h) fitted.push_back(2 * h + 1);
  }
  for (int size : fitted) {
    LOGSTAR_RETURN_IF_ERROR(sizes.Check(size));
    bool seen = false;
    for (const auto& [other, basis] : plan.projected) seen |= other == size;
    if (!seen) plan.projected.emplace_back(size, nullptr);
  }
  if (!scene.evidence.has_value()) {
    LOGSTAR_RETURN_IF_ERROR(sizes.Check(evidence_size));
    plan.sampled.push_back(evidence_size);
  }
  for (const auto& [size, basis] : plan.projected) {
    if (std::find(plan.sampled.begin(), plan.sampled.end(), size) == plan.sampled.end()) {
      plan.sampled.push_back(size);
    }
  }
  if (plan.sampled.empty()) return absl::InvalidArgumentError("amorphous: nothing to prepare");
  return plan;
}

// Lattice-difference patches of a frame's atoms for several patch sizes at
// once: per atom and size, the atom's patch minus the patch one lattice
// translation (either sign) away that matches it best (least squared
// difference). The patch of size s about a point is the central s × s of
// the largest one about it (same sub-pixel weights), so each position is
// sampled once at the largest size where that fits, and per size otherwise
// (near the border). Sample() may run concurrently for distinct atoms.
class DifferenceSampler {
 public:
  using RowMajorMatrix = Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

  // The buffers of one thread.
  struct Scratch {
    std::vector<double> big_p, big_q, p, q;
    std::vector<double> best;     // per size, the best squared difference so far
    std::vector<bool> centre_ok;  // per size, whether the atom's patch fits
  };

  DifferenceSampler(const cv::Mat& smoothed, const std::vector<PointXY>& translations,
                    const std::vector<int>& sizes, bool normalize, int num_atoms)
      : smoothed_(smoothed),
        translations_(translations),
        sizes_(sizes),
        normalize_(normalize),
        big_(*std::max_element(sizes.begin(), sizes.end())),
        big_d_(big_ * big_),
        rows_(sizes.size()),
        valid_(sizes.size(), std::vector<char>(num_atoms, 0)) {
    for (size_t k = 0; k < sizes.size(); ++k) rows_[k].resize(num_atoms, sizes[k] * sizes[k]);
  }

  Scratch MakeScratch() const {
    Scratch w;
    w.big_p.resize(big_d_);
    w.big_q.resize(big_d_);
    w.p.resize(static_cast<size_t>(sizes_.size()) * big_d_);
    w.q.resize(big_d_);
    return w;
  }

  // Row i of every size's differences, for the atom at `a`.
  void Sample(const PointXY& a, int i, Scratch& w) {
    w.best.assign(sizes_.size(), std::numeric_limits<double>::infinity());
    SampleCentres(a, w);
    for (const PointXY& t : translations_) {
      for (double sign : {1.0, -1.0}) CompareShifted(a.x + sign * t.x, a.y + sign * t.y, i, w);
    }
    for (size_t k = 0; k < sizes_.size(); ++k) valid_[k][i] = std::isfinite(w.best[k]);
  }

  // Whether atom i has differences of size sizes[k] (a translated patch
  // fitted in the frame), and those differences (row i).
  bool valid(size_t k, int i) const { return valid_[k][i] != 0; }
  const RowMajorMatrix& differences(size_t k) const { return rows_[k]; }

 private:
  bool Inside(double x, double y, int half) const {
    return PatchInside(smoothed_.cols, smoothed_.rows, x, y, half);
  }

  void Normalise(double* v, int d) const {
    if (!normalize_) return;
    Eigen::Map<Eigen::RowVectorXd> m(v, d);
    m.array() -= m.mean();
    const double sd = std::sqrt(m.squaredNorm() / d);
    if (sd > 0.0) m /= sd;
  }

  // The central size × size of a from_size × from_size patch.
  static void Crop(const std::vector<double>& from, int from_size, int size, double* to) {
    const int off = (from_size - size) / 2;
    for (int j = 0; j < size; ++j) {
      const double* src = from.data() + (j + off) * from_size + off;
      std::copy(src, src + size, to + j * size);
    }
  }

  // The atom's patch per size into w.p (cropped from the big one, or
  // sampled), where it fits (w.centre_ok).
  void SampleCentres(const PointXY& a, Scratch& w) const {
    const bool centre_big = Inside(a.x, a.y, big_ / 2);
    w.centre_ok.assign(sizes_.size(), false);
    if (centre_big) SamplePatch(smoothed_, a.x, a.y, big_, w.big_p.data());
    for (size_t k = 0; k < sizes_.size(); ++k) {
      const int size = sizes_[k], d = size * size;
      w.centre_ok[k] = Inside(a.x, a.y, size / 2);
      if (!w.centre_ok[k]) continue;
      double* p = w.p.data() + static_cast<size_t>(k) * big_d_;
      if (centre_big) {
        Crop(w.big_p, big_, size, p);
      } else {
        SamplePatch(smoothed_, a.x, a.y, size, p);
      }
      Normalise(p, d);
    }
  }

  // The patches about (x, y) against the atom's: row i of a size's
  // differences becomes theirs where they match better than any so far.
  void CompareShifted(double x, double y, int i, Scratch& w) {
    const bool shifted_big = Inside(x, y, big_ / 2);
    if (shifted_big) SamplePatch(smoothed_, x, y, big_, w.big_q.data());
    for (size_t k = 0; k < sizes_.size(); ++k) {
      const int size = sizes_[k], d = size * size;
      if (!w.centre_ok[k] || !Inside(x, y, size / 2)) continue;
      const double* p = w.p.data() + static_cast<size_t>(k) * big_d_;
      // The common case reads the central window of the big patch in
      // place; normalised patches and border atoms take a copy.
      const double* q;
      int q_stride;
      if (shifted_big && !normalize_) {
        const int off = (big_ - size) / 2;
        q = w.big_q.data() + off * big_ + off;
        q_stride = big_;
      } else {
        if (shifted_big) {
          Crop(w.big_q, big_, size, w.q.data());
        } else {
          SamplePatch(smoothed_, x, y, size, w.q.data());
        }
        Normalise(w.q.data(), d);
        q = w.q.data();
        q_stride = size;
      }
      double e = 0.0;
      for (int r = 0; r < size; ++r) {
        const double* pr = p + r * size;
        const double* qr = q + r * q_stride;
        for (int c = 0; c < size; ++c) e += (pr[c] - qr[c]) * (pr[c] - qr[c]);
      }
      if (e < w.best[k]) {
        w.best[k] = e;
        double* row = rows_[k].row(i).data();
        for (int r = 0; r < size; ++r) {
          for (int c = 0; c < size; ++c) row[r * size + c] = p[r * size + c] - q[r * q_stride + c];
        }
      }
    }
  }

  const cv::Mat& smoothed_;
  const std::vector<PointXY>& translations_;
  const std::vector<int>& sizes_;
  const bool normalize_;
  const int big_;
  const int big_d_;
  std::vector<RowMajorMatrix> rows_;      // per size: one row per atom
  std::vector<std::vector<char>> valid_;  // per size and atom (char: written concurrently)
};

}  // namespace

absl::StatusOr<AmorphousScene> AmorphousScene::Create(const cv::Mat& image,
                                                      absl::Span<const PointXY> atoms,
                                                      const PhysicsPrior& prior,
                                                      const AmorphousOptions& options,
                                                      const SceneOptions& scene) {
  LOGSTAR_RETURN_IF_ERROR(CheckSceneInputs(image, atoms, prior, options, scene));
  AmorphousScene s;
  s.width_ = image.cols;
  s.height_ = image.rows;
  s.atoms_.assign(atoms.begin(), atoms.end());
  s.context_ = scene.context;
  s.options_ = options;
  s.nn_px_ = prior.NearestNeighborPx();
  const double sigma = options.smoothing_sigma_nn * s.nn_px_;
  if (sigma > 0.0) {
    cv::GaussianBlur(image, s.smoothed_, cv::Size(), sigma, sigma, cv::BORDER_REFLECT);
  } else {
    s.smoothed_ = image.clone();
  }
  s.translations_ = scene.translations_px.empty()
                        ? LatticeTranslations(s.smoothed_, s.nn_px_, options.num_translations)
                        : scene.translations_px;
  if (s.translations_.empty()) {
    return absl::InvalidArgumentError(
        "amorphous: the frame shows no lattice period (no autocorrelation peak beyond 0.7 "
        "nearest-neighbour distances); it is too small or featureless");
  }

  const PatchSizeRange range = ResolvePatchSizes(options, prior);
  const SceneSizes sizes{range.lower / 2, std::max(range.upper / 2, range.lower / 2 + 1)};
  s.min_half_ = sizes.min_half;
  s.sizes_.resize(sizes.max_half - sizes.min_half + 1);
  const int evidence_size = EvidencePatch(options, prior);
  LOGSTAR_ASSIGN_OR_RETURN(const ScenePlan plan, PlanScene(scene, sizes, evidence_size));
  s.SampleDifferences(plan.sampled, scene.context);
  for (const auto& [size, basis] : plan.projected) {
    LOGSTAR_RETURN_IF_ERROR(s.Project(size, basis, s.sizes_[size / 2 - s.min_half_]));
  }
  if (scene.evidence.has_value()) {
    s.evidence_ = *scene.evidence;
  } else {
    LOGSTAR_RETURN_IF_ERROR(s.ReadFrameEvidence(evidence_size));
  }
  return s;
}

absl::Status AmorphousScene::ReadFrameEvidence(int size_px) {
  const SizeFeatures& e = sizes_[size_px / 2 - min_half_];
  const int need = std::max({options_.max_components, options_.pca_components + 1, 2});
  if (static_cast<int>(e.kept.size()) < need) {
    return absl::InvalidArgumentError(absl::StrCat(
        "amorphous: ", e.kept.size(), " of ", atoms_.size(),
        " atoms are far enough from the border to classify; the mixture needs at least ", need));
  }
  std::vector<bool> high;
  LOGSTAR_ASSIGN_OR_RETURN(evidence_, ReadEvidence(e.differences, size_px, options_, high));
  std::vector<PointXY> painted;
  for (size_t r = 0; r < e.kept.size(); ++r) {
    if (high[r]) painted.push_back(atoms_[e.kept[r]]);
  }
  LOGSTAR_ASSIGN_OR_RETURN(const RegionSet evidence_regions, Paint(painted));
  evidence_.area_fraction = evidence_regions.area_fraction;
  return absl::OkStatus();
}

void AmorphousScene::SampleDifferences(const std::vector<int>& sizes, ExecutionContext* context) {
  const int n = static_cast<int>(atoms_.size());
  DifferenceSampler sampler(smoothed_, translations_, sizes, options_.normalize_patches, n);
  constexpr int kBlock = 64;
  const int blocks = (n + kBlock - 1) / kBlock;
  auto block = [&](int b) {
    DifferenceSampler::Scratch w = sampler.MakeScratch();
    for (int i = b * kBlock; i < std::min(n, (b + 1) * kBlock); ++i)
      sampler.Sample(atoms_[i], i, w);
  };
  if (context != nullptr && blocks > 1) {
    context->ParallelFor(blocks, block);
  } else {
    for (int b = 0; b < blocks; ++b) block(b);
  }
  for (size_t k = 0; k < sizes.size(); ++k) {
    SizeFeatures& out = sizes_[sizes[k] / 2 - min_half_];
    out.kept.clear();
    for (int i = 0; i < n; ++i) {
      if (sampler.valid(k, i)) out.kept.push_back(i);
    }
    out.differences.resize(static_cast<Eigen::Index>(out.kept.size()), sizes[k] * sizes[k]);
    for (size_t r = 0; r < out.kept.size(); ++r) {
      out.differences.row(r) = sampler.differences(k).row(out.kept[r]);
    }
    out.differences_ready = true;
  }
}

absl::Status AmorphousScene::Project(int size_px, const PatchProjection* basis,
                                     SizeFeatures& out) const {
  const int d = size_px * size_px;
  out.projected.resize(0, 0);
  const Eigen::Index num_kept = out.differences.rows();
  if (basis != nullptr) {
    out.basis = *basis;
  } else if (num_kept >= 2) {
    const int k = std::min<int>(options_.pca_components,
                                static_cast<int>(std::min<Eigen::Index>(num_kept, d)));
    LOGSTAR_ASSIGN_OR_RETURN(const Pca pca, Pca::Fit(out.differences, {.num_components = k}));
    out.basis = {size_px, pca.mean(), pca.components()};
  } else {  // too few atoms; Evaluate reports it
    out.projected_ready = true;
    return absl::OkStatus();
  }
  out.projected = (out.differences.rowwise() - out.basis.mean) * out.basis.components.transpose();
  out.projected_ready = true;
  return absl::OkStatus();
}

absl::StatusOr<const AmorphousScene::SizeFeatures*> AmorphousScene::At(int size_px,
                                                                       bool projected) const {
  const int i = size_px / 2 - min_half_;
  if (size_px % 2 == 0 || i < 0 || i >= static_cast<int>(sizes_.size()) ||
      !(projected ? sizes_[i].projected_ready : sizes_[i].differences_ready)) {
    return absl::InvalidArgumentError(
        absl::StrCat("amorphous: patch size ", size_px, " px is not an odd size in [",
                     min_patch_px(), ", ", max_patch_px(), "] prepared by the scene"));
  }
  return &sizes_[i];
}

absl::StatusOr<const Eigen::MatrixXd*> AmorphousScene::LatticeDifferences(int size_px) const {
  LOGSTAR_ASSIGN_OR_RETURN(const SizeFeatures* f, At(size_px, false));
  return &f->differences;
}

absl::StatusOr<const std::vector<int>*> AmorphousScene::KeptAtoms(int size_px) const {
  LOGSTAR_ASSIGN_OR_RETURN(const SizeFeatures* f, At(size_px, false));
  return &f->kept;
}

absl::StatusOr<PatchProjection> AmorphousScene::Projection(int size_px) const {
  LOGSTAR_ASSIGN_OR_RETURN(const SizeFeatures* f, At(size_px, true));
  return f->basis;
}

absl::StatusOr<RegionSet> AmorphousScene::Paint(absl::Span<const PointXY> atoms) const {
  return PaintRegions(width_, height_, atoms,
                      {.radius_px = options_.mask_radius_nn * nn_px_,
                       .closing_radius_px = options_.closing_radius_nn * nn_px_},
                      context_);
}

Objectives2 AmorphousScene::Score(const RegionSet& regions) const {
  const double e = evidence_.area_fraction;
  const double c = std::abs(regions.area_fraction - e) / std::max(e, options_.min_share);
  const double deficit = regions.regions.empty() ? 0.0 : 1.0 - regions.isoperimetric;
  return {deficit + options_.evidence_weight * c,
          regions.perimeter_norm + options_.evidence_weight * c};
}

absl::StatusOr<Objectives2> AmorphousScene::ScoreMask(const cv::Mat& mask) const {
  if (mask.rows != height_ || mask.cols != width_) {
    return absl::InvalidArgumentError(absl::StrCat("amorphous: mask of ", mask.cols, " x ",
                                                   mask.rows, " for a frame of ", width_, " x ",
                                                   height_));
  }
  LOGSTAR_ASSIGN_OR_RETURN(const RegionSet set, DescribeRegions(mask));
  return Score(set);
}

absl::StatusOr<AmorphousEvaluation> AmorphousScene::Evaluate(
    const AmorphousParameters& parameters) const {
  if (!(parameters.threshold > 0.0 && parameters.threshold < 1.0)) {
    return absl::InvalidArgumentError(
        absl::StrCat("amorphous threshold must be in (0, 1), got ", parameters.threshold));
  }
  LOGSTAR_ASSIGN_OR_RETURN(const SizeFeatures* f, At(parameters.patch_size_px, true));
  AmorphousEvaluation ev;
  ev.parameters = parameters;
  const std::vector<int>& kept = f->kept;
  const int need = std::max({parameters.num_components, options_.pca_components + 1, 2});
  if (static_cast<int>(kept.size()) < need) {
    return absl::InvalidArgumentError(
        absl::StrCat("amorphous: ", kept.size(), " classifiable atoms; ", parameters.num_components,
                     " components need at least ", need));
  }
  LOGSTAR_ASSIGN_OR_RETURN(ev.mixture, ClassifyFeatures(f->projected, parameters, options_));
  ev.atoms.assign(atoms_.size(), AtomClass{false, false, std::numeric_limits<double>::quiet_NaN()});
  std::vector<PointXY> amorphous;
  for (size_t r = 0; r < kept.size(); ++r) {
    AtomClass& a = ev.atoms[kept[r]];
    a.classified = true;
    a.posterior = ev.mixture.posterior(r);
    a.amorphous = a.posterior > parameters.threshold;
    if (a.amorphous) amorphous.push_back(atoms_[kept[r]]);
  }
  LOGSTAR_ASSIGN_OR_RETURN(ev.regions, Paint(amorphous));
  ev.share = static_cast<double>(amorphous.size()) / kept.size();
  ev.evidence = evidence_.area_fraction;
  ev.objectives = Score(ev.regions);
  ev.verdict =
      JudgeAmorphous(evidence_, ev.regions.area_fraction, static_cast<int>(kept.size()), options_);
  return ev;
}

std::string AmorphousResult::Summary() const {
  const AmorphousParameters& p = chosen.parameters;
  return absl::StrFormat(
      "amorphous: patch %d px, threshold %.3f, %s, %d components; share %.3f (evidence %.3f), "
      "%d regions covering %.3f; objectives (%.4f, %.4f); %d evaluations, front of %d, %.1f ms%s",
      p.patch_size_px, p.threshold, CovarianceTypeName(p.covariance_type), p.num_components,
      chosen.share, chosen.evidence, static_cast<int>(chosen.regions.regions.size()),
      chosen.regions.area_fraction, chosen.objectives[0], chosen.objectives[1], num_evaluations,
      static_cast<int>(front.size()), tuning_ms,
      chosen.verdict.uncertain()
          ? absl::StrCat("; UNCERTAIN (", VerdictCodeName(chosen.verdict.code),
                         "): ", chosen.verdict.reason)
          : std::string("; confident"));
}

absl::StatusOr<AmorphousResult> RunAmorphous(const cv::Mat& image, absl::Span<const PointXY> atoms,
                                             const PhysicsPrior& prior,
                                             const AmorphousOptions& options,
                                             ExecutionContext* context,
                                             absl::Span<const AmorphousParameters> warm_start) {
  if (context == nullptr) return absl::InvalidArgumentError("context must not be null");
  const auto t0 = std::chrono::steady_clock::now();
  SceneOptions scene_options;
  scene_options.context = context;
  LOGSTAR_ASSIGN_OR_RETURN(const AmorphousScene scene,
                           AmorphousScene::Create(image, atoms, prior, options, scene_options));
  const PatchSizeRange sizes = ResolvePatchSizes(options, prior);
  SearchSpace space;
  // The patch size is searched as its half-width so that every integer is odd.
  space.parameters.push_back(
      {.name = "patch_half_px",
       .kind = ParameterSpec::Kind::kInteger,
       .lower = static_cast<double>(sizes.lower / 2),
       .upper = static_cast<double>(std::max(sizes.upper / 2, sizes.lower / 2 + 1))});
  space.parameters.push_back(
      {.name = "threshold", .lower = options.min_threshold, .upper = options.max_threshold});
  space.parameters.push_back({.name = "covariance_type",
                              .kind = ParameterSpec::Kind::kCategorical,
                              .categories = {"full", "tied", "diag", "spherical"}});
  const bool one_k = options.min_components == options.max_components;
  space.parameters.push_back(
      {.name = "num_components",
       .kind = ParameterSpec::Kind::kInteger,
       .lower = static_cast<double>(options.min_components),
       .upper = static_cast<double>(options.max_components + (one_k ? 1 : 0))});
  auto decode = [&](const ParameterValues& v) {
    AmorphousParameters p;
    p.patch_size_px = 2 * static_cast<int>(v[0]) + 1;
    p.threshold = v[1];
    p.covariance_type = kTypes[static_cast<int>(v[2])];
    p.num_components = std::min(static_cast<int>(v[3]), options.max_components);
    return p;
  };
  // A candidate whose mixture cannot be fitted (a collapsed component) scores
  // worse than any region could.
  const double worst = 2.0 + 2.0 * options.evidence_weight;
  const Objective objective = [&](const ParameterValues& v) -> absl::StatusOr<Objectives2> {
    absl::StatusOr<AmorphousEvaluation> ev = scene.Evaluate(decode(v));
    if (!ev.ok()) {
      if (ev.status().code() == absl::StatusCode::kFailedPrecondition)
        return Objectives2{worst, worst + 1.0};
      return ev.status();
    }
    return ev->objectives;
  };
  std::vector<ParameterValues> warm;
  for (const AmorphousParameters& p : warm_start) {
    int type = 0;
    for (int t = 0; t < 4; ++t) type = kTypes[t] == p.covariance_type ? t : type;
    ParameterValues v = {
        static_cast<double>(std::clamp(p.patch_size_px / 2, sizes.lower / 2, sizes.upper / 2)),
        std::clamp(p.threshold, options.min_threshold, options.max_threshold),
        static_cast<double>(type),
        static_cast<double>(
            std::clamp(p.num_components, options.min_components, options.max_components))};
    if (space.CheckValues(v).ok()) warm.push_back(std::move(v));
  }
  if (static_cast<int>(warm.size()) > options.optimizer.num_evaluations)
    warm.resize(options.optimizer.num_evaluations);
  LOGSTAR_ASSIGN_OR_RETURN(
      const MoboResult run,
      MinimizeTwoObjectives(space, objective, options.optimizer, context, warm));
  std::vector<Objectives2> objectives;
  for (const Evaluation& e : run.evaluations) objectives.push_back(e.objectives);
  LOGSTAR_ASSIGN_OR_RETURN(const int chosen, ChooseOnFront(objectives, run.front, options.choice));
  AmorphousResult result;
  result.evidence = scene.evidence();
  result.translations_px = scene.translations_px();
  for (int i : run.front) {
    result.front.push_back({decode(run.evaluations[i].parameters), run.evaluations[i].objectives});
    if (i == chosen) result.chosen_index = static_cast<int>(result.front.size()) - 1;
  }
  result.num_evaluations = static_cast<int>(run.evaluations.size());
  LOGSTAR_ASSIGN_OR_RETURN(result.chosen,
                           scene.Evaluate(decode(run.evaluations[chosen].parameters)));
  LOGSTAR_ASSIGN_OR_RETURN(result.projection,
                           scene.Projection(result.chosen.parameters.patch_size_px));
  result.tuning_ms =
      std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  return result;
}

}  // namespace logstar
