// The GP's vector kernels built with -mavx2 -mfma (see engine/CMakeLists.txt).
#include "engine/optimize/gp_kernels.h"

#define LOGSTAR_GP_KERNEL_NAMESPACE gp_avx2
#define LOGSTAR_GP_KERNEL_LANES 4
#include "engine/optimize/gp_kernels_impl.inc"

namespace logstar::internal {
const GpKernelFns& Avx2GpKernels() { return gp_avx2::kGpFns; }
}  // namespace logstar::internal
