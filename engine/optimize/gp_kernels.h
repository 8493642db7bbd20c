// Internal to the engine: the inner loops of the Gaussian process
// (gaussian_process.cc) and the exponential the EHVI (pareto.cc) shares.
//
// A GP fit evaluates the log marginal likelihood hundreds of times on the
// n × n covariance of tens to hundreds of points, and a MOBO iteration
// predicts at a thousand candidates; at these sizes Eigen's blocked routines,
// built for baseline x86-64, spend most of their time in packing and
// blocking overhead, and glibc's scalar exp is several times slower than a
// vector one. These plain loops are compiled for baseline x86-64 and for
// AVX2 + FMA from one source (gp_kernels_impl.inc), and GpKernels() picks
// the best the CPU runs (engine/base/kernel_isa.h).
//
// Not for AVX-512, unlike the LoG kernels: built from the same source it
// gave the same bits as AVX2 and ran the kernels alone up to 2.5 times as
// fast, but a MOBO run took 40% more CPU time (MoboTest.Timing, Xeon with
// AVX-512): the short bursts of 512-bit FMAs lower the clock for the
// scalar code between them (EHVI, the optimiser, Eigen), which dominates.
//
// Rounding: products are fused into FMAs where the source says so, and
// only there (the files are built with -ffp-contract=off); every element's
// arithmetic is the same whatever the vector width. The generic variant
// rounds each product separately, so its results differ in the last bits.
//
// Matrices are column-major with the leading dimension stated. Nothing
// allocates. All functions are pure and may run concurrently on distinct
// outputs.
#ifndef LOGSTAR_ENGINE_OPTIMIZE_GP_KERNELS_H_
#define LOGSTAR_ENGINE_OPTIMIZE_GP_KERNELS_H_

#include <cstdint>

namespace logstar::internal {

// A Cholesky pivot at or below this fraction of its diagonal entry is
// rounding noise (a repeated input without noise), whose factor would
// amplify errors by 1e7 and more: the matrix counts as not positive definite.
inline constexpr double kMinRelativeCholeskyPivot = 1e-13;

// Rows of the workspace inverse_from_cholesky needs for an n × n factor: n
// rounded up to four (the right-hand sides are solved four at a time).
constexpr int64_t InverseWorkRows(int64_t n) { return (n + 3) / 4 * 4; }

struct GpKernelFns {
  // e^x for each x <= 0 of values[0, count), in place, to about 2 ulp
  // (x < -708 gives 0, NaN gives e^-708). Cody–Waite
  // reduction x = k ln2 + r, |r| <= ln2 / 2, a degree-13 Taylor polynomial
  // for e^r (truncation error < 2e-17) and 2^k built in the exponent bits.
  // A ragged tail is padded and run through the same vector code, so every
  // element gets the same bits whatever its position in the array.
  void (*exp_non_positive)(double* values, int64_t count);

  // The Matérn-5/2 covariance of `pairs` point pairs: with
  //   r²_p = Σ_j sq_diff[j·pairs + p] · inv_sq_length[j]   (j < d),
  // writes s_p = √5 r_p, decay_p = e^{-s_p} and
  // km_p = signal · (1 + s_p + s_p² / 3) · decay_p. sq_diff is pairs × d
  // (squared coordinate differences); the three outputs hold `pairs` values.
  void (*matern_pairs)(const double* sq_diff, int64_t pairs, int64_t d, const double* inv_sq_length,
                       double signal, double* s, double* decay, double* km);

  // out(i, c) = signal · Matern52(‖q_i - t_c‖) for the m rows of q (m × d,
  // leading dimension m) and the n rows of t (n × d, leading dimension n),
  // both already divided by the length scales; out is m × n (leading
  // dimension m). A block of query points runs against every t_c in one
  // pass with its coordinates held in registers.
  void (*matern_cross)(const double* q, int64_t m, const double* t, int64_t n, int64_t d,
                       double signal, double* out);

  // Lower Cholesky factor of the lower triangle of the n × n matrix a
  // (leading dimension n), in place, left-looking; the strict upper triangle
  // is neither read nor written. False, with `a` partly overwritten, if a
  // pivot is not finite or at most kMinRelativeCholeskyPivot times its
  // diagonal entry.
  bool (*cholesky)(double* a, int64_t n);

  // The lower triangle of K⁻¹ = L⁻ᵀ L⁻¹ into kinv (n × n, leading dimension
  // n; some upper entries are written too), from the lower factor l (n × n,
  // leading dimension n). work: InverseWorkRows(n) × n scratch.
  void (*inverse_from_cholesky)(const double* l, int64_t n, double* work, double* kinv);

  // out[r] = ‖L⁻¹ c_r‖² for the m rows c_r of cross (m × n, leading
  // dimension m), with linv_t = (L⁻¹)ᵀ (n × n, leading dimension n, upper:
  // row i of L⁻¹ is contiguous). Unlike a triangular solve, each entry of
  // L⁻¹ c_r is an independent dot product, so blocks of rows and four
  // partial sums keep the FMA units busy.
  void (*quadratic_forms)(const double* cross, int64_t m, const double* linv_t, int64_t n,
                          double* out);

  // Doubles per vector.
  int lanes;
};

const GpKernelFns& GpKernels();
// Exposed for tests that compare the variants.
const GpKernelFns& GenericGpKernels();
const GpKernelFns* Avx2GpKernelsOrNull();

// GpKernels().exp_non_positive, for the EHVI's Gaussian densities.
void ExpNonPositive(double* values, int64_t count);

}  // namespace logstar::internal

#endif  // LOGSTAR_ENGINE_OPTIMIZE_GP_KERNELS_H_
