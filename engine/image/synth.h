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
// Scenes (SynthScene): what the frame shows besides the lattice.
//  * kCrystal (default): the crystal fills the frame (minus the amorphous
//    region, if any).
//  * kNanoparticle: one particle, faceted (5–8 straight facets) or rounded
//    (an ellipse), chosen by the seed, covering crystal_fraction of the frame
//    (up to pixelation); vacuum elsewhere: background and noise only.
//  * kEdge: the crystal ends along a straight line of random orientation,
//    placed so the crystal covers crystal_fraction; vacuum beyond.
//  * kSupport: the kNanoparticle particle (same seed, same particle) on an
//    amorphous support film covering the frame: a smooth random texture of
//    low contrast (mean 0.04, std 0.015 of the brightest column; grains about
//    one column wide) plus light single atoms (peak 0.1–0.25, 0.8 × the
//    column width; 0.25 per crystal column's area) scattered over the film
//    outside the particle. These support atoms are not columns: they are
//    listed in SynthFrame::support_atoms, not in atoms.
//  * kInterface: two crystals meeting along a straight line of random
//    orientation; the first (`lattice`, axis aligned) covers crystal_fraction,
//    the second (`interface_lattice`, rotated by interface_rotation_deg, with
//    its own random origin) the rest. Columns of the second crystal closer
//    than the prior's nearest-neighbour distance to a column of the first are
//    left out, so the truth's spacing never falls below the prior's.
// The scene's shape is drawn in the undrifted frame; drift shears it with the
// atoms. A column belongs to a crystal when the crystal map holds that
// crystal at the column's pixel, so atoms and masks always agree.
//
// Sublattices: every column carries its sublattice. kPerovskite: "A" (Sr) and
// "B" (Ti–O); kHex: "A" and "B" (the two triangular sublattices of the
// honeycomb, both C); kYbco: the element ("Ba", "Y", "Cu"). For the A/B
// lattices ab_brightness_ratio > 0 sets the peak heights to A = 1,
// B = 1 / ratio instead of Z^1.7 (kPerovskite 2.53, kHex 1).
//
// Lattices (projected cation columns; oxygen is not visible in HAADF):
//  * kYbco: YBa2Cu3O7 along [100], a = 3.82 Å (x), c = 11.68 Å (y); Ba, Y and
//    Cu columns, 6 per cell, nearest neighbour 2.55 Å (Y–Cu2).
//  * kPerovskite: SrTiO3 along [100], a = 3.905 Å; Sr and Ti–O columns.
//  * kHex: graphene-like honeycomb, C–C 1.42 Å.
#ifndef LOGSTAR_ENGINE_IMAGE_SYNTH_H_
#define LOGSTAR_ENGINE_IMAGE_SYNTH_H_

#include <cstdint>
#include <optional>
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

enum class SynthScene { kCrystal, kNanoparticle, kEdge, kSupport, kInterface };

// "crystal", "nanoparticle", "edge", "support", "interface".
absl::StatusOr<SynthScene> ParseSynthScene(const std::string& name);
const char* SynthSceneName(SynthScene scene);

struct SynthOptions {
  int width = 256;   // pixels, 8..8192
  int height = 256;  // pixels, 8..8192
  SynthLattice lattice = SynthLattice::kYbco;
  // <= 0 picks the lattice's default (0.125 Å/px; 0.078 Å/px for kHex).
  double pixel_size_angstrom = 0.0;
  double noise = 0.1;               // [0, 1]
  double amorphous_fraction = 0.0;  // [0, 0.9]; 0 unless scene is kCrystal
  double drift_px = 0.0;            // finite
  double dose = 0.0;                // counts at the brightest pixel; 0 = no shot noise
  uint64_t seed = 0;

  SynthScene scene = SynthScene::kCrystal;
  // Share of the frame covered by the particle (kNanoparticle, kSupport), the
  // crystal (kEdge) or the first crystal (kInterface); [0.05, 0.95]. Unused by
  // kCrystal.
  double crystal_fraction = 0.4;
  // Peak height of sublattice A over B, for lattices with A and B
  // sublattices (kPerovskite, kHex); 0 = Z^1.7, else [1, 10].
  double ab_brightness_ratio = 0.0;
  // kInterface only: the second crystal's lattice (unset = `lattice`) and its
  // rotation against the first, degrees in [-180, 180], from +x towards +y
  // (clockwise on screen, as rows grow downwards).
  std::optional<SynthLattice> interface_lattice = std::nullopt;
  double interface_rotation_deg = 30.0;

  absl::Status Validate() const;
};

struct SynthAtom {
  double x = 0.0;          // column, pixels (with drift applied: where it appears)
  double y = 0.0;          // row, pixels
  std::string element;     // "Ba", "Y", "Cu", "Sr", "Ti", "C"; "Si" on the support
  double intensity = 0.0;  // peak height in the clean frame
  double sigma_px = 0.0;   // Gaussian width of the column
  bool amorphous = false;
  // "A", "B" or the element (see the file comment); the site a displaced or
  // added amorphous column was drawn from; "support" for support atoms.
  std::string sublattice;
  // Index into SynthFrame::crystals; -1 = in no crystal (amorphous columns,
  // support atoms).
  int crystal = 0;
};

// One sublattice of one crystal, as a prior with sublattices would state it.
struct SynthSublattice {
  std::string name;              // as SynthAtom::sublattice
  int crystal = 0;               // index into SynthFrame::crystals
  std::string element;           // of its columns
  double density_per_nm2 = 0.0;  // its columns per nm² of the crystal's projected area
  // Peak height over the crystal's brightest column's: 1 for the brightest
  // sublattice; for A/B with a ratio R, A = 1 and B = 1 / R.
  double relative_brightness = 0.0;
};

struct SynthCrystal {
  SynthLattice lattice = SynthLattice::kYbco;
  double rotation_deg = 0.0;   // of its a axis from +x towards +y
  double area_fraction = 0.0;  // share of the frame's pixels it covers
  double column_density_per_nm2 = 0.0;
  double nearest_neighbor_angstrom = 0.0;
};

struct SynthFrame {
  cv::Mat image;             // CV_32F, height × width
  cv::Mat amorphous_mask;    // CV_8U, 1 = amorphous
  cv::Mat crystalline_mask;  // CV_8U, 1 = crystal (no vacuum, support or amorphous material)
  cv::Mat crystal_map;       // CV_8U, 0 = no crystal, i + 1 = crystals[i]
  // The visible columns: the ground truth. Those with crystal >= 0 lie in
  // their crystal's part of crystal_map; amorphous ones are flagged.
  std::vector<SynthAtom> atoms;
  std::vector<SynthAtom> support_atoms;  // kSupport's light atoms; not columns
  std::vector<SynthCrystal> crystals;    // one (two for kInterface)
  // Every crystal's sublattices, brightest first within a crystal.
  std::vector<SynthSublattice> sublattices;
  // Describes the first crystal's lattice (its column density, for the area
  // it covers: not the frame's average); the nearest neighbour is the
  // smallest of the crystals'.
  PhysicsPrior prior;
  SynthOptions options;  // as used, defaults resolved
};

absl::StatusOr<SynthFrame> Synthesize(const SynthOptions& options);

// Writes the layout ../shared/reference/README.md describes, so the reference
// workflow runs on the same frame: image.npy (float32), meta.json,
// atoms.csv (x,y,element,intensity,sigma_px,amorphous,sublattice,crystal;
// read it by column name: columns may be appended), amorphous_mask.npy and
// crystalline_mask.npy (uint8), support_atoms.csv (same columns; only the
// header unless the scene is kSupport). meta.json holds pixel_size_angstrom,
// px_per_angstrom, atom_density_per_px2, nn_min_px and the PhysicsPrior fields
// (column_density_per_nm2, nearest_neighbor_angstrom), so it can also be
// passed as a prior, and the scene: scene, crystal_fraction (as asked),
// crystalline_fraction (of the mask), ab_brightness_ratio, n_support_atoms,
// crystals [{lattice, rotation_deg, area_fraction, density_per_nm2,
// nn_angstrom}] and sublattices [{name, crystal, element, density_per_nm2,
// relative_brightness}]. Creates `dir` if needed.
// The prior a user of the frame would give: frame.prior (of the first
// crystal) with that crystal's sublattices, brightest first, from the
// generator's description (names, densities, relative brightness), when it
// has several.
PhysicsPrior SynthPriorWithSublattices(const SynthFrame& frame);

absl::Status WriteSynthFrame(const SynthFrame& frame, const std::string& dir);

}  // namespace logstar

#endif  // LOGSTAR_ENGINE_IMAGE_SYNTH_H_
