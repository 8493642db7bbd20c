#include "engine/optimize/gaussian_process.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <deque>
#include <limits>
#include <utility>
#include <vector>

#if defined(__x86_64__)
#include <immintrin.h>
#endif

#include <Eigen/Cholesky>
#include <Eigen/Core>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "engine/base/random.h"
#include "engine/base/status_macros.h"

namespace logstar {
namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();
constexpr double kLog2Pi = 1.8378770664093454836;
constexpr double kMaxJitter = 1e-2;
constexpr double kMinRelativePivot = 1e-13;

// ExpNonPositive (gaussian_process.h): Cody–Waite reduction
// x = k ln2 + r, |r| <= ln2 / 2, a degree-13 Taylor polynomial for e^r
// (truncation error < 2e-17) and 2^k built in the exponent bits. Four lanes
// with AVX2 and FMA where the CPU has them (chosen once, at run time; the
// engine is built for baseline x86-64), else two with SSE2. A ragged tail
// is padded and run through the same vector code, so every element gets the
// same bits whatever its position (results may differ in the last bit
// between CPUs with and without FMA).
constexpr double kExpLog2e = 1.4426950408889634074;
constexpr double kExpRound = 6755399441055744.0;  // 1.5 · 2^52: x + it rounds x to an integer
constexpr double kExpLn2Hi = 6.93147180369123816490e-01;
constexpr double kExpLn2Lo = 1.90821492927058770002e-10;
constexpr double kExpMin = -708.0;
constexpr double kExpTaylor[14] = {1.0,
                                   1.0,
                                   1.0 / 2,
                                   1.0 / 6,
                                   1.0 / 24,
                                   1.0 / 120,
                                   1.0 / 720,
                                   1.0 / 5040,
                                   1.0 / 40320,
                                   1.0 / 362880,
                                   1.0 / 3628800,
                                   1.0 / 39916800,
                                   1.0 / 479001600,
                                   1.0 / 6227020800};
constexpr int64_t kExpBias =
    1023 - int64_t{0x4338000000000000};  // exponent bias - bits of kExpRound

#if defined(__x86_64__)
__attribute__((target("avx2,fma"))) inline __m256d ExpAvx2(__m256d x) {
  const __m256d underflow = _mm256_cmp_pd(x, _mm256_set1_pd(kExpMin), _CMP_LT_OQ);
  x = _mm256_max_pd(x, _mm256_set1_pd(kExpMin));
  const __m256d round = _mm256_set1_pd(kExpRound);
  const __m256d t = _mm256_fmadd_pd(x, _mm256_set1_pd(kExpLog2e), round);
  const __m256d k = _mm256_sub_pd(t, round);
  __m256d r = _mm256_fnmadd_pd(k, _mm256_set1_pd(kExpLn2Hi), x);
  r = _mm256_fnmadd_pd(k, _mm256_set1_pd(kExpLn2Lo), r);
  __m256d p = _mm256_set1_pd(kExpTaylor[13]);
  for (int j = 12; j >= 0; --j) p = _mm256_fmadd_pd(p, r, _mm256_set1_pd(kExpTaylor[j]));
  const __m256i bits =
      _mm256_slli_epi64(_mm256_add_epi64(_mm256_castpd_si256(t), _mm256_set1_epi64x(kExpBias)), 52);
  return _mm256_andnot_pd(underflow, _mm256_mul_pd(p, _mm256_castsi256_pd(bits)));
}

__attribute__((target("avx2,fma"))) void ExpNonPositiveAvx2(double* v, int64_t n) {
  int64_t i = 0;
  for (; i + 4 <= n; i += 4) _mm256_storeu_pd(v + i, ExpAvx2(_mm256_loadu_pd(v + i)));
  if (i < n) {
    alignas(32) double tail[4] = {0.0, 0.0, 0.0, 0.0};
    std::copy(v + i, v + n, tail);
    _mm256_store_pd(tail, ExpAvx2(_mm256_load_pd(tail)));
    std::copy(tail, tail + (n - i), v + i);
  }
}

inline __m128d ExpSse2(__m128d x) {
  const __m128d underflow = _mm_cmplt_pd(x, _mm_set1_pd(kExpMin));
  x = _mm_max_pd(x, _mm_set1_pd(kExpMin));
  const __m128d round = _mm_set1_pd(kExpRound);
  const __m128d t = _mm_add_pd(_mm_mul_pd(x, _mm_set1_pd(kExpLog2e)), round);
  const __m128d k = _mm_sub_pd(t, round);
  const __m128d r = _mm_sub_pd(_mm_sub_pd(x, _mm_mul_pd(k, _mm_set1_pd(kExpLn2Hi))),
                               _mm_mul_pd(k, _mm_set1_pd(kExpLn2Lo)));
  __m128d p = _mm_set1_pd(kExpTaylor[13]);
  for (int j = 12; j >= 0; --j) p = _mm_add_pd(_mm_mul_pd(p, r), _mm_set1_pd(kExpTaylor[j]));
  const __m128i bits =
      _mm_slli_epi64(_mm_add_epi64(_mm_castpd_si128(t), _mm_set1_epi64x(kExpBias)), 52);
  return _mm_andnot_pd(underflow, _mm_mul_pd(p, _mm_castsi128_pd(bits)));
}

void ExpNonPositiveSse2(double* v, int64_t n) {
  int64_t i = 0;
  for (; i + 2 <= n; i += 2) _mm_storeu_pd(v + i, ExpSse2(_mm_loadu_pd(v + i)));
  if (i < n) v[i] = _mm_cvtsd_f64(ExpSse2(_mm_set_pd(0.0, v[i])));
}

bool HasAvx2Fma() {
  static const bool kHas = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  return kHas;
}

void ExpNonPositiveImpl(double* v, int64_t n) {
  if (HasAvx2Fma()) {
    ExpNonPositiveAvx2(v, n);
  } else {
    ExpNonPositiveSse2(v, n);
  }
}
#else
void ExpNonPositiveImpl(double* v, int64_t n) {
  for (int64_t i = 0; i < n; ++i) v[i] = std::exp(v[i]);
}
#endif

absl::Status CheckBounds(const char* name, double lo, double hi) {
  if (!(std::isfinite(lo) && std::isfinite(hi) && lo > 0.0 && lo <= hi)) {
    return absl::InvalidArgumentError(absl::StrCat("GaussianProcessOptions.", name,
                                                   "_min/_max must be finite with 0 < min <= max, "
                                                   "got [",
                                                   lo, ", ", hi, "]"));
  }
  return absl::OkStatus();
}

absl::Status CheckInputs(const Eigen::MatrixXd& x, const Eigen::VectorXd& y, bool unit_box) {
  if (x.rows() == 0) return absl::InvalidArgumentError("GP inputs are empty (no rows in x)");
  if (x.cols() == 0)
    return absl::InvalidArgumentError("GP inputs have no dimensions (x has 0 columns)");
  if (y.size() != x.rows()) {
    return absl::InvalidArgumentError(
        absl::StrCat("GP targets have ", y.size(), " values but x has ", x.rows(), " rows"));
  }
  for (Eigen::Index i = 0; i < x.rows(); ++i) {
    for (Eigen::Index j = 0; j < x.cols(); ++j) {
      const double v = x(i, j);
      if (!std::isfinite(v)) {
        return absl::InvalidArgumentError(
            absl::StrCat("GP input x(", i, ", ", j, ") is not finite: ", v));
      }
      if (unit_box && (v < 0.0 || v > 1.0)) {
        return absl::InvalidArgumentError(
            absl::StrCat("GP input x(", i, ", ", j, ") = ", v, " is outside the unit box [0, 1]"));
      }
    }
    if (!std::isfinite(y[i])) {
      return absl::InvalidArgumentError(absl::StrCat("GP target y(", i, ") is not finite: ", y[i]));
    }
  }
  return absl::OkStatus();
}

absl::Status CheckHyperparameters(const GpHyperparameters& h, Eigen::Index d) {
  if (static_cast<Eigen::Index>(h.length_scales.size()) != d) {
    return absl::InvalidArgumentError(absl::StrCat("GP hyperparameters have ",
                                                   h.length_scales.size(), " length scales for ", d,
                                                   " input dimensions"));
  }
  auto positive = [](double v) { return std::isfinite(v) && v > 0.0; };
  if (!positive(h.signal_variance)) {
    return absl::InvalidArgumentError(
        absl::StrCat("GP signal_variance must be finite and > 0, got ", h.signal_variance));
  }
  if (!positive(h.noise_variance)) {
    return absl::InvalidArgumentError(
        absl::StrCat("GP noise_variance must be finite and > 0, got ", h.noise_variance));
  }
  for (size_t j = 0; j < h.length_scales.size(); ++j) {
    if (!positive(h.length_scales[j])) {
      return absl::InvalidArgumentError(absl::StrCat(
          "GP length_scales[", j, "] must be finite and > 0, got ", h.length_scales[j]));
    }
  }
  return absl::OkStatus();
}

Eigen::VectorXd ToTheta(const GpHyperparameters& h) {
  const Eigen::Index d = static_cast<Eigen::Index>(h.length_scales.size());
  Eigen::VectorXd theta(d + 2);
  theta[0] = std::log(h.signal_variance);
  for (Eigen::Index j = 0; j < d; ++j) theta[1 + j] = std::log(h.length_scales[j]);
  theta[d + 1] = std::log(h.noise_variance);
  return theta;
}

GpHyperparameters FromTheta(const Eigen::VectorXd& theta) {
  const Eigen::Index d = theta.size() - 2;
  GpHyperparameters h;
  h.signal_variance = std::exp(theta[0]);
  h.length_scales.resize(d);
  for (Eigen::Index j = 0; j < d; ++j) h.length_scales[j] = std::exp(theta[1 + j]);
  h.noise_variance = std::exp(theta[d + 1]);
  return h;
}

// out(i, c) = signal · Matern52(‖q_i - t_c‖) for the rows of q (m × d) and
// t (n × d), both already divided by the length scales; out is m × n. This
// is most of the cost of prediction, so with AVX2 and FMA it runs fused,
// four query points at a time, each column of out in one pass.
void MaternCrossPortable(const Eigen::MatrixXd& q, const Eigen::MatrixXd& t, double signal,
                         Eigen::MatrixXd* out) {
  // Column by column, so every inner loop runs over the m query points.
  for (Eigen::Index c = 0; c < t.rows(); ++c) {
    auto col = out->col(c).array();
    col = (q.col(0).array() - t(c, 0)).square();
    for (Eigen::Index j = 1; j < q.cols(); ++j) col += (q.col(j).array() - t(c, j)).square();
  }
  *out = (5.0 * out->array()).sqrt().matrix();
  Eigen::ArrayXXd decay = -out->array();
  ExpNonPositiveImpl(decay.data(), decay.size());
  out->array() = signal * (1.0 + out->array() + out->array().square() * (1.0 / 3.0)) * decay;
}

#if defined(__x86_64__)
// Four query points (rows of q_block, a 4 × d column-major block with
// leading dimension ld) against every row of t, into a 4 × n block of out
// with leading dimension ld_out.
__attribute__((target("avx2,fma"))) inline void MaternCrossBlockAvx2(
    const double* q_block, Eigen::Index ld, const Eigen::MatrixXd& t, double signal,
    double* out_block, Eigen::Index ld_out) {
  const Eigen::Index d = t.cols();
  const __m256d five = _mm256_set1_pd(5.0);
  const __m256d third = _mm256_set1_pd(1.0 / 3.0);
  const __m256d one = _mm256_set1_pd(1.0);
  const __m256d sig = _mm256_set1_pd(signal);
  // The block's coordinates stay in registers across the training points
  // (out_block could alias q_block as far as the compiler knows).
  constexpr Eigen::Index kMaxHeld = 8;
  __m256d held[kMaxHeld];
  const Eigen::Index num_held = std::min(d, kMaxHeld);
  for (Eigen::Index j = 0; j < num_held; ++j) held[j] = _mm256_loadu_pd(q_block + j * ld);
  const double* t_data = t.data();
  const Eigen::Index n = t.rows();
  for (Eigen::Index c = 0; c < n; ++c) {
    __m256d r2 = _mm256_setzero_pd();
    for (Eigen::Index j = 0; j < num_held; ++j) {
      const __m256d diff = _mm256_sub_pd(held[j], _mm256_set1_pd(t_data[j * n + c]));
      r2 = _mm256_fmadd_pd(diff, diff, r2);
    }
    for (Eigen::Index j = num_held; j < d; ++j) {
      const __m256d diff =
          _mm256_sub_pd(_mm256_loadu_pd(q_block + j * ld), _mm256_set1_pd(t_data[j * n + c]));
      r2 = _mm256_fmadd_pd(diff, diff, r2);
    }
    const __m256d s = _mm256_sqrt_pd(_mm256_mul_pd(five, r2));
    const __m256d e = ExpAvx2(_mm256_sub_pd(_mm256_setzero_pd(), s));
    const __m256d poly = _mm256_fmadd_pd(s, _mm256_fmadd_pd(s, third, one), one);
    _mm256_storeu_pd(out_block + c * ld_out, _mm256_mul_pd(_mm256_mul_pd(sig, poly), e));
  }
}

__attribute__((target("avx2,fma"))) void MaternCrossAvx2(const Eigen::MatrixXd& q,
                                                         const Eigen::MatrixXd& t, double signal,
                                                         Eigen::MatrixXd* out) {
  const Eigen::Index m = q.rows();
  const Eigen::Index full = m - m % 4;
  for (Eigen::Index i = 0; i < full; i += 4) {
    MaternCrossBlockAvx2(q.data() + i, m, t, signal, out->data() + i, m);
  }
  if (full < m) {
    // The ragged rows go through the same code, padded to four.
    const Eigen::Index rows = m - full;
    Eigen::Matrix<double, 4, Eigen::Dynamic> q_tail = Eigen::MatrixXd::Zero(4, q.cols());
    q_tail.topRows(rows) = q.bottomRows(rows);
    Eigen::Matrix<double, 4, Eigen::Dynamic> out_tail(4, t.rows());
    MaternCrossBlockAvx2(q_tail.data(), 4, t, signal, out_tail.data(), 4);
    out->bottomRows(rows) = out_tail.topRows(rows);
  }
}
#endif

#if defined(__x86_64__)
// ‖L⁻¹ k_r‖² for eight rows r of a cross-covariance block (column-major, leading
// dimension ld), with linv_t = (L⁻¹)ᵀ so that row i of L⁻¹ is contiguous.
// Unlike a triangular solve, each entry of L⁻¹ k is an independent dot
// product, so eight rows and four partial sums keep the FMA units busy.
__attribute__((target("avx2,fma"))) inline void QuadraticFormsBlockAvx2(
    const double* c, Eigen::Index ld, const Eigen::MatrixXd& linv_t, double* out) {
  const Eigen::Index n = linv_t.rows();
  __m256d sum_lo = _mm256_setzero_pd();
  __m256d sum_hi = _mm256_setzero_pd();
  for (Eigen::Index i = 0; i < n; ++i) {
    const double* row = linv_t.data() + i * n;  // L⁻¹(i, 0..i)
    // Four partial sums per half: the dot products are latency-bound otherwise.
    __m256d lo[4] = {_mm256_setzero_pd(), _mm256_setzero_pd(), _mm256_setzero_pd(),
                     _mm256_setzero_pd()};
    __m256d hi[4] = {_mm256_setzero_pd(), _mm256_setzero_pd(), _mm256_setzero_pd(),
                     _mm256_setzero_pd()};
    Eigen::Index j = 0;
    for (; j + 3 <= i; j += 4) {
      for (int u = 0; u < 4; ++u) {
        const __m256d w = _mm256_set1_pd(row[j + u]);
        lo[u] = _mm256_fmadd_pd(w, _mm256_loadu_pd(c + (j + u) * ld), lo[u]);
        hi[u] = _mm256_fmadd_pd(w, _mm256_loadu_pd(c + (j + u) * ld + 4), hi[u]);
      }
    }
    for (int u = 0; j <= i; ++j, ++u) {
      const __m256d w = _mm256_set1_pd(row[j]);
      lo[u] = _mm256_fmadd_pd(w, _mm256_loadu_pd(c + j * ld), lo[u]);
      hi[u] = _mm256_fmadd_pd(w, _mm256_loadu_pd(c + j * ld + 4), hi[u]);
    }
    const __m256d v_lo = _mm256_add_pd(_mm256_add_pd(lo[0], lo[1]), _mm256_add_pd(lo[2], lo[3]));
    const __m256d v_hi = _mm256_add_pd(_mm256_add_pd(hi[0], hi[1]), _mm256_add_pd(hi[2], hi[3]));
    sum_lo = _mm256_fmadd_pd(v_lo, v_lo, sum_lo);
    sum_hi = _mm256_fmadd_pd(v_hi, v_hi, sum_hi);
  }
  _mm256_storeu_pd(out, sum_lo);
  _mm256_storeu_pd(out + 4, sum_hi);
}

__attribute__((target("avx2,fma"))) void QuadraticFormsAvx2(const Eigen::MatrixXd& cross,
                                                            const Eigen::MatrixXd& linv_t,
                                                            double* out) {
  const Eigen::Index m = cross.rows();
  const Eigen::Index full = m - m % 8;
  for (Eigen::Index r = 0; r < full; r += 8) {
    QuadraticFormsBlockAvx2(cross.data() + r, m, linv_t, out + r);
  }
  if (full < m) {
    // The ragged rows go through the same code, padded to eight.
    const Eigen::Index rows = m - full;
    Eigen::Matrix<double, 8, Eigen::Dynamic> tail = Eigen::MatrixXd::Zero(8, cross.cols());
    tail.topRows(rows) = cross.bottomRows(rows);
    double tail_out[8];
    QuadraticFormsBlockAvx2(tail.data(), 8, linv_t, tail_out);
    std::copy(tail_out, tail_out + rows, out + full);
  }
}
#endif

void MaternCross(const Eigen::MatrixXd& q, const Eigen::MatrixXd& t, double signal,
                 Eigen::MatrixXd* out) {
#if defined(__x86_64__)
  if (HasAvx2Fma()) return MaternCrossAvx2(q, t, signal, out);
#endif
  MaternCrossPortable(q, t, signal, out);
}

// Dense kernels for the n × n matrices of the LML (n up to a few hundred):
// Cholesky factorisation in place and K⁻¹ from the factor, lower triangles
// only, column-major. Eigen's blocked routines are built for baseline
// x86-64 and spend most of their time in packing and blocking overhead at
// these sizes; plain loops with AVX2 FMAs are several times faster. Without
// AVX2 they fall back to Eigen.
#if defined(__x86_64__)
// Left-looking: column j of L is column j of A minus Σ_k L(j, k) times
// column k of L (k < j), then scaled; the sums run four rows at a time
// with two partial sums, so they are neither latency- nor store-bound.
__attribute__((target("avx2,fma"))) bool CholeskyAvx2(Eigen::MatrixXd* a) {
  const Eigen::Index n = a->rows();
  double* data = a->data();
  for (Eigen::Index j = 0; j < n; ++j) {
    double* col = data + j * n;
    const double original = col[j];
    Eigen::Index i = j;
    for (; i + 4 <= n; i += 4) {
      __m256d acc0 = _mm256_setzero_pd();
      __m256d acc1 = _mm256_setzero_pd();
      Eigen::Index k = 0;
      for (; k + 2 <= j; k += 2) {
        acc0 = _mm256_fmadd_pd(_mm256_loadu_pd(data + k * n + i), _mm256_set1_pd(data[k * n + j]),
                               acc0);
        acc1 = _mm256_fmadd_pd(_mm256_loadu_pd(data + (k + 1) * n + i),
                               _mm256_set1_pd(data[(k + 1) * n + j]), acc1);
      }
      if (k < j) {
        acc0 = _mm256_fmadd_pd(_mm256_loadu_pd(data + k * n + i), _mm256_set1_pd(data[k * n + j]),
                               acc0);
      }
      _mm256_storeu_pd(col + i, _mm256_sub_pd(_mm256_loadu_pd(col + i), _mm256_add_pd(acc0, acc1)));
    }
    for (; i < n; ++i) {
      double acc = 0.0;
      for (Eigen::Index k = 0; k < j; ++k) acc = std::fma(data[k * n + i], data[k * n + j], acc);
      col[i] -= acc;
    }
    const double pivot = col[j];
    if (!(pivot > kMinRelativePivot * original) || !std::isfinite(pivot)) return false;
    const double diag = std::sqrt(pivot);
    col[j] = diag;
    const double inv = 1.0 / diag;
    for (Eigen::Index r = j + 1; r < n; ++r) col[r] *= inv;
  }
  return true;
}

// Rows of the padded (n rounded up to 4) workspace InverseFromCholeskyAvx2 uses.
Eigen::Index PaddedRows(Eigen::Index n) { return (n + 3) / 4 * 4; }

// X = L⁻¹ by forward substitution of the unit vectors four at a time (the
// four right-hand sides are the lanes), stored transposed as U = Xᵀ (upper,
// padded_rows × n, so a lane block is contiguous); then K⁻¹(i, j) =
// Σ_k U(i, k) U(j, k), four i at a time. Only K⁻¹'s lower triangle is meant,
// though some upper entries are written too.
__attribute__((target("avx2,fma"))) void InverseFromCholeskyAvx2(const Eigen::MatrixXd& l,
                                                                 Eigen::MatrixXd* u_work,
                                                                 Eigen::MatrixXd* kinv) {
  const Eigen::Index n = l.rows();
  const Eigen::Index np = u_work->rows();
  const double* ld = l.data();
  double* u = u_work->data();
  for (Eigen::Index c = 0; c < n; c += 4) {
    for (Eigen::Index k = c; k < n; ++k) {
      __m256d acc0 = _mm256_setzero_pd();
      __m256d acc1 = _mm256_setzero_pd();
      Eigen::Index j = c;
      for (; j + 2 <= k; j += 2) {
        acc0 =
            _mm256_fmadd_pd(_mm256_set1_pd(ld[j * n + k]), _mm256_loadu_pd(u + j * np + c), acc0);
        acc1 = _mm256_fmadd_pd(_mm256_set1_pd(ld[(j + 1) * n + k]),
                               _mm256_loadu_pd(u + (j + 1) * np + c), acc1);
      }
      if (j < k) {
        acc0 =
            _mm256_fmadd_pd(_mm256_set1_pd(ld[j * n + k]), _mm256_loadu_pd(u + j * np + c), acc0);
      }
      const Eigen::Index lane = k - c;  // the unit vector e_k sits in this lane, if any
      const __m256d rhs = _mm256_set_pd(lane == 3 ? 1.0 : 0.0, lane == 2 ? 1.0 : 0.0,
                                        lane == 1 ? 1.0 : 0.0, lane == 0 ? 1.0 : 0.0);
      const __m256d x = _mm256_div_pd(_mm256_sub_pd(rhs, _mm256_add_pd(acc0, acc1)),
                                      _mm256_set1_pd(ld[k * n + k]));
      // A lane whose unit vector comes later (c + lane > k) computes
      // (0 - 0) / L(k, k) = 0 here, as the triangular U must hold; so do
      // the padding lanes beyond n.
      _mm256_storeu_pd(u + k * np + c, x);
    }
  }
  double* out = kinv->data();
  for (Eigen::Index j = 0; j < n; ++j) {
    for (Eigen::Index i0 = j - j % 4; i0 < n; i0 += 4) {
      __m256d acc0 = _mm256_setzero_pd();
      __m256d acc1 = _mm256_setzero_pd();
      Eigen::Index k = std::max(i0, j);
      for (; k + 2 <= n; k += 2) {
        acc0 =
            _mm256_fmadd_pd(_mm256_loadu_pd(u + k * np + i0), _mm256_set1_pd(u[k * np + j]), acc0);
        acc1 = _mm256_fmadd_pd(_mm256_loadu_pd(u + (k + 1) * np + i0),
                               _mm256_set1_pd(u[(k + 1) * np + j]), acc1);
      }
      if (k < n) {
        acc0 =
            _mm256_fmadd_pd(_mm256_loadu_pd(u + k * np + i0), _mm256_set1_pd(u[k * np + j]), acc0);
      }
      alignas(32) double lanes[4];
      _mm256_store_pd(lanes, _mm256_add_pd(acc0, acc1));
      for (Eigen::Index lane = 0; lane < 4 && i0 + lane < n; ++lane) {
        out[j * n + i0 + lane] = lanes[lane];
      }
    }
  }
}
#endif

// Lower Cholesky factor of the lower triangle of *a, in place (the strict
// upper triangle is not read). False if *a is not numerically positive
// definite: a pivot at or below kMinRelativePivot times its diagonal entry
// is rounding noise (a repeated input without noise), whose factor would
// amplify errors by 1e7 and more.
bool CholeskyInPlace(Eigen::MatrixXd* a) {
#if defined(__x86_64__)
  if (HasAvx2Fma()) return CholeskyAvx2(a);
#endif
  const Eigen::VectorXd diagonal = a->diagonal();
  Eigen::LLT<Eigen::Ref<Eigen::MatrixXd>> llt(*a);
  if (llt.info() != Eigen::Success) return false;
  return (a->diagonal().array().square() > kMinRelativePivot * diagonal.array()).all();
}

// The lower triangle of K⁻¹ = L⁻ᵀ L⁻¹ from the lower factor L; *work is
// workspace, resized as needed.
void InverseFromCholesky(const Eigen::MatrixXd& l, Eigen::MatrixXd* work, Eigen::MatrixXd* kinv) {
#if defined(__x86_64__)
  if (HasAvx2Fma()) {
    work->resize(PaddedRows(l.rows()), l.rows());
    return InverseFromCholeskyAvx2(l, work, kinv);
  }
#endif
  Eigen::MatrixXd* linv = work;
  linv->resize(l.rows(), l.rows());
  linv->setIdentity();
  l.triangularView<Eigen::Lower>().solveInPlace(*linv);
  kinv->setZero();
  kinv->selfadjointView<Eigen::Lower>().rankUpdate(linv->transpose());
}

// The LML and its gradient for one data set, evaluated many times by the
// optimiser. Pairwise quantities live in packed vectors over the strictly
// lower triangle (the covariance is symmetric: half the exponentials), the
// per-dimension squared differences, which do not depend on θ, are computed
// once, and every buffer is allocated here, so an evaluation allocates
// nothing.
class LmlEvaluator {
 public:
  LmlEvaluator(const Eigen::MatrixXd& x, const Eigen::VectorXd& y, double jitter)
      : n_(x.rows()), d_(x.cols()), pairs_(n_ * (n_ - 1) / 2), y_(y), jitter_(jitter) {
    sq_diff_.resize(pairs_, d_);
    for (Eigen::Index j = 0; j < d_; ++j) {
      Eigen::Index p = 0;
      for (Eigen::Index c = 0; c < n_; ++c) {
        for (Eigen::Index r = c + 1; r < n_; ++r, ++p) {
          const double diff = x(r, j) - x(c, j);
          sq_diff_(p, j) = diff * diff;
        }
      }
    }
    inv_sq_length_.resize(d_);
    s_.resize(pairs_);
    decay_.resize(pairs_);
    km_.resize(pairs_);
    w_.resize(pairs_);
    k_.resize(n_, n_);
    kinv_.resize(n_, n_);
    alpha_.resize(n_);
  }

  // Lower triangle (diagonal included) of s² Matern52 + (noise² + jitter) I.
  const Eigen::MatrixXd& Covariance(const Eigen::VectorXd& theta, double jitter) {
    const double signal = std::exp(theta[0]);
    const double noise = std::exp(theta[d_ + 1]);
    for (Eigen::Index j = 0; j < d_; ++j) inv_sq_length_[j] = std::exp(-2.0 * theta[1 + j]);
    // r² as d scaled columns rather than a pairs × d GEMV, which Eigen runs
    // poorly for d this small.
    s_ = sq_diff_.col(0).array() * inv_sq_length_[0];
    for (Eigen::Index j = 1; j < d_; ++j) s_ += sq_diff_.col(j).array() * inv_sq_length_[j];
    s_ = (5.0 * s_).sqrt();  // √5 r
    decay_ = -s_;
    ExpNonPositiveImpl(decay_.data(), pairs_);
    km_ = signal * (1.0 + s_ + s_.square() * (1.0 / 3.0)) * decay_;
    Eigen::Index p = 0;
    for (Eigen::Index c = 0; c < n_; ++c) {
      k_(c, c) = signal + noise + jitter;
      for (Eigen::Index r = c + 1; r < n_; ++r, ++p) k_(r, c) = km_[p];
    }
    return k_;
  }

  // θ = (log s², log ℓ_1..d, log noise²). Returns -inf when the covariance
  // is not positive definite (as sklearn does); the optimiser then backs off.
  double Value(const Eigen::VectorXd& theta) {
    Covariance(theta, jitter_);
    if (!CholeskyInPlace(&k_)) return -kInf;
    alpha_ = y_;
    k_.triangularView<Eigen::Lower>().solveInPlace(alpha_);
    k_.triangularView<Eigen::Lower>().transpose().solveInPlace(alpha_);
    const double log_det_half = k_.diagonal().array().log().sum();
    const double lml = -0.5 * y_.dot(alpha_) - log_det_half - 0.5 * n_ * kLog2Pi;
    return std::isfinite(lml) ? lml : -kInf;
  }

  // The gradient at the θ of the last Value() call, which must have been
  // finite. Separate because it costs twice as much as the value, and the
  // line search rejects a quarter of its trial points on the value alone.
  void Gradient(const Eigen::VectorXd& theta, Eigen::VectorXd* gradient) {
    // ∂LML/∂θ_p = ½ tr(W ∂K/∂θ_p) with W = α αᵀ - K⁻¹ symmetric, so the
    // traces are diagonal terms plus twice the strictly lower ones.
    // K⁻¹ = L⁻ᵀ L⁻¹ (lower triangle only).
    const double signal = std::exp(theta[0]);
    const double noise = std::exp(theta[d_ + 1]);
    InverseFromCholesky(k_, &inverse_work_, &kinv_);
    double diagonal_sum = 0.0;
    Eigen::Index p = 0;
    for (Eigen::Index c = 0; c < n_; ++c) {
      diagonal_sum += alpha_[c] * alpha_[c] - kinv_(c, c);
      for (Eigen::Index r = c + 1; r < n_; ++r, ++p) w_[p] = alpha_[r] * alpha_[c] - kinv_(r, c);
    }
    gradient->resize(d_ + 2);
    (*gradient)[0] = 0.5 * signal * diagonal_sum + (w_ * km_).sum();
    // ∂k/∂log ℓ_j = s² (5/3) (1 + √5 r) exp(-√5 r) (x_j - x'_j)² / ℓ_j²,
    // 0 on the diagonal.
    w_ *= signal * (5.0 / 3.0) * (1.0 + s_) * decay_;
    for (Eigen::Index j = 0; j < d_; ++j) {
      (*gradient)[1 + j] = inv_sq_length_[j] * sq_diff_.col(j).dot(w_.matrix());
    }
    (*gradient)[d_ + 1] = 0.5 * noise * diagonal_sum;
  }

 private:
  Eigen::Index n_;
  Eigen::Index d_;
  Eigen::Index pairs_;
  const Eigen::VectorXd& y_;
  double jitter_;
  Eigen::MatrixXd sq_diff_;  // pairs × d, (x_rj - x_cj)² for r > c, column-major pair order
  Eigen::VectorXd inv_sq_length_;
  Eigen::ArrayXd s_, decay_, km_, w_;  // per pair
  Eigen::MatrixXd k_;                  // covariance, then its Cholesky factor (lower)
  Eigen::MatrixXd inverse_work_;       // for InverseFromCholesky
  Eigen::MatrixXd kinv_;               // K⁻¹ (lower)
  Eigen::VectorXd alpha_;
};

// Minimises f over the box [lo, hi] by projected L-BFGS: the quasi-Newton
// step is taken in the variables not held at a bound by the gradient, the
// trial point is projected back into the box, and the step shrinks until
// the Armijo condition holds along the projected path. Stops by the
// tolerances and iteration limit of `options` (see gaussian_process.h).
// f.Value(x) returns the value (+inf where undefined); f.Gradient(x, &g)
// writes the gradient at the x of the last Value() call.
template <typename F>
double MinimizeInBox(F& f, const Eigen::VectorXd& lo, const Eigen::VectorXd& hi,
                     const GaussianProcessOptions& options, Eigen::VectorXd* x_inout) {
  constexpr int kMemory = 10;
  constexpr double kArmijo = 1e-4;
  constexpr int kMaxBacktracks = 30;
  const Eigen::Index p = lo.size();

  Eigen::VectorXd x = x_inout->cwiseMax(lo).cwiseMin(hi);
  Eigen::VectorXd g(p), g_new(p), x_new(p), dir(p), free(p), q(p), step(p);
  double fx = f.Value(x);
  if (!std::isfinite(fx)) {
    *x_inout = x;
    return kInf;
  }
  f.Gradient(x, &g);
  std::deque<std::pair<Eigen::VectorXd, Eigen::VectorXd>> memory;  // (s, y) pairs
  std::vector<double> a(kMemory);

  for (int iteration = 0; iteration < options.max_iterations; ++iteration) {
    // Variables at a bound whose gradient pushes outward are held.
    double pg_norm = 0.0;
    for (Eigen::Index i = 0; i < p; ++i) {
      const bool held = (x[i] <= lo[i] && g[i] > 0.0) || (x[i] >= hi[i] && g[i] < 0.0);
      free[i] = held ? 0.0 : 1.0;
      pg_norm = std::max(pg_norm, held ? 0.0 : std::abs(g[i]));
    }
    if (pg_norm < options.gradient_tolerance) break;

    // Two-loop recursion restricted to the free variables.
    q = g.cwiseProduct(free);
    const int m = static_cast<int>(memory.size());
    for (int k = m - 1; k >= 0; --k) {
      const Eigen::VectorXd& s = memory[k].first;
      const Eigen::VectorXd& yv = memory[k].second;
      const double sy = s.cwiseProduct(free).dot(yv);
      if (sy <= 0.0) {
        a[k] = 0.0;
        continue;
      }
      a[k] = s.cwiseProduct(free).dot(q) / sy;
      q -= a[k] * yv.cwiseProduct(free);
    }
    if (m > 0) {
      const Eigen::VectorXd yf = memory.back().second.cwiseProduct(free);
      const double yy = yf.squaredNorm();
      const double sy = memory.back().first.cwiseProduct(free).dot(yf);
      if (yy > 0.0 && sy > 0.0) q *= sy / yy;
    }
    for (int k = 0; k < m; ++k) {
      const Eigen::VectorXd& s = memory[k].first;
      const Eigen::VectorXd& yv = memory[k].second;
      const double sy = s.cwiseProduct(free).dot(yv);
      if (sy <= 0.0) continue;
      const double b = yv.cwiseProduct(free).dot(q) / sy;
      q += (a[k] - b) * s.cwiseProduct(free);
    }
    dir = -q;
    if (m == 0 || !(dir.dot(g) < 0.0)) {
      memory.clear();
      dir = -g.cwiseProduct(free);
    }
    // Without curvature information the first step is scaled to move the
    // largest coordinate by at most 1 (a factor e in a hyperparameter).
    double t = memory.empty() ? std::min(1.0, 1.0 / dir.cwiseAbs().maxCoeff()) : 1.0;

    bool accepted = false;
    double f_new = kInf;
    for (int backtrack = 0; backtrack < kMaxBacktracks; ++backtrack) {
      x_new = (x + t * dir).cwiseMax(lo).cwiseMin(hi);
      step = x_new - x;
      if (step.cwiseAbs().maxCoeff() == 0.0) break;
      f_new = f.Value(x_new);
      const double slope = g.dot(step);
      if (std::isfinite(f_new) && f_new <= fx + kArmijo * slope) {
        accepted = true;
        f.Gradient(x_new, &g_new);
        break;
      }
      // Shrink to the minimiser of the quadratic through f(x), its slope and
      // f(x_new), kept within [0.001, 0.5] of the step: far fewer evaluations
      // than halving when the first step overshoots by orders of magnitude.
      double shrink = 0.25;
      const double curvature = f_new - fx - slope;
      if (std::isfinite(f_new) && slope < 0.0 && curvature > 0.0) {
        shrink = std::clamp(-slope / (2.0 * curvature), 1e-3, 0.5);
      }
      t *= shrink;
    }
    if (!accepted) {
      if (memory.empty()) break;
      memory.clear();  // a poor quasi-Newton model; retry from steepest descent
      continue;
    }
    Eigen::VectorXd yv = g_new - g;
    if (step.dot(yv) > 1e-10 * yv.squaredNorm()) {
      if (static_cast<int>(memory.size()) == kMemory) memory.pop_front();
      memory.emplace_back(step, std::move(yv));
    }
    const double decrease = fx - f_new;
    x.swap(x_new);
    g.swap(g_new);
    fx = f_new;
    if (decrease <=
        options.relative_tolerance * std::max({std::abs(fx), std::abs(fx + decrease), 1.0})) {
      break;
    }
  }
  *x_inout = x;
  return fx;
}

}  // namespace

absl::Status GaussianProcessOptions::Validate() const {
  LOGSTAR_RETURN_IF_ERROR(CheckBounds("signal_variance", signal_variance_min, signal_variance_max));
  LOGSTAR_RETURN_IF_ERROR(CheckBounds("length_scale", length_scale_min, length_scale_max));
  LOGSTAR_RETURN_IF_ERROR(CheckBounds("noise_variance", noise_variance_min, noise_variance_max));
  if (!(std::isfinite(jitter) && jitter >= 0.0)) {
    return absl::InvalidArgumentError(
        absl::StrCat("GaussianProcessOptions.jitter must be finite and >= 0, got ", jitter));
  }
  if (num_restarts < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("GaussianProcessOptions.num_restarts must be >= 0, got ", num_restarts));
  }
  if (!(std::isfinite(gradient_tolerance) && gradient_tolerance >= 0.0)) {
    return absl::InvalidArgumentError(
        absl::StrCat("GaussianProcessOptions.gradient_tolerance must be finite and >= 0, got ",
                     gradient_tolerance));
  }
  if (!(std::isfinite(relative_tolerance) && relative_tolerance >= 0.0)) {
    return absl::InvalidArgumentError(
        absl::StrCat("GaussianProcessOptions.relative_tolerance must be finite and >= 0, got ",
                     relative_tolerance));
  }
  if (max_iterations < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("GaussianProcessOptions.max_iterations must be >= 1, got ", max_iterations));
  }
  return absl::OkStatus();
}

absl::StatusOr<double> LogMarginalLikelihood(const Eigen::MatrixXd& x, const Eigen::VectorXd& y,
                                             const GpHyperparameters& hyperparameters,
                                             double jitter, Eigen::VectorXd* gradient) {
  LOGSTAR_RETURN_IF_ERROR(CheckInputs(x, y, /*unit_box=*/false));
  LOGSTAR_RETURN_IF_ERROR(CheckHyperparameters(hyperparameters, x.cols()));
  if (!(std::isfinite(jitter) && jitter >= 0.0)) {
    return absl::InvalidArgumentError(absl::StrCat("jitter must be finite and >= 0, got ", jitter));
  }
  LmlEvaluator evaluator(x, y, jitter);
  const Eigen::VectorXd theta = ToTheta(hyperparameters);
  const double lml = evaluator.Value(theta);
  if (!std::isfinite(lml)) {
    return absl::InvalidArgumentError(
        "GP covariance is not positive definite at these hyperparameters");
  }
  if (gradient != nullptr) evaluator.Gradient(theta, gradient);
  return lml;
}

absl::StatusOr<GaussianProcess> GaussianProcess::Fit(const Eigen::MatrixXd& x,
                                                     const Eigen::VectorXd& y,
                                                     const GaussianProcessOptions& options,
                                                     const GpHyperparameters* warm_start) {
  LOGSTAR_RETURN_IF_ERROR(options.Validate());
  LOGSTAR_RETURN_IF_ERROR(CheckInputs(x, y, /*unit_box=*/true));
  const Eigen::Index n = x.rows();
  const Eigen::Index d = x.cols();
  GpHyperparameters start;
  if (warm_start != nullptr) {
    LOGSTAR_RETURN_IF_ERROR(CheckHyperparameters(*warm_start, d));
    start = *warm_start;
  } else {
    start.length_scales.assign(d, 1.0);
  }

  GaussianProcess gp;
  gp.x_ = x;
  // sklearn: mean and population std; a std of exactly 0 becomes 1. Equal
  // targets are caught before summing, since rounding in the mean could
  // otherwise leave a spurious std of 1e-17.
  const bool constant = y.maxCoeff() == y.minCoeff();
  gp.y_mean_ = constant ? y[0] : y.mean();
  const double std = constant ? 0.0 : std::sqrt((y.array() - gp.y_mean_).square().mean());
  gp.y_scale_ = std == 0.0 ? 1.0 : std;
  const Eigen::VectorXd y_std = (y.array() - gp.y_mean_) / gp.y_scale_;

  LmlEvaluator evaluator(x, y_std, options.jitter);
  Eigen::VectorXd theta = ToTheta(start);
  if (options.optimize) {
    Eigen::VectorXd lo(d + 2), hi(d + 2);
    lo[0] = std::log(options.signal_variance_min);
    hi[0] = std::log(options.signal_variance_max);
    lo.segment(1, d).setConstant(std::log(options.length_scale_min));
    hi.segment(1, d).setConstant(std::log(options.length_scale_max));
    lo[d + 1] = std::log(options.noise_variance_min);
    hi[d + 1] = std::log(options.noise_variance_max);
    struct NegativeLml {
      LmlEvaluator& evaluator;
      double Value(const Eigen::VectorXd& t) { return -evaluator.Value(t); }
      void Gradient(const Eigen::VectorXd& t, Eigen::VectorXd* g) {
        evaluator.Gradient(t, g);
        *g = -*g;
      }
    } negative_lml{evaluator};
    SplitMix64 rng(options.seed);
    Eigen::VectorXd best = theta;
    double best_value = MinimizeInBox(negative_lml, lo, hi, options, &best);
    for (int r = 0; r < options.num_restarts; ++r) {
      Eigen::VectorXd candidate(d + 2);
      for (Eigen::Index i = 0; i < d + 2; ++i) candidate[i] = rng.Uniform(lo[i], hi[i]);
      const double value = MinimizeInBox(negative_lml, lo, hi, options, &candidate);
      if (value < best_value) {
        best_value = value;
        best = candidate;
      }
    }
    // If no start had a positive definite covariance, the start itself
    // (clamped) goes on to the jitter escalation below.
    theta = best.cwiseMax(lo).cwiseMin(hi);
  }
  gp.hyperparameters_ = FromTheta(theta);
  if (options.optimize) {
    // exp(log(bound)) can land an ulp outside the bound.
    GpHyperparameters& h = gp.hyperparameters_;
    h.signal_variance =
        std::clamp(h.signal_variance, options.signal_variance_min, options.signal_variance_max);
    for (double& l : h.length_scales) {
      l = std::clamp(l, options.length_scale_min, options.length_scale_max);
    }
    h.noise_variance =
        std::clamp(h.noise_variance, options.noise_variance_min, options.noise_variance_max);
  }

  // The final factorisation, with jitter escalation for the rare θ whose
  // covariance is numerically singular.
  const GpHyperparameters& h = gp.hyperparameters_;
  gp.x_over_length_ = x;
  for (Eigen::Index j = 0; j < d; ++j) gp.x_over_length_.col(j) /= h.length_scales[j];
  const Eigen::VectorXd final_theta = ToTheta(h);
  double jitter = options.jitter;
  while (true) {
    gp.chol_ = evaluator.Covariance(final_theta, jitter);
    if (CholeskyInPlace(&gp.chol_)) break;
    jitter = jitter <= 0.0 ? 1e-12 : 10.0 * jitter;
    if (jitter > kMaxJitter) {
      return absl::InternalError("GP covariance is not positive definite even with jitter 1e-2");
    }
  }
  gp.jitter_ = jitter;
  gp.chol_.triangularView<Eigen::StrictlyUpper>().setZero();
  gp.weights_ = y_std;
  gp.chol_.triangularView<Eigen::Lower>().solveInPlace(gp.weights_);
  gp.chol_.triangularView<Eigen::Lower>().transpose().solveInPlace(gp.weights_);
  gp.chol_inv_t_ = Eigen::MatrixXd::Identity(n, n);
  gp.chol_.triangularView<Eigen::Lower>().solveInPlace(gp.chol_inv_t_);
  gp.chol_inv_t_.transposeInPlace();
  gp.log_marginal_likelihood_ =
      -0.5 * y_std.dot(gp.weights_) - gp.chol_.diagonal().array().log().sum() - 0.5 * n * kLog2Pi;
  return gp;
}

absl::Status GaussianProcess::Predict(const Eigen::MatrixXd& x, Eigen::VectorXd* mean,
                                      Eigen::VectorXd* stddev, bool with_noise) const {
  if (mean == nullptr) return absl::InvalidArgumentError("mean must not be null");
  if (x.cols() != x_.cols()) {
    return absl::InvalidArgumentError(absl::StrCat("GP prediction inputs have ", x.cols(),
                                                   " columns, the model has ", x_.cols()));
  }
  const Eigen::Index m = x.rows();
  const Eigen::Index n = x_.rows();
  const Eigen::Index d = x_.cols();
  const GpHyperparameters& h = hyperparameters_;
  Eigen::MatrixXd scaled = x;
  for (Eigen::Index j = 0; j < d; ++j) scaled.col(j) /= h.length_scales[j];
  Eigen::MatrixXd cross(m, n);
  MaternCross(scaled, x_over_length_, h.signal_variance, &cross);
  mean->noalias() = cross * weights_;
  *mean = (mean->array() * y_scale_ + y_mean_).matrix();
  if (stddev == nullptr) return absl::OkStatus();
  // Posterior variance s² - ‖L⁻¹ k*‖².
  Eigen::VectorXd explained(m);
#if defined(__x86_64__)
  if (HasAvx2Fma()) {
    QuadraticFormsAvx2(cross, chol_inv_t_, explained.data());
  } else
#endif
  {
    chol_.transpose().triangularView<Eigen::Upper>().solveInPlace<Eigen::OnTheRight>(cross);
    explained = cross.rowwise().squaredNorm();
  }
  const double prior = h.signal_variance + (with_noise ? h.noise_variance : 0.0);
  *stddev = ((prior - explained.array()).max(0.0).sqrt() * y_scale_).matrix();
  return absl::OkStatus();
}

namespace internal {

void ExpNonPositive(double* values, int64_t count) { ExpNonPositiveImpl(values, count); }

}  // namespace internal
}  // namespace logstar
