// The GP's vector kernels built with -mavx512f -mfma (see
// engine/CMakeLists.txt): eight doubles per instruction for the Matérn
// covariances, the exponential and the posterior variances.
#include "engine/optimize/gp_kernels.h"

#define LOGSTAR_GP_KERNEL_NAMESPACE gp_avx512
#define LOGSTAR_GP_KERNEL_LANES 8
#include "engine/optimize/gp_kernels_impl.inc"

namespace logstar::internal {
const GpKernelFns& Avx512GpKernels() { return gp_avx512::kGpFns; }
}  // namespace logstar::internal
