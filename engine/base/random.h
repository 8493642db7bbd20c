// The engine's deterministic pseudo-random numbers: SplitMix64 and the few
// transforms built on its bits.
//
// Every random choice the engine makes (synthetic frames, the GMM's k-means++
// seeding, the Sobol digital shift, the Gaussian process's restarts, the
// MOBO streams) must give the same numbers for the same seed on every
// platform and standard library, so that a seed names one result. The
// std:: distributions do not (their algorithms are unspecified); the
// generator and the transforms here do, bit for bit.
//
// SplitMix64 (Steele, Lea and Flood, "Fast splittable pseudorandom number
// generators", OOPSLA 2014, with the mixing constants of Vigna's reference
// implementation): a 64-bit state advanced by the golden-ratio increment and
// passed through a bijective finaliser. Its first outputs from seed 0 are
// 0xe220a8397b1dcdaf, 0x6e789e6aa1b965f4, 0x06c45d188009454f.
//
// Thread-safety: the functions are pure; a SplitMix64 object must not be
// used by two threads at once (give each thread its own, e.g. from
// DeriveSeed).
#ifndef LOGSTAR_ENGINE_BASE_RANDOM_H_
#define LOGSTAR_ENGINE_BASE_RANDOM_H_

#include <cstdint>

namespace logstar {

// Uniform in [0, 1) from the top 53 of 64 random bits (every value a
// multiple of 2^-53).
inline double UnitIntervalFromBits(uint64_t bits) {
  return static_cast<double>(bits >> 11) * 0x1.0p-53;
}

class SplitMix64 {
 public:
  explicit SplitMix64(uint64_t seed) : state_(seed) {}

  // The next 64 random bits.
  uint64_t Next() {
    uint64_t z = (state_ += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
  }
  // Uniform in [0, 1) with 53 random bits.
  double Uniform() { return UnitIntervalFromBits(Next()); }
  // Uniform in [lo, hi).
  double Uniform(double lo, double hi) { return lo + (hi - lo) * Uniform(); }

 private:
  uint64_t state_;
};

// A well-mixed 64-bit hash of x (a bijection): the first output of
// SplitMix64(x). Turns structured seeds (0, 1, 2, ...) into unrelated ones.
inline uint64_t SplitMix64Hash(uint64_t x) { return SplitMix64(x).Next(); }

// A seed for an independent stream derived from `seed` and a stream label
// (iteration, objective, ...): different labels give unrelated streams.
inline uint64_t DeriveSeed(uint64_t seed, uint64_t label) {
  SplitMix64 mix(seed ^ (label * 0xd1b54a32d192ed03ULL + 0x8cb92ba72f3d8dd7ULL));
  mix.Next();
  return mix.Next();
}

}  // namespace logstar

#endif  // LOGSTAR_ENGINE_BASE_RANDOM_H_
