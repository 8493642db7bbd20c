// The crystalline map of one frame (engine/physics/crystallinity.h), for
// looking at it: measures the lattice and the crystal on the normalised
// frame as the analyzer does and writes the mask (uint8 .npy).
//
//   crystal_map IMAGE.npy OUT_MASK.npy
#include <cstdio>
#include <string>

#include <opencv2/core.hpp>

#include "engine/image/image_io.h"
#include "engine/image/normalize.h"
#include "engine/physics/crystallinity.h"
#include "engine/physics/lattice.h"

int main(int argc, char** argv) {
  using namespace logstar;
  if (argc < 3) {
    std::fprintf(stderr, "usage: crystal_map IMAGE OUT_MASK.npy\n");
    return 2;
  }
  absl::StatusOr<cv::Mat> raw = LoadFrame(argv[1]);
  if (!raw.ok()) {
    std::fprintf(stderr, "%s\n", raw.status().ToString().c_str());
    return 1;
  }
  absl::StatusOr<cv::Mat> frame = NormalizeFrame(*raw, NormalizeOptions{});
  if (!frame.ok()) return 1;
  absl::StatusOr<LatticeMeasurement> lattice = MeasureLattice(*frame, LatticeOptions{});
  if (!lattice.ok() || !lattice->found) {
    std::fprintf(stderr, "no lattice: %s\n",
                 lattice.ok() ? lattice->reason.c_str() : lattice.status().ToString().c_str());
    return 1;
  }
  std::printf("lattice a (%.2f, %.2f) b (%.2f, %.2f) nn %.2f px, %d columns per cell\n",
              lattice->a.x, lattice->a.y, lattice->b.x, lattice->b.y, lattice->nearest_neighbor_px,
              lattice->columns_per_cell);
  absl::StatusOr<Crystallinity> c = MeasureCrystallinity(*frame, *lattice);
  if (!c.ok()) {
    std::fprintf(stderr, "%s\n", c.status().ToString().c_str());
    return 1;
  }
  std::printf("fraction %.3f level %.4g noise %.4g threshold %.4g\n", c->fraction, c->level,
              c->noise, c->threshold);
  cv::Mat mask = c->mask.frame_mask().clone();
  if (!WriteNpy(argv[2], mask).ok()) return 1;
  return 0;
}
