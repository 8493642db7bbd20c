#include "engine/log/gaussian_fit.h"

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>
#include <utility>

#include <Eigen/Dense>

#include "absl/strings/str_cat.h"

namespace logstar {

absl::Status GaussianRefineOptions::Validate() const {
  if (!(window_sigmas >= 1.0 && window_sigmas <= 6.0)) {
    return absl::InvalidArgumentError(
        absl::StrCat("gaussian refine window_sigmas must be in [1, 6], got ", window_sigmas));
  }
  if (passes < 1 || passes > 5) {
    return absl::InvalidArgumentError(
        absl::StrCat("gaussian refine passes must be in [1, 5], got ", passes));
  }
  if (max_iterations < 1 || max_iterations > 1000) {
    return absl::InvalidArgumentError(
        absl::StrCat("gaussian refine max_iterations must be in [1, 1000], got ", max_iterations));
  }
  if (!(std::isfinite(max_shift_sigmas) && max_shift_sigmas > 0.0)) {
    return absl::InvalidArgumentError(
        absl::StrCat("gaussian refine max_shift_sigmas must be positive, got ", max_shift_sigmas));
  }
  if (!(std::isfinite(min_sigma_ratio) && min_sigma_ratio > 0.0 && std::isfinite(max_sigma_ratio) &&
        max_sigma_ratio > min_sigma_ratio)) {
    return absl::InvalidArgumentError(
        absl::StrCat("gaussian refine needs 0 < min_sigma_ratio < max_sigma_ratio, got ",
                     min_sigma_ratio, " and ", max_sigma_ratio));
  }
  if (!(std::isfinite(fallback_error_px) && fallback_error_px > 0.0)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "gaussian refine fallback_error_px must be positive, got ", fallback_error_px));
  }
  return absl::OkStatus();
}

const char* ColumnFitStatusName(ColumnFitStatus status) {
  switch (status) {
    case ColumnFitStatus::kOk:
      return "ok";
    case ColumnFitStatus::kTooFewPixels:
      return "too_few_pixels";
    case ColumnFitStatus::kNoPeak:
      return "no_peak";
    case ColumnFitStatus::kBadShape:
      return "bad_shape";
    case ColumnFitStatus::kWandered:
      return "wandered";
    case ColumnFitStatus::kNotConverged:
      return "not_converged";
  }
  return "unknown";
}

namespace {

constexpr int kParams = 7;  // x0, y0, a, b, c, A, B
constexpr int kMinPixels = 16;
// Subtracted neighbours' Gaussians are evaluated out to exp(-kNeighbourCut):
// beyond, they are below 1e-3 of their amplitude (3.7 σ).
constexpr double kNeighbourCut = 7.0;
// How far, in its blob sigmas, a neighbour's model is taken to reach when
// listing neighbours (its fitted width may exceed the blob's).
constexpr double kNeighbourReachSigmas = 6.0;
// Neighbours closer than the window radius plus this many of their sigmas
// are fitted with the column (centre and amplitude), at most kMaxJoint.
constexpr double kJointReachSigmas = 2.0;
constexpr int kMaxJoint = 6;
// exp(-2.8²/2) = 2 %: see Neighbours::coupled.
constexpr double kCoupledReachSigmas = 2.8;
// A fitted amplitude must exceed this many of its standard errors.
constexpr double kMinPeakSignificance = 3.0;
constexpr int kMaxParams = kParams + 3 * kMaxJoint;
// Parameter-sized vectors and matrices live on the stack.
using VecP = Eigen::Matrix<double, Eigen::Dynamic, 1, 0, kMaxParams, 1>;
using MatP = Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic, 0, kMaxParams, kMaxParams>;

using Vec7 = Eigen::Matrix<double, kParams, 1>;

// One column's model: centre (x0, y0) in px, precision matrix [[a, b], [b,
// c]] in px⁻², amplitude and background in image units. The precision
// parametrisation keeps the model's derivatives polynomial in the offsets
// (no trigonometry inside the pixel loop).
struct Model {
  double x0 = 0.0, y0 = 0.0, a = 1.0, b = 0.0, c = 1.0, amp = 0.0, bg = 0.0;

  bool IsPeak() const {
    return std::isfinite(x0) && std::isfinite(y0) && std::isfinite(amp) && std::isfinite(bg) &&
           a > 0.0 && c > 0.0 && a * c - b * b > 0.0 && std::isfinite(a * c);
  }
  Vec7 AsVector() const { return (Vec7() << x0, y0, a, b, c, amp, bg).finished(); }
  static Model FromVector(const Vec7& p) { return {p(0), p(1), p(2), p(3), p(4), p(5), p(6)}; }
};

// exp(t) for t <= 0, 1e-15 relative; written without calls or branches so
// that the pixel loops vectorise. Below -700 it returns ~0.
inline double ExpNonPositive(double t) {
  t = t > -700.0 ? t : -700.0;
  constexpr double kLog2e = 1.4426950408889634;
  constexpr double kLn2Hi = 6.93147180369123816490e-01;
  constexpr double kLn2Lo = 1.90821492927058770002e-10;
  constexpr double kShift = 6755399441055744.0;  // 1.5·2^52: adding it rounds to an integer
  const double shifted = t * kLog2e + kShift;
  const double n = shifted - kShift;
  const double r = (t - n * kLn2Hi) - n * kLn2Lo;  // |r| <= ln2 / 2
  // Taylor to r^11: error < 0.35^12 / 12! ≈ 6e-15.
  double p = 1.0 / 39916800.0;
  p = p * r + 1.0 / 3628800.0;
  p = p * r + 1.0 / 362880.0;
  p = p * r + 1.0 / 40320.0;
  p = p * r + 1.0 / 5040.0;
  p = p * r + 1.0 / 720.0;
  p = p * r + 1.0 / 120.0;
  p = p * r + 1.0 / 24.0;
  p = p * r + 1.0 / 6.0;
  p = p * r + 0.5;
  p = p * r + 1.0;
  p = p * r + 1.0;
  // 2^n from n's bits in `shifted`'s mantissa.
  const int64_t bits = std::bit_cast<int64_t>(shifted);
  return p * std::bit_cast<double>((bits + 1023) << 52);
}

// A column's fit window: offsets of its pixels from the window centre and
// their values with the far neighbours' models subtracted, plus the close
// neighbours fitted with the column. Per thread, reused.
struct Window {
  double cx = 0.0, cy = 0.0;  // centre, px
  int n = 0;
  std::vector<double> dx, dy, v, scratch, exponent;
  // Close neighbours' models (centres relative to the window): their
  // amplitudes are fitted too, and their centres when inside the window
  // (outside, only a flank shows: a centre fitted from it would be poorly
  // determined and make the problem strongly nonlinear); shapes are held.
  std::vector<Model> joint;
  std::vector<char> joint_moves;  // whether joint[k]'s centre is fitted
  // For each joint neighbour whose centre is held, its unit-amplitude
  // Gaussian over the window's pixels (n values each, in order): fixed
  // during the fit, so computed once.
  std::vector<double> held_basis;
  // Model evaluation at the current trial point.
  Eigen::MatrixXd jacobian;
  Eigen::VectorXd residual;
};

struct ColumnInput {
  double x = 0.0, y = 0.0, sigma = 0.0;  // the blob
  double radius = 0.0;                   // window radius, px
};

// A column's neighbours: those fitted jointly with it (their Gaussians reach
// far into its window) and those whose models are subtracted.
struct Neighbours {
  std::vector<int> joint, subtracted;
  // Whether a neighbour's Gaussian exceeds 2 % of its peak inside the
  // window; only then do the neighbours' models matter enough to refit the
  // column in later passes (the detection's models are accurate to some
  // ten per cent, i.e. to 0.2 % of the peak there).
  bool coupled = false;
};

// Calls f(x, y, value) for the pixels of [x0, x1] × [y0, y1] that a
// model's Gaussian (without its background) reaches, out to kNeighbourCut.
template <typename F>
void ForEachReach(const Model& m, int x0, int x1, int y0, int y1, F&& f) {
  const double det = m.a * m.c - m.b * m.b;
  // The ellipse ½qᵀPq = kNeighbourCut reaches √(2·cut·Σxx) along x.
  const double reach_x = std::sqrt(2.0 * kNeighbourCut * m.c / det);
  const double reach_y = std::sqrt(2.0 * kNeighbourCut * m.a / det);
  const int bx0 = std::max(x0, static_cast<int>(std::ceil(m.x0 - reach_x)));
  const int bx1 = std::min(x1, static_cast<int>(std::floor(m.x0 + reach_x)));
  const int by0 = std::max(y0, static_cast<int>(std::ceil(m.y0 - reach_y)));
  const int by1 = std::min(y1, static_cast<int>(std::floor(m.y0 + reach_y)));
  for (int y = by0; y <= by1; ++y) {
    const double ey = y - m.y0;
    for (int x = bx0; x <= bx1; ++x) {
      const double ex = x - m.x0;
      const double half_q = 0.5 * (m.a * ex * ex + 2.0 * m.b * ex * ey + m.c * ey * ey);
      if (half_q < kNeighbourCut) f(x, y, m.amp * ExpNonPositive(-half_q));
    }
  }
}

// Fills `w` with the pixels of `image` within `radius` of (cx, cy) minus the
// subtracted neighbours' Gaussians (without their backgrounds), and the
// joint neighbours' current models.
void GatherWindow(const cv::Mat& image, double cx, double cy, double radius,
                  const Neighbours& neighbours, const std::vector<Model>& models, Window* w) {
  w->cx = cx;
  w->cy = cy;
  const int r = static_cast<int>(std::ceil(radius));
  const int ix = static_cast<int>(std::lround(cx)), iy = static_cast<int>(std::lround(cy));
  const int x0 = std::max(ix - r, 0), x1 = std::min(ix + r, image.cols - 1);
  const int y0 = std::max(iy - r, 0), y1 = std::min(iy + r, image.rows - 1);
  const int pw = std::max(0, x1 - x0 + 1), ph = std::max(0, y1 - y0 + 1);
  const size_t capacity = static_cast<size_t>(pw) * ph;
  // The square around the disk first, so that each subtracted neighbour
  // costs only the pixels of its own reach.
  w->scratch.resize(capacity);
  for (int y = 0; y < ph; ++y) {
    const float* row = image.ptr<float>(y0 + y) + x0;
    for (int x = 0; x < pw; ++x) w->scratch[static_cast<size_t>(y) * pw + x] = row[x];
  }
  for (int j : neighbours.subtracted) {
    ForEachReach(models[j], x0, x1, y0, y1, [&](int x, int y, double g) {
      w->scratch[static_cast<size_t>(y - y0) * pw + (x - x0)] -= g;
    });
  }
  w->dx.resize(capacity);
  w->dy.resize(capacity);
  w->v.resize(capacity);
  const double r2 = radius * radius;
  int n = 0;
  for (int y = y0; y <= y1; ++y) {
    const double* row = w->scratch.data() + static_cast<size_t>(y - y0) * pw - x0;
    const double ddy = y - cy;
    for (int x = x0; x <= x1; ++x) {
      const double ddx = x - cx;
      if (ddx * ddx + ddy * ddy > r2) continue;
      w->dx[n] = ddx;
      w->dy[n] = ddy;
      w->v[n] = row[x];
      ++n;
    }
  }
  w->n = n;
  w->joint.clear();
  w->joint_moves.clear();
  w->held_basis.clear();
  for (int j : neighbours.joint) {
    Model m = models[j];
    m.x0 -= cx;
    m.y0 -= cy;
    w->joint.push_back(m);
    const bool moves = m.x0 * m.x0 + m.y0 * m.y0 < r2;
    w->joint_moves.push_back(moves);
    if (moves) continue;
    for (int i = 0; i < n; ++i) {
      const double ex = w->dx[i] - m.x0, ey = w->dy[i] - m.y0;
      w->held_basis.push_back(
          ExpNonPositive(-0.5 * (m.a * ex * ex + 2.0 * m.b * ex * ey + m.c * ey * ey)));
    }
  }
}

// The detection's model: isotropic with the blob's sigma, background a low
// quantile of the window (the column's own flanks are at a few per cent
// there), amplitude the 3×3 mean at the centre above it.
Model InitialModel(const Window& w, double sigma, std::vector<double>* scratch) {
  Model m;
  m.x0 = w.cx;
  m.y0 = w.cy;
  m.a = m.c = 1.0 / (sigma * sigma);
  m.b = 0.0;
  scratch->assign(w.v.begin(), w.v.begin() + w.n);
  auto nth = scratch->begin() + scratch->size() / 5;
  std::nth_element(scratch->begin(), nth, scratch->end());
  m.bg = *nth;
  double sum = 0.0;
  int count = 0;
  for (int i = 0; i < w.n; ++i) {
    if (std::abs(w.dx[i]) <= 1.5 && std::abs(w.dy[i]) <= 1.5) sum += w.v[i], ++count;
  }
  const double peak = count > 0 ? sum / count : m.bg;
  m.amp = std::max(peak - m.bg, 1e-6 * std::max(1.0, std::abs(m.bg)));
  return m;
}

// The fit's parameters: the column's 7 (Model::AsVector), then for each
// joint neighbour its amplitude, preceded by x0 and y0 if its centre moves.
VecP PackParameters(const Model& own, const Window& w) {
  int np = kParams;
  for (char moves : w.joint_moves) np += moves ? 3 : 1;
  VecP p(np);
  p.head<kParams>() = own.AsVector();
  int col = kParams;
  for (size_t k = 0; k < w.joint.size(); ++k) {
    if (w.joint_moves[k]) p(col++) = w.joint[k].x0, p(col++) = w.joint[k].y0;
    p(col++) = w.joint[k].amp;
  }
  return p;
}

bool IsValid(const VecP& p) {
  return p.allFinite() && Model::FromVector(p.head<kParams>()).IsPeak();
}

// Residuals and Jacobian of parameters `p` over the window; returns the
// residual sum of squares.
double Evaluate(const VecP& p, Window* w) {
  const Model m = Model::FromVector(p.head<kParams>());
  const int n = w->n;
  auto& jac = w->jacobian;
  auto& res = w->residual;
  double rss = 0.0;
  {
    // Three simple loops over raw, non-aliasing pointers, with Eigen's SIMD
    // exp in the middle, so that all of it runs vectorised.
    if (w->exponent.size() < static_cast<size_t>(n)) w->exponent.resize(n);
    const double* __restrict dx = w->dx.data();
    const double* __restrict dy = w->dy.data();
    const double* __restrict v = w->v.data();
    double* __restrict t = w->exponent.data();
    for (int i = 0; i < n; ++i) {
      const double ex = dx[i] - m.x0, ey = dy[i] - m.y0;
      t[i] = -0.5 * (m.a * ex * ex + 2.0 * m.b * ex * ey + m.c * ey * ey);
    }
    Eigen::Map<Eigen::ArrayXd> exponent(t, n);
    exponent = exponent.exp();
    double* __restrict r = res.data();
    const Eigen::Index stride = jac.rows();
    double* __restrict j0 = jac.data();
    double* __restrict j1 = j0 + stride;
    double* __restrict j2 = j1 + stride;
    double* __restrict j3 = j2 + stride;
    double* __restrict j4 = j3 + stride;
    double* __restrict j5 = j4 + stride;
    double* __restrict j6 = j5 + stride;
    const double x0 = m.x0, y0 = m.y0, a = m.a, b = m.b, c = m.c, amp = m.amp, bg = m.bg;
    for (int i = 0; i < n; ++i) {
      const double ex = dx[i] - x0, ey = dy[i] - y0;
      const double e = t[i];
      const double g = amp * e;
      r[i] = v[i] - (bg + g);
      j0[i] = g * (a * ex + b * ey);
      j1[i] = g * (b * ex + c * ey);
      j2[i] = -0.5 * g * ex * ex;
      j3[i] = -g * ex * ey;
      j4[i] = -0.5 * g * ey * ey;
      j5[i] = e;
      j6[i] = 1.0;
    }
  }
  int col = kParams;
  const double* held = w->held_basis.data();
  for (size_t k = 0; k < w->joint.size(); ++k) {
    const Model& s = w->joint[k];  // the shape (and the centre, if held)
    if (!w->joint_moves[k]) {
      const double amp = p(col);
      double* __restrict r = res.data();
      double* __restrict j = jac.data() + col * jac.rows();
      const double* __restrict e = held;
      for (int i = 0; i < n; ++i) {
        r[i] -= amp * e[i];
        j[i] = e[i];
      }
      held += n;
      col += 1;
      continue;
    }
    const double x0 = p(col), y0 = p(col + 1), amp = p(col + 2);
    for (int i = 0; i < n; ++i) {
      const double ex = w->dx[i] - x0, ey = w->dy[i] - y0;
      const double e = ExpNonPositive(-0.5 * (s.a * ex * ex + 2.0 * s.b * ex * ey + s.c * ey * ey));
      const double g = amp * e;
      res(i) -= g;
      jac(i, col) = g * (s.a * ex + s.b * ey);
      jac(i, col + 1) = g * (s.b * ex + s.c * ey);
      jac(i, col + 2) = e;
    }
    col += 3;
  }
  for (int i = 0; i < n; ++i) rss += res(i) * res(i);
  return rss;
}

// Changes of the cost below this share of it do not matter: with N pixels
// they move the parameters by about √(1e-7·N) ≈ 0.5 % of their standard
// deviations (N ≈ 250). On noise-free data the cost falls by orders of
// magnitude per step until rounding, so this stops there too. Much tighter
// chases the gradient's rounding, amplified by weakly determined
// parameters (a joint neighbour's centre outside the window).
constexpr double kRelativeTolerance = 1e-7;
// Nor do changes below this share of the noise variance s² = rss / dof: a
// step whose promised decrease δᵀJᵀJδ is 0.01·s² moves the parameters by
// 0.1 of their standard deviations in all (and LM's last steps shrink
// faster than linearly, so the distance left is far smaller). On noisy
// windows, where weakly determined shapes make LM crawl along a flat valley
// (one fit in six at noise 0.3 ran out of iterations), this is what
// stops it; on noise-free data rss, and with it this bound, vanishes.
constexpr double kNoiseTolerance = 1e-2;

// The cost change below which LM stops (see the two tolerances).
double StopTolerance(double rss, int pixels, int params) {
  return std::max(kRelativeTolerance * rss, kNoiseTolerance * rss / std::max(pixels - params, 1));
}

// Whether a step moves the column's centre by less than 1e-7 px and its
// shape by less than 1e-7 relative.
template <typename V>
bool SmallMove(const V& step, const V& p) {
  const double a = p(2), c = p(4);
  return std::abs(step(0)) < 1e-7 && std::abs(step(1)) < 1e-7 && std::abs(step(2)) < 1e-7 * a &&
         std::abs(step(4)) < 1e-7 * c && std::abs(step(3)) < 1e-7 * std::sqrt(a * c);
}

// JᵀJ and Jᵀr by column dot products: at 7 to 25 columns this is several
// times faster than a general matrix product, whose packing dominates.
template <typename J, typename R>
void NormalEquations(const J& jac, const R& res, MatP* normal, VecP* gradient) {
  const int np = static_cast<int>(jac.cols());
  for (int a = 0; a < np; ++a) {
    for (int b = a; b < np; ++b) (*normal)(a, b) = (*normal)(b, a) = jac.col(a).dot(jac.col(b));
    (*gradient)(a) = jac.col(a).dot(res);
  }
}

// Where a fit may still end up accepted (see Judge), with room to spare:
// one that leaves it by half again its bounds is sliding off its column (to
// a neighbour, into the background or a width of the whole window) and
// would crawl there for many iterations only to be rejected.
struct Plausible {
  double x = 0.0, y = 0.0;                  // the detection, relative to the window
  double max_shift = 0.0;                   // px
  double min_width = 0.0, max_width = 0.0;  // px

  bool Holds(const Model& m) const {
    const double half_tr = 0.5 * (m.a + m.c), det = m.a * m.c - m.b * m.b;
    const double root = std::sqrt(std::max(half_tr * half_tr - det, 0.0));
    // Widths are 1/√ of the precision matrix's eigenvalues.
    const double widest2 = 1.0 / (half_tr - root), narrowest2 = 1.0 / (half_tr + root);
    return std::hypot(m.x0 - x, m.y0 - y) <= max_shift && narrowest2 >= min_width * min_width &&
           widest2 <= max_width * max_width;
  }
};
constexpr double kPlausibleSlack = 1.5;

struct LmResult {
  Model model;  // centre relative to the window
  MatP normal;  // JᵀJ at the solution, all parameters
  double rss = 0.0;
  int iterations = 0;
  bool converged = false;
};

// Levenberg–Marquardt with Marquardt's diagonal scaling from `start` (and
// the window's joint neighbours); it stops early, judged as converged,
// where the fit leaves `plausible`.
LmResult LevenbergMarquardt(const Model& start, int max_iterations, const Plausible& plausible,
                            Window* w) {
  const int n = w->n;
  VecP p = PackParameters(start, *w);
  const int np = static_cast<int>(p.size());
  // Grown, never shrunk: the scratch is reused for every column of a thread.
  if (w->jacobian.rows() < n || w->jacobian.cols() != np) {
    w->jacobian.resize(std::max<Eigen::Index>(n, w->jacobian.rows()), np);
  }
  if (w->residual.size() < n) w->residual.resize(n);
  LmResult out;
  out.rss = Evaluate(p, w);
  auto jac = w->jacobian.topRows(n);
  auto res = w->residual.head(n);
  MatP normal(np, np);
  VecP gradient(np);
  NormalEquations(jac, res, &normal, &gradient);
  double lambda = 1e-3, nu = 2.0;
  for (int it = 1; it <= max_iterations; ++it) {
    out.iterations = it;
    MatP damped = normal;
    // The floor keeps the system solvable where a parameter has no effect
    // (a flat window: the centre and shape do not change the model).
    const VecP scale = (normal.diagonal().array() + 1e-12).matrix();
    damped.diagonal() += lambda * scale;
    const VecP step = Eigen::LDLT<MatP>(damped).solve(gradient);
    if (!step.allFinite()) break;
    // The decrease the step promises (Gauss–Newton's quadratic model): when
    // it is below the noise's or the arithmetic's precision, the minimum is
    // reached.
    if (step.dot(gradient) <= StopTolerance(out.rss, n, np) + 1e-300) {
      out.converged = true;
      break;
    }
    const VecP trial = p + step;
    const double trial_rss = IsValid(trial) ? Evaluate(trial, w) : HUGE_VAL;
    if (!(trial_rss <= out.rss)) {
      // Nielsen's damping: raised ever faster while steps fail.
      lambda *= nu;
      nu *= 2.0;
      // A step too short to matter that still does not lower the cost:
      // the minimum, to the arithmetic's precision.
      if (SmallMove(step, p)) {
        out.converged = true;
        break;
      }
      continue;
    }
    const double decrease = out.rss - trial_rss;
    // The decrease the damped quadratic model predicted: hᵀg + λ·hᵀDh.
    const double predicted = step.dot(gradient) + lambda * step.dot(scale.cwiseProduct(step));
    p = trial;
    out.rss = trial_rss;
    NormalEquations(jac, res, &normal, &gradient);
    if (!plausible.Holds(Model::FromVector(p.head<kParams>()))) {
      // Judged like a converged fit, it fails with where it was heading.
      out.converged = true;
      break;
    }
    // ... and after a success set by how well the quadratic model predicted
    // the decrease ρ: lowered 3× at ρ = 1, kept at ½, doubled near 0.
    const double t = 2.0 * decrease / std::max(predicted, 1e-300) - 1.0;
    lambda = std::max(lambda * std::max(1.0 / 3.0, 1.0 - t * t * t), 1e-12);
    nu = 2.0;
    if (SmallMove(step, p) || decrease <= StopTolerance(out.rss, n, np)) {
      out.converged = true;
      break;
    }
  }
  out.model = Model::FromVector(p.head<kParams>());
  out.normal = std::move(normal);
  return out;
}

// The parameter-wise mean of two models; a peak if both are (the mean of
// two positive definite precision matrices is positive definite).
Model Mean(const Model& p, const Model& q) {
  return Model::FromVector(0.5 * (p.AsVector() + q.AsVector()));
}

struct Shape {
  double sigma_x, sigma_y, rotation;
};

// The widths along the Gaussian's axes and the axis angle, from the
// precision matrix; the angle is folded into (-π/4, π/4] so that σx is the
// width nearest to the x direction.
Shape ShapeOf(const Model& m) {
  const double det = m.a * m.c - m.b * m.b;
  const double sxx = m.c / det, syy = m.a / det, sxy = -m.b / det;  // the covariance
  double theta = 0.5 * std::atan2(2.0 * sxy, sxx - syy);            // [-π/2, π/2]
  if (theta > M_PI / 4) theta -= M_PI / 2;
  if (theta <= -M_PI / 4) theta += M_PI / 2;
  const double cs = std::cos(theta), sn = std::sin(theta);
  const double var_u = cs * cs * sxx + 2.0 * cs * sn * sxy + sn * sn * syy;
  const double var_v = sn * sn * sxx - 2.0 * cs * sn * sxy + cs * cs * syy;
  return {std::sqrt(std::max(var_u, 0.0)), std::sqrt(std::max(var_v, 0.0)), theta};
}

ColumnFit Describe(const Model& m, ColumnFitStatus status) {
  const Shape s = ShapeOf(m);
  ColumnFit f;
  f.x = m.x0;
  f.y = m.y0;
  f.amplitude = m.amp;
  f.sigma_x = s.sigma_x;
  f.sigma_y = s.sigma_y;
  f.rotation = s.rotation;
  f.intensity = 2.0 * M_PI * m.amp * s.sigma_x * s.sigma_y;
  f.background = m.bg;
  f.status = status;
  return f;
}

// A failed fit's report: the detection's position and model, the
// fallback uncertainty.
ColumnFit Fallback(const Model& initial, const ColumnInput& in, ColumnFitStatus status,
                   const GaussianRefineOptions& options) {
  ColumnFit f = Describe(initial, status);
  f.x = in.x;
  f.y = in.y;
  f.x_err = f.y_err = options.fallback_error_px;
  return f;
}

// Judges a converged fit against the detection (see the file comment).
ColumnFitStatus Judge(const LmResult& lm, const ColumnInput& in, const Model& absolute,
                      double amp_err, const GaussianRefineOptions& options) {
  if (!lm.converged) return ColumnFitStatus::kNotConverged;
  // A peak no larger than a few of its own standard errors is noise (or a
  // flat patch, where the fit drives it to zero).
  if (!absolute.IsPeak() || !(absolute.amp > kMinPeakSignificance * amp_err) ||
      !(absolute.amp > 1e-6 * std::abs(absolute.bg))) {
    return ColumnFitStatus::kNoPeak;
  }
  const Shape s = ShapeOf(absolute);
  const double lo = options.min_sigma_ratio * in.sigma, hi = options.max_sigma_ratio * in.sigma;
  if (!(s.sigma_x >= lo && s.sigma_x <= hi && s.sigma_y >= lo && s.sigma_y <= hi)) {
    return ColumnFitStatus::kBadShape;
  }
  if (!(std::hypot(absolute.x0 - in.x, absolute.y0 - in.y) <=
        options.max_shift_sigmas * in.sigma)) {
    return ColumnFitStatus::kWandered;
  }
  return ColumnFitStatus::kOk;
}

// For each column, the others whose models can reach into its window.
std::vector<Neighbours> FindNeighbours(const std::vector<ColumnInput>& cols) {
  const int n = static_cast<int>(cols.size());
  std::vector<Neighbours> out(n);
  if (n == 0) return out;
  double max_reach = 0.0;
  double min_x = HUGE_VAL, min_y = HUGE_VAL;
  for (const ColumnInput& c : cols) {
    max_reach = std::max(max_reach, std::max(c.radius, kNeighbourReachSigmas * c.sigma));
    min_x = std::min(min_x, c.x);
    min_y = std::min(min_y, c.y);
  }
  // Cells at least as large as any reach: neighbours lie in the 3×3 cells
  // around a column's. The grid is a sorted list of (cell, index).
  const double cell = 2.0 * max_reach;
  auto cell_of = [&](double v, double lo) { return static_cast<int64_t>((v - lo) / cell); };
  constexpr int64_t kStride = int64_t{1} << 31;
  std::vector<std::pair<int64_t, int>> grid(n);
  for (int i = 0; i < n; ++i) {
    grid[i] = {cell_of(cols[i].y, min_y) * kStride + cell_of(cols[i].x, min_x), i};
  }
  std::sort(grid.begin(), grid.end());
  std::vector<std::pair<double, int>> near;
  for (int i = 0; i < n; ++i) {
    near.clear();
    const int64_t cx = cell_of(cols[i].x, min_x), cy = cell_of(cols[i].y, min_y);
    for (int64_t gy = cy - 1; gy <= cy + 1; ++gy) {
      for (int64_t gx = cx - 1; gx <= cx + 1; ++gx) {
        if (gx < 0 || gy < 0) continue;
        const int64_t key = gy * kStride + gx;
        auto it = std::lower_bound(grid.begin(), grid.end(), std::make_pair(key, -1));
        for (; it != grid.end() && it->first == key; ++it) {
          const int j = it->second;
          if (j == i) continue;
          const double d = std::hypot(cols[j].x - cols[i].x, cols[j].y - cols[i].y);
          if (d < cols[i].radius + kNeighbourReachSigmas * cols[j].sigma) near.push_back({d, j});
        }
      }
    }
    // The closest, if their Gaussians reach deep into the window (beyond
    // 2σ from the window's edge they are below 14 % of their peak there),
    // are fitted jointly; the rest subtracted.
    std::sort(near.begin(), near.end());
    for (const auto& [d, j] : near) {
      const bool close = d < cols[i].radius + kJointReachSigmas * cols[j].sigma;
      out[i].coupled |= d < cols[i].radius + kCoupledReachSigmas * cols[j].sigma;
      if (close && static_cast<int>(out[i].joint.size()) < kMaxJoint) {
        out[i].joint.push_back(j);
      } else {
        out[i].subtracted.push_back(j);
      }
    }
  }
  return out;
}

// What a column's fit needs to judge, after a pass, whether its neighbours'
// new models would move it: the window it was fitted in and the first two
// rows of (JᵀJ)⁻¹ over its own parameters (a centre shift per unit change
// of the data, by least squares), with the residual variance.
struct Sensitivity {
  bool valid = false;
  double cx = 0.0, cy = 0.0;               // the window's centre, px
  Model model;                             // the fit, centre relative to (cx, cy)
  Eigen::Matrix<double, 2, kParams> gain;  // rows x0, y0 of (JᵀJ)⁻¹
  double variance = 0.0;                   // s² = rss / dof
};

// A refit moves the centre by at most this many of its standard deviations
// when skipped: a bias of 0.1 SD adds 0.5 % to the error's spread.
constexpr double kRefitShiftSds = 0.1;

// Whether the change of a column's neighbours' models from `before` to
// `after` moves its fit (by one Gauss–Newton step from it, which is exact
// for a change this small) by more than kRefitShiftSds of its standard
// deviation along x or y. Joint neighbours are counted as subtracted: their
// amplitudes, fitted with the column, would absorb part of the change, so
// this errs towards refitting.
bool NeedsRefit(const cv::Mat& image, const Sensitivity& sens, double radius,
                const Neighbours& neighbours, const std::vector<Model>& before,
                const std::vector<Model>& after, std::vector<double>* scratch) {
  const int r = static_cast<int>(std::ceil(radius));
  const int ix = static_cast<int>(std::lround(sens.cx)),
            iy = static_cast<int>(std::lround(sens.cy));
  const int x0 = std::max(ix - r, 0), x1 = std::min(ix + r, image.cols - 1);
  const int y0 = std::max(iy - r, 0), y1 = std::min(iy + r, image.rows - 1);
  const int pw = x1 - x0 + 1, ph = y1 - y0 + 1;
  if (pw <= 0 || ph <= 0) return true;
  scratch->assign(static_cast<size_t>(pw) * ph, 0.0);
  bool changed = false;
  for (const std::vector<int>* list : {&neighbours.joint, &neighbours.subtracted}) {
    for (int j : *list) {
      const Model& b = before[j];
      const Model& a = after[j];
      if (a.x0 == b.x0 && a.y0 == b.y0 && a.a == b.a && a.b == b.b && a.c == b.c &&
          a.amp == b.amp) {
        continue;
      }
      changed = true;
      ForEachReach(a, x0, x1, y0, y1, [&](int x, int y, double g) {
        (*scratch)[static_cast<size_t>(y - y0) * pw + (x - x0)] += g;
      });
      ForEachReach(b, x0, x1, y0, y1, [&](int x, int y, double g) {
        (*scratch)[static_cast<size_t>(y - y0) * pw + (x - x0)] -= g;
      });
    }
  }
  if (!changed) return false;
  // Jᵀ·Δ over the window, J the column's own Jacobian at its fit; the data
  // lose what the neighbours gain, hence the sign.
  const Model& m = sens.model;
  Eigen::Matrix<double, kParams, 1> g = Eigen::Matrix<double, kParams, 1>::Zero();
  const double r2 = radius * radius;
  for (int y = y0; y <= y1; ++y) {
    const double dy = y - sens.cy, ey = dy - m.y0;
    const double* row = scratch->data() + static_cast<size_t>(y - y0) * pw - x0;
    for (int x = x0; x <= x1; ++x) {
      const double dx = x - sens.cx;
      if (dx * dx + dy * dy > r2 || row[x] == 0.0) continue;
      const double ex = dx - m.x0;
      const double e = ExpNonPositive(-0.5 * (m.a * ex * ex + 2.0 * m.b * ex * ey + m.c * ey * ey));
      const double amp_e = m.amp * e, d = -row[x];
      g(0) += d * amp_e * (m.a * ex + m.b * ey);
      g(1) += d * amp_e * (m.b * ex + m.c * ey);
      g(2) += d * -0.5 * amp_e * ex * ex;
      g(3) += d * -amp_e * ex * ey;
      g(4) += d * -0.5 * amp_e * ey * ey;
      g(5) += d * e;
      g(6) += d;
    }
  }
  const Eigen::Vector2d shift = sens.gain * g;
  const double limit2 = kRefitShiftSds * kRefitShiftSds * sens.variance;
  return !(shift(0) * shift(0) <= limit2 * sens.gain(0, 0) &&
           shift(1) * shift(1) <= limit2 * sens.gain(1, 1));
}

// The model of an accepted fit, moved to (x, y).
Model FromFit(const ColumnFit& f, double x, double y) {
  // P = R·diag(1/σx², 1/σy²)·Rᵀ, R the rotation by f.rotation.
  const double cs = std::cos(f.rotation), sn = std::sin(f.rotation);
  const double pu = 1.0 / (f.sigma_x * f.sigma_x), pv = 1.0 / (f.sigma_y * f.sigma_y);
  Model m;
  m.x0 = x;
  m.y0 = y;
  m.a = cs * cs * pu + sn * sn * pv;
  m.b = cs * sn * (pu - pv);
  m.c = sn * sn * pu + cs * cs * pv;
  m.amp = f.amplitude;
  m.bg = f.background;
  return m;
}

// For each column, the index of the accepted earlier fit nearest to it
// within kEarlierMatchSigmas of its blob's sigma, or -1.
constexpr double kEarlierMatchSigmas = 0.5;
// An earlier fit's width sizes the window only within these multiples of
// the blob's sigma (a fit's width is never far from the detection's scale;
// bounds keep a wild one from making the window tiny or huge).
constexpr double kMinWidthRatio = 0.5, kMaxWidthRatio = 1.5;
std::vector<int> MatchEarlier(const std::vector<ColumnInput>& cols,
                              absl::Span<const ColumnFit> earlier) {
  const int n = static_cast<int>(cols.size());
  std::vector<int> out(n, -1);
  if (earlier.empty() || n == 0) return out;
  double reach = 0.0;
  for (const ColumnInput& c : cols) reach = std::max(reach, kEarlierMatchSigmas * c.sigma);
  // Cells as large as the widest reach: a match lies in the 3×3 around a
  // column's cell. The grid is a sorted list of (cell, index).
  const double cell = std::max(reach, 1e-3);
  auto cell_of = [&](double v) { return static_cast<int64_t>(std::floor(v / cell)); };
  constexpr int64_t kStride = int64_t{1} << 31;
  std::vector<std::pair<int64_t, int>> grid;
  for (int k = 0; k < static_cast<int>(earlier.size()); ++k) {
    const ColumnFit& f = earlier[k];
    const bool usable = f.status == ColumnFitStatus::kOk && std::isfinite(f.x) &&
                        std::isfinite(f.y) && f.sigma_x > 0.0 && f.sigma_y > 0.0 &&
                        f.amplitude > 0.0 && std::abs(f.x) < 1e9 && std::abs(f.y) < 1e9;
    if (usable) grid.push_back({cell_of(f.y) * kStride + cell_of(f.x), k});
  }
  std::sort(grid.begin(), grid.end());
  for (int i = 0; i < n; ++i) {
    const ColumnInput& c = cols[i];
    double best = kEarlierMatchSigmas * c.sigma;
    for (int64_t gy = cell_of(c.y) - 1; gy <= cell_of(c.y) + 1; ++gy) {
      for (int64_t gx = cell_of(c.x) - 1; gx <= cell_of(c.x) + 1; ++gx) {
        const int64_t key = gy * kStride + gx;
        auto it = std::lower_bound(grid.begin(), grid.end(), std::make_pair(key, -1));
        for (; it != grid.end() && it->first == key; ++it) {
          const ColumnFit& f = earlier[it->second];
          const double d = std::hypot(f.x - c.x, f.y - c.y);
          if (d <= best) best = d, out[i] = it->second;
        }
      }
    }
  }
  return out;
}

Window& ThreadWindow() {
  thread_local Window window;
  return window;
}

}  // namespace

absl::Status RefineGaussian(const cv::Mat& image, absl::Span<Blob> blobs,
                            std::vector<ColumnFit>* fits, const GaussianRefineOptions& options,
                            ExecutionContext* context, absl::Span<const ColumnFit> previous) {
  if (absl::Status s = options.Validate(); !s.ok()) return s;
  if (image.empty() || image.type() != CV_32FC1) {
    return absl::InvalidArgumentError(
        "gaussian refine: image must be a non-empty single-channel float32");
  }
  if (fits == nullptr || context == nullptr) {
    return absl::InvalidArgumentError("gaussian refine: fits and context must not be null");
  }
  const int n = static_cast<int>(blobs.size());
  std::vector<ColumnInput> cols(n);
  for (int i = 0; i < n; ++i) {
    const Blob& b = blobs[i];
    if (!(std::isfinite(b.x) && std::isfinite(b.y) && std::isfinite(b.sigma) && b.sigma > 0.0)) {
      return absl::InvalidArgumentError(
          absl::StrCat("gaussian refine: blob ", i, " needs finite x, y and a positive sigma"));
    }
    cols[i] = {b.x, b.y, b.sigma, options.window_sigmas * b.sigma};
  }
  // The window is sized in the column's own width where an earlier fit
  // measured it: the LoG scale that sets the blob's sigma overestimates the
  // width (on the cached-frame benchmark's YBCO frame, blob σ 4.9 px
  // against fits of 3.8), which would cost 1.6× the pixels for nothing.
  const std::vector<int> earlier = MatchEarlier(cols, previous);
  for (int i = 0; i < n; ++i) {
    if (earlier[i] < 0) continue;
    const ColumnFit& f = previous[earlier[i]];
    const double width = std::clamp(std::sqrt(f.sigma_x * f.sigma_y),
                                    kMinWidthRatio * cols[i].sigma, kMaxWidthRatio * cols[i].sigma);
    cols[i].radius = options.window_sigmas * width;
  }
  std::vector<Neighbours> neighbours = FindNeighbours(cols);
  const std::vector<Model> no_models;

  // The detections' models, the first pass's neighbours: an earlier fit of
  // the column where there is one, else the detection's.
  std::vector<Model> initial(n);
  context->ParallelFor(n, [&](int i) {
    if (earlier[i] >= 0) {
      const ColumnFit& f = previous[earlier[i]];
      initial[i] = FromFit(f, f.x, f.y);
      return;
    }
    Window& w = ThreadWindow();
    GatherWindow(image, cols[i].x, cols[i].y, cols[i].radius, Neighbours{}, no_models, &w);
    initial[i] = InitialModel(w, cols[i].sigma, &w.scratch);
  });

  fits->assign(n, ColumnFit{});
  std::vector<Model> current = initial, next(n);
  // Whether current[i] is a fit (not the detection's model).
  std::vector<char> current_is_fit(n, 0);
  // Per column, from its last fit; and whether it is refitted in the pass.
  std::vector<Sensitivity> sensitivity(n);
  std::vector<char> refit(n, 1);
  for (int pass = 0; pass < options.passes; ++pass) {
    context->ParallelFor(n, [&](int i) {
      const ColumnInput& in = cols[i];
      const Model& start = current[i];
      if (pass > 0 && !refit[i]) {
        next[i] = start;  // and (*fits)[i] stays
        return;
      }
      Window& w = ThreadWindow();
      GatherWindow(image, start.x0, start.y0, in.radius, neighbours[i], current, &w);
      ColumnFit& fit = (*fits)[i];
      sensitivity[i].valid = false;
      if (w.n < kMinPixels + 3 * static_cast<int>(w.joint.size())) {
        next[i] = initial[i];
        fit = Fallback(initial[i], in, ColumnFitStatus::kTooFewPixels, options);
        return;
      }
      Model relative = start;
      relative.x0 -= w.cx;
      relative.y0 -= w.cy;
      const Plausible plausible{in.x - w.cx, in.y - w.cy,
                                kPlausibleSlack * options.max_shift_sigmas * in.sigma,
                                options.min_sigma_ratio * in.sigma / kPlausibleSlack,
                                kPlausibleSlack * options.max_sigma_ratio * in.sigma};
      const LmResult lm = LevenbergMarquardt(relative, options.max_iterations, plausible, &w);
      Model absolute = lm.model;
      absolute.x0 += w.cx;
      absolute.y0 += w.cy;
      // Covariance of the estimate: s²·(JᵀJ)⁻¹, s² the residual variance.
      const int np = static_cast<int>(lm.normal.rows());
      const double dof = std::max(w.n - np, 1);
      const MatP cov = (lm.rss / dof) * Eigen::LDLT<MatP>(lm.normal).solve(MatP::Identity(np, np));
      const ColumnFitStatus status =
          Judge(lm, in, absolute, std::sqrt(std::max(cov(5, 5), 0.0)), options);
      if (status != ColumnFitStatus::kOk) {
        // Neighbours are better served by the detection's model than by a
        // fit that slid off.
        next[i] = initial[i];
        fit = Fallback(initial[i], in, status, options);
        fit.iterations = lm.iterations;
        return;
      }
      // From the third pass on, neighbours see the mean of the last two
      // fits: columns closer than about 3σ pull on each other so strongly
      // that plain alternation overshoots back and forth (each fit absorbs
      // its neighbour's error with the opposite sign); the mean damps that
      // 2-cycle, while the second pass still sees the first pass's fits
      // unchanged, as weakly coupled columns want.
      next[i] = pass >= 2 && current_is_fit[i] ? Mean(start, absolute) : absolute;
      fit = Describe(absolute, status);
      fit.x_err = std::sqrt(std::max(cov(0, 0), 0.0));
      fit.y_err = std::sqrt(std::max(cov(1, 1), 0.0));
      if (!std::isfinite(fit.x_err) || !std::isfinite(fit.y_err)) {
        fit.x_err = fit.y_err = options.fallback_error_px;
      }
      fit.iterations = lm.iterations;
      Sensitivity& sens = sensitivity[i];
      sens.cx = w.cx;
      sens.cy = w.cy;
      sens.model = lm.model;
      sens.variance = lm.rss / dof;
      sens.gain = cov.topLeftCorner<2, kParams>() / std::max(sens.variance, 1e-300);
      sens.valid = sens.gain.allFinite() && sens.variance > 0.0;
    });
    std::swap(current, next);
    for (int i = 0; i < n; ++i) current_is_fit[i] = (*fits)[i].status == ColumnFitStatus::kOk;
    if (pass + 1 < options.passes) {
      // Only columns whose neighbours' new models would move them are
      // refitted; `next` still holds the models this pass saw.
      context->ParallelFor(n, [&](int i) {
        if (!neighbours[i].coupled) {
          refit[i] = 0;
        } else if (!current_is_fit[i] || !sensitivity[i].valid) {
          refit[i] = 1;
        } else {
          refit[i] = NeedsRefit(image, sensitivity[i], cols[i].radius, neighbours[i], next, current,
                                &ThreadWindow().scratch);
        }
      });
    }
  }
  for (int i = 0; i < n; ++i) {
    if ((*fits)[i].status == ColumnFitStatus::kOk) {
      blobs[i].x = (*fits)[i].x;
      blobs[i].y = (*fits)[i].y;
    }
  }
  return absl::OkStatus();
}

}  // namespace logstar
