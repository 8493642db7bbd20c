// Synthetic HAADF-like frames with ground truth, for tests, benchmarks and
// demonstrations.
//
// A frame is a sum of Gaussian columns on a projected lattice with
// Z-dependent intensity (∝ Z^1.7), plus a constant background, optional scan
// drift, an optional amorphous region and noise:
//  * noise: Gaussian with std = noise × (max - min) of the clean frame (the
//    published convention), applied after the optional Poisson dose;
//  * dose: if > 0, the clean frame is scaled so its brightest pixel expects
//    `dose` counts, Poisson sampled and scaled back;
//  * amorphous_fraction F: a smooth random region covering F of the frame;
//    atoms inside are displaced, dimmed or removed; the region is returned as
//    a mask and every remaining atom carries an amorphous flag;
//  * drift_px: horizontal scan drift; row y is shifted by drift_px · y / (H - 1)
//    pixels, so the first row is undisturbed and the last moved by drift_px.
// Deterministic for a given Options (same seed, same frame) on one platform.
//
// Lattices (projected cation columns; oxygen is not visible in HAADF):
//  * kYbco: YBa2Cu3O7 along [100], a = 3.82 Å (x), c = 11.68 Å (y); Ba, Y and
//    Cu columns, 6 per cell, nearest neighbour 2.55 Å (Y–Cu2).
//  * kPerovskite: SrTiO3 along [100], a = 3.905 Å; Sr and Ti–O columns.
//  * kHex: graphene-like honeycomb, C–C 1.42 Å.
#ifndef LOGSTAR_ENGINE_IMAGE_SYNTH_H_
#define LOGSTAR_ENGINE_IMAGE_SYNTH_H_

#include <cstdint>
#include <string>
#include <vector>

#include <opencv2/core.hpp>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "engine/physics/physics_prior.h"

namespace logstar {

enum class SynthLattice { kYbco, kPerovskite, kHex };

// "ybco", "perovskite", "hex".
absl::StatusOr<SynthLattice> ParseSynthLattice(const std::string& name);
const char* SynthLatticeName(SynthLattice lattice);

struct SynthOptions {
  int width = 256;   // pixels, 8..8192
  int height = 256;  // pixels, 8..8192
  SynthLattice lattice = SynthLattice::kYbco;
  // <= 0 picks the lattice's default (0.125 Å/px; 0.078 Å/px for kHex).
  double pixel_size_angstrom = 0.0;
  double noise = 0.1;               // [0, 1]
  double amorphous_fraction = 0.0;  // [0, 0.9]
  double drift_px = 0.0;            // finite
  double dose = 0.0;                // counts at the brightest pixel; 0 = no shot noise
  uint64_t seed = 0;

  absl::Status Validate() const;
};

struct SynthAtom {
  double x = 0.0;          // column, pixels (with drift applied: where it appears)
  double y = 0.0;          // row, pixels
  std::string element;     // "Ba", "Y", "Cu", "Sr", "Ti", "C"
  double intensity = 0.0;  // peak height in the clean frame
  double sigma_px = 0.0;   // Gaussian width of the column
  bool amorphous = false;
};

struct SynthFrame {
  cv::Mat image;                 // CV_32F, height × width
  cv::Mat amorphous_mask;        // CV_8U, 1 = amorphous
  std::vector<SynthAtom> atoms;  // the visible atoms: the ground truth
  PhysicsPrior prior;            // describes the generated lattice
  SynthOptions options;          // as used, defaults resolved
};

absl::StatusOr<SynthFrame> Synthesize(const SynthOptions& options);

// Writes the layout ../shared/reference/README.md describes, so the reference
// workflow runs on the same frame: image.npy (float32), meta.json,
// atoms.csv (x,y,element,intensity,sigma_px,amorphous) and amorphous_mask.npy
// (uint8). meta.json holds pixel_size_angstrom, px_per_angstrom,
// atom_density_per_px2, nn_min_px and the PhysicsPrior fields
// (column_density_per_nm2, nearest_neighbor_angstrom), so it can also be
// passed as a prior. Creates `dir` if needed.
absl::Status WriteSynthFrame(const SynthFrame& frame, const std::string& dir);

}  // namespace logstar

#endif  // LOGSTAR_ENGINE_IMAGE_SYNTH_H_
