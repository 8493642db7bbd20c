// Sublattices: which kind of column each detected atom is (issue 15, item 3).
//
// A prior may describe several sublattices (PhysicsPrior::sublattices, e.g.
// the bright A and the fainter B columns of a perovskite). AssignSublattices
// labels each atom with one of them and counts each against its expected
// number, so that a session can ask for one sublattice and get those
// columns, not the prior's total count made up from any.
//
// Coordinates: x = column, y = row, px of the image passed in, origin at the
// centre of its top-left pixel.
//
// Thread-safety: pure functions; may run concurrently.
#ifndef LOGSTAR_ENGINE_PHYSICS_SUBLATTICE_H_
#define LOGSTAR_ENGINE_PHYSICS_SUBLATTICE_H_

#include <string>
#include <vector>

#include <opencv2/core.hpp>

#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "engine/base/context.h"
#include "engine/base/geometry.h"
#include "engine/physics/lattice.h"
#include "engine/physics/physics_prior.h"

namespace logstar {

// One sublattice's count over the frame (or a region).
struct SublatticeCount {
  std::string name;           // the prior's
  int num_found = 0;          // atoms assigned to it
  double num_expected = 0.0;  // its density × the crystalline area
  double qc = 0.0;            // |found - expected| / expected (0 when expected is 0)
  // The measured brightness relative to the brightest sublattice's, to set
  // beside the prior's relative_brightness.
  double relative_brightness = 0.0;
};

struct SublatticeAssignment {
  // Per atom: an index into prior.sublattices, or -1 when not assigned
  // (e.g. off the crystal).
  std::vector<int> labels;
  std::vector<SublatticeCount> counts;  // one per prior sublattice, in its order
  // Not empty when the frame does not show the sublattices the prior
  // describes (e.g. one brightness where two are expected): says how.
  std::string note;
};

}  // namespace logstar

#endif  // LOGSTAR_ENGINE_PHYSICS_SUBLATTICE_H_
