// The LoG inner loops built with -mavx2 -mfma (see engine/CMakeLists.txt).
#include "engine/log/log_kernels.h"

#define LOGSTAR_KERNEL_NAMESPACE avx2
#define LOGSTAR_KERNEL_LANES 8
#include "engine/log/log_kernels_impl.inc"

namespace logstar::internal {
const LogKernelFns& Avx2Kernels() { return avx2::kFns; }
}  // namespace logstar::internal
