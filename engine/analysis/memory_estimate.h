// EstimatePeakMemory: how much memory analysing one frame may take at its
// peak, from the frame's size and the analyzer's settings alone, so that a
// caller (the daemon) can admit frames against a memory budget before it
// analyses them. An estimate of what LogStarAnalyzer::Analyze allocates on
// top of the frame it is given, for a frame that tunes every window (a
// cached frame takes less; a re-tune cannot be foreseen).
//
// The model, in bytes (P = width × height pixels):
//   fixed      8 MiB                   threads' scratch, allocator slack
//   frame      36 × P                  the normalised frame, the lattice
//                                      measurement's planes, the atoms
//   windows    k × (4.27 × G + L) × C  the LoG sigma grids of the k =
//                                      min(windows, threads) windows tuned at
//                                      once: G grid sigmas (4 % apart over
//                                      the search's sigma bounds: 54 for the
//                                      bounds a prior gives) of C pixels (the
//                                      largest window with its halo) in
//                                      float, and a fifteenth more for the
//                                      grid's row bands (log_scale_grid.h);
//                                      L = 16 with the lattice pair (its
//                                      maxima under the threshold), else 0
//   search     n² × (66 t + 80 k)      the Gaussian processes of the k
//                                      LoG* searches: n = evaluations points,
//                                      t = min(threads, 6 k) fits at once
//                                      (engine/optimize/)
//   amorphous  32 MiB + 24 × P + its search (k = 1), when enabled
//   total      the sum (what a phase frees is not always returned to the
//              system before the next one allocates: the amorphous stage
//              measured 38 MiB on top of a whole-frame window's peak)
//
// Measured peaks (VmHWM above the resident set before Analyze; 2 threads,
// YBCO at 0.125 Å/px, 8 evaluations unless said) against the estimate, MiB:
//   512², window 0                     measured    69  estimate    76  (+10 %)
//   512², window 256                   measured    44  estimate    52  (+18 %)
//   1024², window 0                    measured   268  estimate   279  (+4 %)
//   1024², window 256                  measured    60  estimate    85  (+42 %)
//   2048², window 0                    measured  1055  estimate  1091  (+3 %)
//   2048², window 256                  measured   156  estimate   193  (+24 %)
//   2048², window 256, 1 thread        measured   156  estimate   172  (+11 %)
//   4096², window 0                    measured  4165  estimate  4339  (+4 %)
//   4096², window 256                  measured   497  estimate   625  (+26 %)
//   256², window 0, 300 evaluations    measured    38  estimate    43  (+13 %)
//   1024², window 0, lattice pair      measured   287  estimate   295  (+3 %)
//   1024², window 256, amorphous       measured    91  estimate   141  (+54 %)
//   2048², window 256, amorphous       measured   245  estimate   321  (+31 %)
//   2048², window 0, amorphous         measured  1093  estimate  1219  (+12 %)
// An upper bound in every case measured, by 3 % to 54 %; the closest for the
// whole-frame windows of large frames, the ones a budget is for.
// tests/engine/analysis/memory_estimate_test.cc repeats three of these.
//
// Thread-safety: a pure function.
#ifndef LOGSTAR_ENGINE_ANALYSIS_MEMORY_ESTIMATE_H_
#define LOGSTAR_ENGINE_ANALYSIS_MEMORY_ESTIMATE_H_

#include <cstdint>

#include "engine/analysis/analyzer.h"
#include "engine/physics/physics_prior.h"

namespace logstar {

struct MemoryEstimate {
  uint64_t fixed_bytes = 0;
  uint64_t frame_bytes = 0;
  uint64_t windows_bytes = 0;
  uint64_t search_bytes = 0;
  uint64_t amorphous_bytes = 0;

  uint64_t total() const;
};

// `prior`: the prior the frame will be analysed with (its pixel size sets
// the sigma bounds, and so the windows' halos); null when it is not known
// yet, which assumes the largest halo the prior-derived bounds allow (64 px
// sigma). `threads`: the execution context's (>= 1). Sizes <= 0 give the
// fixed part alone.
MemoryEstimate EstimatePeakMemory(int width, int height, const AnalyzerOptions& options,
                                  const PhysicsPrior* prior, int threads);

}  // namespace logstar

#endif  // LOGSTAR_ENGINE_ANALYSIS_MEMORY_ESTIMATE_H_
