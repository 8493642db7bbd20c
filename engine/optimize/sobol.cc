#include "engine/optimize/sobol.h"

#include <cstdint>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "engine/base/random.h"

namespace logstar {
namespace {

// One dimension of the Joe–Kuo table: the primitive polynomial with its
// leading and constant terms as bits (degree s = bit length - 1; the middle
// s - 1 bits are Joe–Kuo's `a`) and the s initial direction integers m_k.
struct DirectionEntry {
  uint16_t polynomial;
  uint16_t m[10];
};

// Dimensions 2..128 of new-joe-kuo-6.21201 (dimension 1 is van der Corput).
constexpr DirectionEntry kJoeKuo[SobolSequence::kMaxDimensions - 1] = {
    {3, {1}},
    {7, {1, 3}},
    {11, {1, 3, 1}},
    {13, {1, 1, 1}},
    {19, {1, 1, 3, 3}},
    {25, {1, 3, 5, 13}},
    {37, {1, 1, 5, 5, 17}},
    {41, {1, 1, 5, 5, 5}},
    {47, {1, 1, 7, 11, 19}},
    {55, {1, 1, 5, 1, 1}},
    {59, {1, 1, 1, 3, 11}},
    {61, {1, 3, 5, 5, 31}},
    {67, {1, 3, 3, 9, 7, 49}},
    {91, {1, 1, 1, 15, 21, 21}},
    {97, {1, 3, 1, 13, 27, 49}},
    {103, {1, 1, 1, 15, 7, 5}},
    {109, {1, 3, 1, 15, 13, 25}},
    {115, {1, 1, 5, 5, 19, 61}},
    {131, {1, 3, 7, 11, 23, 15, 103}},
    {137, {1, 3, 7, 13, 13, 15, 69}},
    {143, {1, 1, 3, 13, 7, 35, 63}},
    {145, {1, 3, 5, 9, 1, 25, 53}},
    {157, {1, 3, 1, 13, 9, 35, 107}},
    {167, {1, 3, 1, 5, 27, 61, 31}},
    {171, {1, 1, 5, 11, 19, 41, 61}},
    {185, {1, 3, 5, 3, 3, 13, 69}},
    {191, {1, 1, 7, 13, 1, 19, 1}},
    {193, {1, 3, 7, 5, 13, 19, 59}},
    {203, {1, 1, 3, 9, 25, 29, 41}},
    {211, {1, 3, 5, 13, 23, 1, 55}},
    {213, {1, 3, 7, 3, 13, 59, 17}},
    {229, {1, 3, 1, 3, 5, 53, 69}},
    {239, {1, 1, 5, 5, 23, 33, 13}},
    {241, {1, 1, 7, 7, 1, 61, 123}},
    {247, {1, 1, 7, 9, 13, 61, 49}},
    {253, {1, 3, 3, 5, 3, 55, 33}},
    {285, {1, 3, 1, 15, 31, 13, 49, 245}},
    {299, {1, 3, 5, 15, 31, 59, 63, 97}},
    {301, {1, 3, 1, 11, 11, 11, 77, 249}},
    {333, {1, 3, 1, 11, 27, 43, 71, 9}},
    {351, {1, 1, 7, 15, 21, 11, 81, 45}},
    {355, {1, 3, 7, 3, 25, 31, 65, 79}},
    {357, {1, 3, 1, 1, 19, 11, 3, 205}},
    {361, {1, 1, 5, 9, 19, 21, 29, 157}},
    {369, {1, 3, 7, 11, 1, 33, 89, 185}},
    {391, {1, 3, 3, 3, 15, 9, 79, 71}},
    {397, {1, 3, 7, 11, 15, 39, 119, 27}},
    {425, {1, 1, 3, 1, 11, 31, 97, 225}},
    {451, {1, 1, 1, 3, 23, 43, 57, 177}},
    {463, {1, 3, 7, 7, 17, 17, 37, 71}},
    {487, {1, 3, 1, 5, 27, 63, 123, 213}},
    {501, {1, 1, 3, 5, 11, 43, 53, 133}},
    {529, {1, 3, 5, 5, 29, 17, 47, 173, 479}},
    {539, {1, 3, 3, 11, 3, 1, 109, 9, 69}},
    {545, {1, 1, 1, 5, 17, 39, 23, 5, 343}},
    {557, {1, 3, 1, 5, 25, 15, 31, 103, 499}},
    {563, {1, 1, 1, 11, 11, 17, 63, 105, 183}},
    {601, {1, 1, 5, 11, 9, 29, 97, 231, 363}},
    {607, {1, 1, 5, 15, 19, 45, 41, 7, 383}},
    {617, {1, 3, 7, 7, 31, 19, 83, 137, 221}},
    {623, {1, 1, 1, 3, 23, 15, 111, 223, 83}},
    {631, {1, 1, 5, 13, 31, 15, 55, 25, 161}},
    {637, {1, 1, 3, 13, 25, 47, 39, 87, 257}},
    {647, {1, 1, 1, 11, 21, 53, 125, 249, 293}},
    {661, {1, 1, 7, 11, 11, 7, 57, 79, 323}},
    {675, {1, 1, 5, 5, 17, 13, 81, 3, 131}},
    {677, {1, 1, 7, 13, 23, 7, 65, 251, 475}},
    {687, {1, 3, 5, 1, 9, 43, 3, 149, 11}},
    {695, {1, 1, 3, 13, 31, 13, 13, 255, 487}},
    {701, {1, 3, 3, 1, 5, 63, 89, 91, 127}},
    {719, {1, 1, 3, 3, 1, 19, 123, 127, 237}},
    {721, {1, 1, 5, 7, 23, 31, 37, 243, 289}},
    {731, {1, 1, 5, 11, 17, 53, 117, 183, 491}},
    {757, {1, 1, 1, 5, 1, 13, 13, 209, 345}},
    {761, {1, 1, 3, 15, 1, 57, 115, 7, 33}},
    {787, {1, 3, 1, 11, 7, 43, 81, 207, 175}},
    {789, {1, 3, 1, 1, 15, 27, 63, 255, 49}},
    {799, {1, 3, 5, 3, 27, 61, 105, 171, 305}},
    {803, {1, 1, 5, 3, 1, 3, 57, 249, 149}},
    {817, {1, 1, 3, 5, 5, 57, 15, 13, 159}},
    {827, {1, 1, 1, 11, 7, 11, 105, 141, 225}},
    {847, {1, 3, 3, 5, 27, 59, 121, 101, 271}},
    {859, {1, 3, 5, 9, 11, 49, 51, 59, 115}},
    {865, {1, 1, 7, 1, 23, 45, 125, 71, 419}},
    {875, {1, 1, 3, 5, 23, 5, 105, 109, 75}},
    {877, {1, 1, 7, 15, 7, 11, 67, 121, 453}},
    {883, {1, 3, 7, 3, 9, 13, 31, 27, 449}},
    {895, {1, 3, 1, 15, 19, 39, 39, 89, 15}},
    {901, {1, 1, 1, 1, 1, 33, 73, 145, 379}},
    {911, {1, 3, 1, 15, 15, 43, 29, 13, 483}},
    {949, {1, 1, 7, 3, 19, 27, 85, 131, 431}},
    {953, {1, 3, 3, 3, 5, 35, 23, 195, 349}},
    {967, {1, 3, 3, 7, 9, 27, 39, 59, 297}},
    {971, {1, 1, 3, 9, 11, 17, 13, 241, 157}},
    {973, {1, 3, 7, 15, 25, 57, 33, 189, 213}},
    {981, {1, 1, 7, 1, 9, 55, 73, 83, 217}},
    {985, {1, 3, 3, 13, 19, 27, 23, 113, 249}},
    {995, {1, 3, 5, 3, 23, 43, 3, 253, 479}},
    {1001, {1, 1, 5, 5, 11, 5, 45, 117, 217}},
    {1019, {1, 3, 3, 7, 29, 37, 33, 123, 147}},
    {1033, {1, 3, 1, 15, 5, 5, 37, 227, 223, 459}},
    {1051, {1, 1, 7, 5, 5, 39, 63, 255, 135, 487}},
    {1063, {1, 3, 1, 7, 9, 7, 87, 249, 217, 599}},
    {1069, {1, 1, 3, 13, 9, 47, 7, 225, 363, 247}},
    {1125, {1, 3, 7, 13, 19, 13, 9, 67, 9, 737}},
    {1135, {1, 3, 5, 5, 19, 59, 7, 41, 319, 677}},
    {1153, {1, 1, 5, 3, 31, 63, 15, 43, 207, 789}},
    {1163, {1, 1, 7, 9, 13, 39, 3, 47, 497, 169}},
    {1221, {1, 3, 1, 7, 21, 17, 97, 19, 415, 905}},
    {1239, {1, 3, 7, 1, 3, 31, 71, 111, 165, 127}},
    {1255, {1, 1, 5, 11, 1, 61, 83, 119, 203, 847}},
    {1267, {1, 3, 3, 13, 9, 61, 19, 97, 47, 35}},
    {1279, {1, 1, 7, 7, 15, 29, 63, 95, 417, 469}},
    {1293, {1, 3, 1, 9, 25, 9, 71, 57, 213, 385}},
    {1305, {1, 3, 5, 13, 31, 47, 101, 57, 39, 341}},
    {1315, {1, 1, 3, 3, 31, 57, 125, 173, 365, 551}},
    {1329, {1, 3, 7, 1, 13, 57, 67, 157, 451, 707}},
    {1341, {1, 1, 1, 7, 21, 13, 105, 89, 429, 965}},
    {1347, {1, 1, 5, 9, 17, 51, 45, 119, 157, 141}},
    {1367, {1, 3, 7, 7, 13, 45, 91, 9, 129, 741}},
    {1387, {1, 3, 7, 1, 23, 57, 67, 141, 151, 571}},
    {1413, {1, 1, 3, 11, 17, 47, 93, 107, 375, 157}},
    {1423, {1, 3, 3, 5, 11, 21, 43, 51, 169, 915}},
    {1431, {1, 1, 5, 3, 15, 55, 101, 67, 455, 625}},
    {1441, {1, 3, 5, 9, 1, 23, 29, 47, 345, 595}},
    {1479, {1, 3, 7, 7, 5, 49, 29, 155, 323, 589}},
    {1509, {1, 3, 3, 7, 5, 41, 127, 61, 261, 717}},
};

int Degree(uint32_t polynomial) {
  int degree = -1;
  for (; polynomial != 0; polynomial >>= 1) ++degree;
  return degree;
}

// Direction words v_1..v_kBits of one dimension, v_k = m_k · 2^(kBits - k),
// with m_k beyond the table from the Bratley–Fox recurrence
//   m_k = 2 a_1 m_{k-1} ^ 4 a_2 m_{k-2} ^ ... ^ 2^s m_{k-s} ^ m_{k-s}.
void FillDirections(int dimension, uint32_t* v) {
  constexpr int kBits = SobolSequence::kBits;
  if (dimension == 0) {
    for (int k = 1; k <= kBits; ++k) v[k - 1] = uint32_t{1} << (kBits - k);
    return;
  }
  const DirectionEntry& entry = kJoeKuo[dimension - 1];
  const int s = Degree(entry.polynomial);
  uint64_t m[kBits + 1] = {};
  for (int k = 1; k <= s && k <= kBits; ++k) m[k] = entry.m[k - 1];
  for (int k = s + 1; k <= kBits; ++k) {
    uint64_t value = m[k - s] ^ (m[k - s] << s);
    for (int j = 1; j < s; ++j) {
      // Bit j of `a`, counted from the highest: the coefficient of x^(s-j).
      if ((entry.polynomial >> (s - j)) & 1) value ^= m[k - j] << j;
    }
    m[k] = value;
  }
  for (int k = 1; k <= kBits; ++k) v[k - 1] = static_cast<uint32_t>(m[k] << (kBits - k));
}

}  // namespace

absl::Status SobolSequence::Options::Validate() const {
  if (dimensions < 1 || dimensions > kMaxDimensions) {
    return absl::InvalidArgumentError(
        absl::StrCat("Sobol dimensions must be in [1, ", kMaxDimensions, "], got ", dimensions));
  }
  return absl::OkStatus();
}

absl::StatusOr<SobolSequence> SobolSequence::Create(const Options& options) {
  if (absl::Status s = options.Validate(); !s.ok()) return s;
  SobolSequence sequence;
  sequence.dimensions_ = options.dimensions;
  sequence.directions_.resize(static_cast<size_t>(options.dimensions) * kBits);
  for (int d = 0; d < options.dimensions; ++d) {
    FillDirections(d, &sequence.directions_[static_cast<size_t>(d) * kBits]);
  }
  sequence.shift_.assign(options.dimensions, 0);
  if (options.scramble) {
    SplitMix64 rng(options.seed);
    for (uint32_t& word : sequence.shift_) word = static_cast<uint32_t>(rng.Next() >> 32);
  }
  return sequence;
}

absl::Status SobolSequence::Generate(int64_t first, int count, Eigen::MatrixXd* points) const {
  if (points == nullptr) return absl::InvalidArgumentError("points must not be null");
  if (first < 0 || count < 0 || first > kMaxPoints - count) {
    return absl::InvalidArgumentError(absl::StrCat("Sobol points [", first, ", ", first + count,
                                                   ") are outside [0, 2^", kBits, ")"));
  }
  points->resize(count, dimensions_);
  constexpr double kScale = 0x1.0p-32;
  for (int d = 0; d < dimensions_; ++d) {
    const uint32_t* v = &directions_[static_cast<size_t>(d) * kBits];
    // Point i is the XOR of the directions at the set bits of gray(i) = i ^ (i >> 1).
    const uint64_t gray = static_cast<uint64_t>(first) ^ (static_cast<uint64_t>(first) >> 1);
    uint32_t x = 0;
    for (int k = 0; k < kBits; ++k) {
      if ((gray >> k) & 1) x ^= v[k];
    }
    for (int r = 0; r < count; ++r) {
      (*points)(r, d) = static_cast<double>(x ^ shift_[d]) * kScale;
      // Going from i to i + 1 flips the gray bit at the lowest zero bit of i.
      const uint64_t i = static_cast<uint64_t>(first) + r;
      const int bit = __builtin_ctzll(~i);
      if (bit < kBits) x ^= v[bit];
    }
  }
  return absl::OkStatus();
}

}  // namespace logstar
