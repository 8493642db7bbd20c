#include "engine/log/log_kernels.h"

#include "engine/base/kernel_isa.h"

#define LOGSTAR_KERNEL_NAMESPACE generic
#define LOGSTAR_KERNEL_LANES 4  // one SSE register, the x86-64 baseline
#include "engine/log/log_kernels_impl.inc"

namespace logstar::internal {

#ifdef LOGSTAR_HAVE_X86_KERNELS
const LogKernelFns& Avx2Kernels();    // log_kernels_avx2.cc
const LogKernelFns& Avx512Kernels();  // log_kernels_avx512.cc
#endif

const LogKernelFns& GenericKernels() { return generic::kFns; }

const LogKernelFns* Avx2KernelsOrNull() {
#ifdef LOGSTAR_HAVE_X86_KERNELS
  if (CpuHasAvx2Fma()) return &Avx2Kernels();
#endif
  return nullptr;
}

const LogKernelFns* Avx512KernelsOrNull() {
#ifdef LOGSTAR_HAVE_X86_KERNELS
  if (CpuHasAvx512()) return &Avx512Kernels();
#endif
  return nullptr;
}

const LogKernelFns& Kernels() {
  static const LogKernelFns* const chosen = [] {
    switch (ChosenKernelIsa()) {
      case KernelIsa::kAvx512:
        if (const LogKernelFns* k = Avx512KernelsOrNull()) return k;
        [[fallthrough]];
      case KernelIsa::kAvx2:
        if (const LogKernelFns* k = Avx2KernelsOrNull()) return k;
        [[fallthrough]];
      case KernelIsa::kGeneric:
        break;
    }
    return &GenericKernels();
  }();
  return *chosen;
}

}  // namespace logstar::internal
