// Internal to the engine: the inner loops of the LoG scale-space.
//
// The scale-normalised LoG of scipy.ndimage.gaussian_laplace is the sum of
// two separable filters, H_g(V_d(I)) + H_d(V_g(I)), where g is the sampled
// Gaussian and d its second derivative along one axis (V vertical, H
// horizontal). Both kernels are symmetric, so each pass adds the two mirrored
// taps first and multiplies once; the first pass produces V_g and V_d from
// the same loads and writes them transposed, so that both passes walk along
// rows of memory and make two outputs per sweep (rows i + 1 ± k are rows
// i ± k moved by one, which halves the loads). Unaligned loads along a row,
// the alternative for the second pass, straddle cache lines and were the
// bottleneck. These loops are compiled for baseline x86-64 and for
// AVX2+FMA and for AVX-512; Kernels() picks the best the CPU runs
// (engine/base/kernel_isa.h).
#ifndef LOGSTAR_ENGINE_LOG_LOG_KERNELS_H_
#define LOGSTAR_ENGINE_LOG_LOG_KERNELS_H_

#include <cstddef>

namespace logstar::internal {

struct LogKernelFns {
  // First pass, along image rows. For y in [0, nrows) and image columns x in
  // [0, round_up(width, lanes)):
  //   out_gt[x·out_stride + y] = Σ_{k=-radius..radius} g[|k|]·image[rows[y + radius + k]][x]
  // and out_dt likewise with d: V_g and V_d, written transposed (one output
  // row per image column) so the second pass also runs along the row index.
  // nrows is a multiple of `lanes`; image rows are readable up to
  // round_up(width, lanes) floats; `rows` resolves the borders.
  void (*vertical)(const float* image, size_t stride, const int* rows, int nrows, int radius,
                   const float* g, const float* d, int width, float* out_gt, float* out_dt,
                   size_t out_stride);
  // Second pass, along image columns, on the transposed V_g and V_d. For x
  // in [0, width) and y in [0, ncols) (ncols a multiple of `lanes`):
  //   out[x·out_stride + y] = scale · Σ_k d[|k|]·gt[xrows[x + radius + k]·stride + y]
  //                                      + g[|k|]·dt[xrows[x + radius + k]·stride + y],
  // i.e. scale · (H_d(V_g) + H_g(V_d)). xrows has width + 2·radius + 3
  // entries and resolves the borders.
  void (*horizontal)(const float* gt, const float* dt, size_t stride, const int* xrows, int radius,
                     const float* g, const float* d, float scale, int width, int ncols, float* out,
                     size_t out_stride);
  // For a plane of `rows` rows of `cols` floats whose first `valid` columns
  // are meaningful, writes to `out` (room for rows·cols ints) the flat index
  // x·cols + j of every sample with j < valid that is above `floor` and not
  // below its neighbours at j ± 1 and at x ± 1 (a neighbour outside
  // [0, valid) × [0, rows) never rejects); returns how many. Order
  // unspecified. Reads up to `lanes` floats past the last row.
  int (*plane_candidates)(const float* plane, int rows, int cols, int valid, float floor, int* out);
  // Floats per vector; row counts and strides above are multiples of it.
  int lanes;
};

const LogKernelFns& Kernels();
// Exposed for tests that compare the two variants.
const LogKernelFns& GenericKernels();
const LogKernelFns* Avx2KernelsOrNull();
const LogKernelFns* Avx512KernelsOrNull();

}  // namespace logstar::internal

#endif  // LOGSTAR_ENGINE_LOG_LOG_KERNELS_H_
