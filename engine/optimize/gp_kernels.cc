#include "engine/optimize/gp_kernels.h"

#include "engine/base/kernel_isa.h"

#define LOGSTAR_GP_KERNEL_NAMESPACE gp_generic
#define LOGSTAR_GP_KERNEL_LANES 2  // one SSE2 register, the x86-64 baseline
#include "engine/optimize/gp_kernels_impl.inc"

namespace logstar::internal {

#ifdef LOGSTAR_HAVE_X86_KERNELS
const GpKernelFns& Avx2GpKernels();  // gp_kernels_avx2.cc
#endif

const GpKernelFns& GenericGpKernels() { return gp_generic::kGpFns; }

const GpKernelFns* Avx2GpKernelsOrNull() {
#ifdef LOGSTAR_HAVE_X86_KERNELS
  if (CpuHasAvx2Fma()) return &Avx2GpKernels();
#endif
  return nullptr;
}

const GpKernelFns& GpKernels() {
  static const GpKernelFns* const chosen = [] {
    // AVX2 also on AVX-512 CPUs (see gp_kernels.h).
    if (ChosenKernelIsa() != KernelIsa::kGeneric) {
      if (const GpKernelFns* k = Avx2GpKernelsOrNull()) return k;
    }
    return &GenericGpKernels();
  }();
  return *chosen;
}

void ExpNonPositive(double* values, int64_t count) { GpKernels().exp_non_positive(values, count); }

}  // namespace logstar::internal
