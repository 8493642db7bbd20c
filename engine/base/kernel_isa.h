// Internal to the engine: which instruction-set variant of the hand-vectorised
// kernels (engine/log/log_kernels.h, engine/optimize/gp_kernels.h) to run.
//
// The engine is compiled for baseline x86-64, so that one binary runs on any
// x86-64 CPU; its hot loops are compiled a second and third time for
// AVX2 + FMA and for AVX-512 (engine/CMakeLists.txt) and chosen here, once
// per process, from what the CPU supports. The environment variable
// LOGSTAR_KERNELS=generic|avx2 caps the choice, to measure a variant or to
// rule one out on a given machine. Off x86-64 only the generic variant
// exists.
//
// Thread-safety: all functions may be called concurrently.
#ifndef LOGSTAR_ENGINE_BASE_KERNEL_ISA_H_
#define LOGSTAR_ENGINE_BASE_KERNEL_ISA_H_

namespace logstar::internal {

enum class KernelIsa { kGeneric, kAvx2, kAvx512 };

// Whether the CPU runs the AVX2 + FMA variants (always false off x86-64).
bool CpuHasAvx2Fma();
// Whether the CPU runs the AVX-512 (AVX-512F + FMA) variants.
bool CpuHasAvx512();

// The widest variant the CPU runs, capped by LOGSTAR_KERNELS; read once.
KernelIsa ChosenKernelIsa();

}  // namespace logstar::internal

#endif  // LOGSTAR_ENGINE_BASE_KERNEL_ISA_H_
