// Internal to the engine: the inner loops of the LoG scale-space.
//
// The scale-normalised LoG of scipy.ndimage.gaussian_laplace is the sum of
// two separable filters, H_g(V_d(I)) + H_d(V_g(I)), where g is the sampled
// Gaussian and d its second derivative along one axis (V vertical, H
// horizontal). Both kernels are symmetric, so each pass adds the two mirrored
// taps first and multiplies once, and the vertical pass produces V_g and V_d
// from the same loads. These loops are compiled for baseline x86-64 and for
// AVX2+FMA and for AVX-512; Kernels() picks the best the CPU runs.
#ifndef LOGSTAR_ENGINE_LOG_KERNELS_H_
#define LOGSTAR_ENGINE_LOG_KERNELS_H_

#include <cstddef>

namespace logstar::internal {

struct LogKernelFns {
  // V_g and V_d of rows [0, nrows) of a band: output row y reads image rows
  // rows[y + radius + k], k = -radius..radius (the caller reflects borders
  // into `rows`, which has nrows + 2·radius entries). Outputs have row
  // stride out_stride floats.
  void (*vertical)(const float* image, size_t stride, const int* rows, int nrows, int radius,
                   const float* g, const float* d, int width, float* out_g, float* out_d,
                   size_t out_stride);
  // pg and pd hold V_g and V_d of one row with `radius` reflected samples on
  // each side (length width + 2·radius), plus `horizontal_slack` further
  // readable floats beyond each end (their values are never used). Writes
  // scale · (H_d(V_g) + H_g(V_d)) for that row.
  void (*horizontal)(const float* pg, const float* pd, int radius, const float* g, const float* d,
                     float scale, int width, float* out);
  // Writes to `out` (room for `width` ints) the x of every sample that is
  // above `floor` and not below its left and right neighbours, ascending;
  // returns how many.
  int (*row_candidates)(const float* row, int width, float floor, int* out);
  int horizontal_slack;
};

const LogKernelFns& Kernels();
// Exposed for tests that compare the two variants.
const LogKernelFns& GenericKernels();
const LogKernelFns* Avx2KernelsOrNull();
const LogKernelFns* Avx512KernelsOrNull();

}  // namespace logstar::internal

#endif  // LOGSTAR_ENGINE_LOG_KERNELS_H_
