// Quasi-random points for initial designs and candidate sets.
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
// The digital shift is drawn from SplitMix64 (engine/base/random.h), so a
// seed gives the same points on every platform.
//
// Thread-safety: SobolSequence is immutable after Create() and may be shared.
#ifndef LOGSTAR_ENGINE_OPTIMIZE_SOBOL_H_
#define LOGSTAR_ENGINE_OPTIMIZE_SOBOL_H_

#include <cstdint>
#include <vector>

#include <Eigen/Core>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace logstar {

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
