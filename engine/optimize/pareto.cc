#include "engine/optimize/pareto.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <functional>
#include <limits>
#include <numeric>
#include <utility>
#include <vector>

#if defined(__x86_64__)
#include <emmintrin.h>
#endif

#include "absl/container/inlined_vector.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/types/span.h"
#include "engine/base/status_macros.h"
#include "engine/optimize/gp_kernels.h"

namespace logstar {
namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();

bool IsFinite(const Objectives2& p) { return std::isfinite(p[0]) && std::isfinite(p[1]); }

absl::Status CheckFinite(absl::Span<const Objectives2> points, const char* what) {
  for (size_t i = 0; i < points.size(); ++i) {
    if (!IsFinite(points[i])) {
      return absl::InvalidArgumentError(
          absl::StrCat(what, " ", i, " is not finite: (", points[i][0], ", ", points[i][1], ")"));
    }
  }
  return absl::OkStatus();
}

// The front by one sort and a sweep: after ordering by (f1, f2, index), a
// point is dominated or a later duplicate exactly when some earlier point has
// f2 <= its f2, so it is on the front iff its f2 is below every earlier f2.
std::vector<int> FrontOfFinite(absl::Span<const Objectives2> points) {
  std::vector<int> order(points.size());
  std::iota(order.begin(), order.end(), 0);
  std::sort(order.begin(), order.end(), [&](int a, int b) {
    if (points[a][0] != points[b][0]) return points[a][0] < points[b][0];
    if (points[a][1] != points[b][1]) return points[a][1] < points[b][1];
    return a < b;
  });
  std::vector<int> front;
  double best_f2 = kInf;
  for (int i : order) {
    if (points[i][1] < best_f2) {
      front.push_back(i);
      best_f2 = points[i][1];
    }
  }
  return front;
}

// τ(z) = E[(z - Z)^+] = z Φ(z) + φ(z) for a standard normal Z, in place
// for z[0, n) (scratch holds n doubles). The EHVI needs it at the front's
// breakpoints for every candidate, and glibc's erfc plus exp cost ~25 ns a
// pair; this costs a few. For z <= 0, τ(z) = φ(x) Q(x) with x = -z and
// Q(x) = 1 - x M(x), M the Mills ratio; for z > 0, τ(z) = z + τ(-z).
// Q(x) (1 + x/4)² is smooth on [0, 38] and tends to a constant; it is a
// polynomial in t = 2u/u_max - 1, u = x / (x + 4): the degree-22 Chebyshev
// interpolant (computed with mpmath at 50 digits; omitted terms < 6e-17)
// in the power basis, whose coefficients sum to ~1 in magnitude, so the even
// and odd halves can run as two short Horner chains. Relative error < 1e-13;
// beyond |z| = 38, τ(z) is 0 or z to double precision.
constexpr double kTauMaxAbs = 38.0;
constexpr double kTauScale = 4.0;
constexpr double kTauT = 2.0 * (kTauMaxAbs + kTauScale) / kTauMaxAbs;  // 2 / u_max
constexpr double kInvSqrt2Pi = 0.39894228040143267794;
constexpr double kTauEven[12] = {
    0.24583806010575651845,    0.25928729733714156405,    0.036331210382800623675,
    -0.0036754252221752039164, 0.00035337769495127343315, -0.000044497540192685113481,
    7.2569157025971689964e-6,  -1.3016710933812745576e-6, 2.1888741631208098697e-7,
    -2.9730779915858888191e-8, 2.604685649940429076e-9,   -8.0610476812575344104e-11};
constexpr double kTauOdd[11] = {
    -0.33252129688080194507,   -0.12979609597314165436,    -0.00017291995474404984969,
    0.00068306920075528440263, -0.00010934089169696059181, 0.000014121029408280985475,
    -1.4209372811043428909e-6, 2.710335331520979798e-8,    3.610050677527899033e-8,
    -1.0314461362728625932e-8, 1.2017063463939263796e-9};

// c[0] + c[1] x + ... + c[N-1] x^(N-1) for T = double or two lanes of
// __m128d (Add/Mul below), unrolled.
inline double Add(double a, double b) { return a + b; }
inline double Mul(double a, double b) { return a * b; }
inline double Splat(double a, double) { return a; }
#if defined(__x86_64__)
inline __m128d Add(__m128d a, __m128d b) { return _mm_add_pd(a, b); }
inline __m128d Mul(__m128d a, __m128d b) { return _mm_mul_pd(a, b); }
inline __m128d Splat(double a, __m128d) { return _mm_set1_pd(a); }
#endif

template <typename T, size_t N>
inline T Horner(const double (&c)[N], T x) {
  T r = Splat(c[N - 1], x);
  [&]<size_t... I>(std::index_sequence<I...>) {
    ((r = Add(Mul(r, x), Splat(c[N - 2 - I], x))), ...);
  }
  (std::make_index_sequence<N - 1>());
  return r;
}

// τ(-x) from x in [0, kTauMaxAbs] and e = exp(-x²/2), for T = double or
// two lanes; the same operations in the same order either way.
template <typename T>
inline T TauOfNegative(T x, T e) {
  const T t = Add(Mul(x / Add(x, Splat(kTauScale, x)), Splat(kTauT, x)), Splat(-1.0, x));
  const T t2 = Mul(t, t);
  const T p = Add(Horner(kTauEven, t2), Mul(t, Horner(kTauOdd, t2)));
  const T w = Add(Splat(1.0, x), Mul(x, Splat(1.0 / kTauScale, x)));
  return Mul(Mul(Splat(kInvSqrt2Pi, x), e), p / Mul(w, w));
}

void StandardShortfall(double* z, double* scratch, int n) {
  for (int i = 0; i < n; ++i) {
    const double a = std::abs(z[i]);
    const double x = a < kTauMaxAbs ? a : kTauMaxAbs;
    scratch[i] = -0.5 * x * x;
  }
  internal::ExpNonPositive(scratch, n);
  int i = 0;
#if defined(__x86_64__)
  const __m128d sign = _mm_set1_pd(-0.0);
  const __m128d max_abs = _mm_set1_pd(kTauMaxAbs);
  const __m128d zero = _mm_setzero_pd();
  for (; i + 2 <= n; i += 2) {
    const __m128d zi = _mm_loadu_pd(z + i);
    const __m128d x = _mm_min_pd(_mm_andnot_pd(sign, zi), max_abs);
    const __m128d tail = TauOfNegative(x, _mm_loadu_pd(scratch + i));
    const __m128d negative = _mm_cmplt_pd(zi, zero);
    const __m128d positive_value = _mm_add_pd(zi, tail);
    _mm_storeu_pd(z + i,
                  _mm_or_pd(_mm_and_pd(negative, tail), _mm_andnot_pd(negative, positive_value)));
  }
#endif
  for (; i < n; ++i) {
    const double a = std::abs(z[i]);
    const double tail = TauOfNegative(a < kTauMaxAbs ? a : kTauMaxAbs, scratch[i]);
    z[i] = z[i] < 0.0 ? tail : z[i] + tail;
  }
}

// g(t) = E[(t - Y)^+] for Y ~ N(mu, sigma²) at each t of values[0, n), in
// place: sigma τ((t - mu) / sigma), or (t - mu)^+ when sigma = 0.
void ExpectedShortfall(double mu, double sigma, double* values, double* scratch, int n) {
  if (sigma == 0.0) {
    for (int i = 0; i < n; ++i) values[i] = std::max(values[i] - mu, 0.0);
    return;
  }
  const double inv_sigma = 1.0 / sigma;
  for (int i = 0; i < n; ++i) values[i] = (values[i] - mu) * inv_sigma;
  StandardShortfall(values, scratch, n);
  for (int i = 0; i < n; ++i) values[i] *= sigma;
}

}  // namespace

absl::StatusOr<std::vector<int>> ParetoFront(absl::Span<const Objectives2> points) {
  LOGSTAR_RETURN_IF_ERROR(CheckFinite(points, "point"));
  return FrontOfFinite(points);
}

absl::StatusOr<HypervolumeFront> HypervolumeFront::Create(absl::Span<const Objectives2> points,
                                                          const Objectives2& reference) {
  if (!IsFinite(reference)) {
    return absl::InvalidArgumentError(
        absl::StrCat("reference point is not finite: (", reference[0], ", ", reference[1], ")"));
  }
  LOGSTAR_RETURN_IF_ERROR(CheckFinite(points, "point"));
  std::vector<Objectives2> inside;
  for (const Objectives2& p : points) {
    if (p[0] < reference[0] && p[1] < reference[1]) inside.push_back(p);
  }
  HypervolumeFront result;
  result.reference_ = reference;
  for (int i : FrontOfFinite(inside)) result.front_.push_back(inside[i]);
  const size_t k = result.front_.size();
  result.lower_.resize(k + 1);
  result.upper_.resize(k + 1);
  result.height_.resize(k + 1);
  for (size_t i = 0; i <= k; ++i) {
    result.lower_[i] = i == 0 ? -kInf : result.front_[i - 1][0];
    result.upper_[i] = i < k ? result.front_[i][0] : reference[0];
    result.height_[i] = i == 0 ? reference[1] : result.front_[i - 1][1];
  }
  double hv = 0.0;
  for (size_t i = 1; i <= k; ++i) {
    hv += (result.upper_[i] - result.lower_[i]) * (reference[1] - result.height_[i]);
  }
  result.hypervolume_ = hv;
  return result;
}

double HypervolumeFront::Improvement(const Objectives2& point) const {
  if (!IsFinite(point)) return std::numeric_limits<double>::quiet_NaN();
  double improvement = 0.0;
  for (size_t i = 0; i < height_.size(); ++i) {
    const double width = upper_[i] - std::max(point[0], lower_[i]);
    const double height = height_[i] - point[1];
    if (width > 0.0 && height > 0.0) improvement += width * height;
  }
  return improvement;
}

double HypervolumeFront::ExpectedImprovement(const Objectives2& mean,
                                             const Objectives2& stddev) const {
  if (!IsFinite(mean) || !IsFinite(stddev) || !(stddev[0] >= 0.0) || !(stddev[1] >= 0.0)) {
    return std::numeric_limits<double>::quiet_NaN();
  }
  // Strip i contributes E[(upper - max(Y1, lower))^+] · E[(height - Y2)^+]
  // (independence), and the first factor is g1(upper) - g1(lower) with
  // g_k(t) = E[(t - Y_k)^+]; the strips share their edges, so g1 is needed
  // at upper edges and g2 at heights. g_k(t) < 1e-18 σ_k below
  // t = mean - kNegligibleZ σ: such edges count as 0, which bounds the work
  // to the strips near the candidate (upper edges rise and heights fall with
  // i, so those strips are one contiguous run found by binary search).
  constexpr double kNegligibleZ = 8.5;
  const double cut1 = mean[0] - kNegligibleZ * stddev[0];
  const double cut2 = mean[1] - kNegligibleZ * stddev[1];
  const int begin =
      static_cast<int>(std::lower_bound(upper_.begin(), upper_.end(), cut1) - upper_.begin());
  const int end = static_cast<int>(
      std::lower_bound(height_.begin(), height_.end(), cut2, std::greater<double>()) -
      height_.begin());
  if (begin >= end) return 0.0;
  const int count = end - begin;
  absl::InlinedVector<double, 96> buffer(3 * count);
  double* g1 = buffer.data();
  double* g2 = g1 + count;
  double* scratch = g2 + count;
  std::copy(upper_.begin() + begin, upper_.begin() + end, g1);
  std::copy(height_.begin() + begin, height_.begin() + end, g2);
  ExpectedShortfall(mean[0], stddev[0], g1, scratch, count);
  ExpectedShortfall(mean[1], stddev[1], g2, scratch, count);
  double ehvi = 0.0;
  double g1_lower = 0.0;  // the strip before `begin` has a negligible upper edge
  for (int i = 0; i < count; ++i) {
    ehvi += std::max(g1[i] - g1_lower, 0.0) * g2[i];  // max() absorbs rounding
    g1_lower = g1[i];
  }
  return ehvi;
}

absl::StatusOr<double> Hypervolume(absl::Span<const Objectives2> points,
                                   const Objectives2& reference) {
  LOGSTAR_ASSIGN_OR_RETURN(const HypervolumeFront front,
                           HypervolumeFront::Create(points, reference));
  return front.hypervolume();
}

absl::StatusOr<double> ExpectedHypervolumeImprovement(absl::Span<const Objectives2> points,
                                                      const Objectives2& reference,
                                                      const Objectives2& mean,
                                                      const Objectives2& stddev) {
  if (!IsFinite(mean)) return absl::InvalidArgumentError("EHVI mean is not finite");
  if (!IsFinite(stddev) || stddev[0] < 0.0 || stddev[1] < 0.0) {
    return absl::InvalidArgumentError(absl::StrCat("EHVI stddev must be finite and >= 0, got (",
                                                   stddev[0], ", ", stddev[1], ")"));
  }
  LOGSTAR_ASSIGN_OR_RETURN(const HypervolumeFront front,
                           HypervolumeFront::Create(points, reference));
  return front.ExpectedImprovement(mean, stddev);
}

absl::StatusOr<int> ChooseOnFront(absl::Span<const Objectives2> objectives,
                                  absl::Span<const int> front_indices, FrontChoiceRule rule,
                                  const Objectives2& weights, bool normalize) {
  if (front_indices.empty()) return absl::InvalidArgumentError("front_indices is empty");
  Objectives2 lo = {kInf, kInf};
  Objectives2 hi = {-kInf, -kInf};
  for (int index : front_indices) {
    if (index < 0 || static_cast<size_t>(index) >= objectives.size()) {
      return absl::InvalidArgumentError(
          absl::StrCat("front index ", index, " is outside [0, ", objectives.size(), ")"));
    }
    const Objectives2& p = objectives[index];
    if (!IsFinite(p)) {
      return absl::InvalidArgumentError(
          absl::StrCat("objectives of point ", index, " are not finite"));
    }
    for (int k = 0; k < 2; ++k) {
      lo[k] = std::min(lo[k], p[k]);
      hi[k] = std::max(hi[k], p[k]);
    }
  }
  if (rule == FrontChoiceRule::kWeights) {
    if (!IsFinite(weights) || weights[0] < 0.0 || weights[1] < 0.0 ||
        (weights[0] == 0.0 && weights[1] == 0.0)) {
      return absl::InvalidArgumentError(absl::StrCat(
          "weights must be finite, >= 0 and not both 0, got (", weights[0], ", ", weights[1], ")"));
    }
  }
  int best = -1;
  double best_score = kInf;
  for (int index : front_indices) {
    Objectives2 g;
    for (int k = 0; k < 2; ++k) {
      const double span = hi[k] - lo[k];
      g[k] = !normalize ? objectives[index][k]
                        : (span > 0.0 ? (objectives[index][k] - lo[k]) / span : 0.0);
    }
    double score = 0.0;
    switch (rule) {
      case FrontChoiceRule::kEuclidean:
        score = std::hypot(g[0], g[1]);
        break;
      case FrontChoiceRule::kChebyshev:
        score = std::max(g[0], g[1]);
        break;
      case FrontChoiceRule::kWeights:
        score = weights[0] * g[0] + weights[1] * g[1];
        break;
    }
    if (best < 0 || score < best_score || (score == best_score && index < best)) {
      best = index;
      best_score = score;
    }
  }
  return best;
}

}  // namespace logstar
