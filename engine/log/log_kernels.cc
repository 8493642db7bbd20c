#include "engine/log/log_kernels.h"

#include <cstdlib>
#include <string_view>

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
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return &Avx2Kernels();
#endif
  return nullptr;
}

const LogKernelFns* Avx512KernelsOrNull() {
#ifdef LOGSTAR_HAVE_X86_KERNELS
  if (__builtin_cpu_supports("avx512f")) return &Avx512Kernels();
#endif
  return nullptr;
}

const LogKernelFns& Kernels() {
  static const LogKernelFns* const chosen = [] {
    // LOGSTAR_KERNELS=generic|avx2 caps the choice, to measure or to rule
    // out a variant on a given machine.
    const char* cap = std::getenv("LOGSTAR_KERNELS");
    const std::string_view want = cap == nullptr ? "" : cap;
    if (want == "generic") return &GenericKernels();
    if (want == "avx2" && Avx2KernelsOrNull() != nullptr) return Avx2KernelsOrNull();
    if (const LogKernelFns* k = Avx512KernelsOrNull()) return k;
    if (const LogKernelFns* k = Avx2KernelsOrNull()) return k;
    return &GenericKernels();
  }();
  return *chosen;
}

}  // namespace logstar::internal
