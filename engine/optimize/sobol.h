// Quasi-random points for initial designs and candidate sets, and the
// engine's deterministic pseudo-random generator.
//
// SobolSequence: the Sobol sequence in [0, 1)^d, d <= kMaxDimensions, with the
// Joe–Kuo direction numbers (file new-joe-kuo-6.21201, as scipy.stats.qmc
// ships them), in Gray-code order with 32-bit coordinates. Unscrambled, point
// i equals scipy.stats.qmc.Sobol(d, scramble=False)'s point i exactly (the
// first point is the origin). Scrambled, every coordinate's 32-bit integer is
// XORed with a per-dimension word drawn from the seed (a random digital
// shift): the first 2^k points still put one point in each of the 2^k
// equal bins of every 1-D projection, but the origin and the other dyadic
// corners, where a GP learns least, are no longer sampled.
//
// SplitMix64: a 64-bit generator whose output is fixed by its seed on every
// platform and standard library (std:: distributions are not), so runs
// reproduce bit for bit.
//
// Thread-safety: SobolSequence is immutable after Create() and may be shared;
// a SplitMix64 must not be used by two threads at once.
#ifndef LOGSTAR_ENGINE_OPTIMIZE_SOBOL_H_
#define LOGSTAR_ENGINE_OPTIMIZE_SOBOL_H_

#include <cstdint>
#include <vector>

#include <Eigen/Core>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace logstar {

class SplitMix64 {
 public:
  explicit SplitMix64(uint64_t seed) : state_(seed) {}

  uint64_t Next() {
    uint64_t z = (state_ += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
  }
  // Uniform in [0, 1) with 53 random bits.
  double Uniform() { return static_cast<double>(Next() >> 11) * 0x1.0p-53; }
  // Uniform in [lo, hi).
  double Uniform(double lo, double hi) { return lo + (hi - lo) * Uniform(); }

 private:
  uint64_t state_;
};

// A seed for an independent stream derived from `seed` and a stream label
// (iteration, objective, ...): different labels give unrelated streams.
inline uint64_t DeriveSeed(uint64_t seed, uint64_t label) {
  SplitMix64 mix(seed ^ (label * 0xd1b54a32d192ed03ULL + 0x8cb92ba72f3d8dd7ULL));
  mix.Next();
  return mix.Next();
}

class SobolSequence {
 public:
  static constexpr int kMaxDimensions = 128;
  static constexpr int kBits = 32;
  static constexpr int64_t kMaxPoints = int64_t{1} << kBits;

  struct Options {
    int dimensions = 1;  // in [1, kMaxDimensions]
    bool scramble = true;
    uint64_t seed = 0;  // of the digital shift; unused without scramble

    absl::Status Validate() const;
  };

  static absl::StatusOr<SobolSequence> Create(const Options& options);

  int dimensions() const { return dimensions_; }

  // Resizes *points to count × dimensions() and fills row r with point
  // first + r. Requires first >= 0, count >= 0, first + count <= kMaxPoints.
  // Costs O(dimensions · (32 + count)), whatever `first` is.
  absl::Status Generate(int64_t first, int count, Eigen::MatrixXd* points) const;

 private:
  SobolSequence() = default;

  int dimensions_ = 0;
  std::vector<uint32_t> directions_;  // dimensions_ × kBits, dimension-major
  std::vector<uint32_t> shift_;       // one word per dimension (all 0 unscrambled)
};

}  // namespace logstar

#endif  // LOGSTAR_ENGINE_OPTIMIZE_SOBOL_H_
