// The LoG inner loops built with -mavx512f (see engine/CMakeLists.txt):
// 16 floats per instruction halve the instruction count of the passes.
#include "engine/log/log_kernels.h"

#define LOGSTAR_KERNEL_NAMESPACE avx512
#define LOGSTAR_KERNEL_LANES 16
#include "engine/log/log_kernels_impl.inc"

namespace logstar::internal {
const LogKernelFns& Avx512Kernels() { return avx512::kFns; }
}  // namespace logstar::internal
