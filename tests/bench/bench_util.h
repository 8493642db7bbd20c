// What the benchmark programs share: dying with a message, unwrapping
// StatusOr, timing, parsing --name=value flags, and reading a frame
// directory written by `logstar synth` (meta.json with the prior, image.npy,
// atoms.csv), and generating the frames of a sweep.
//
// Benchmarks are tools, not services: on bad input they print
// "<program>: <message>" and exit 1.
#ifndef LOGSTAR_TESTS_BENCH_BENCH_UTIL_H_
#define LOGSTAR_TESTS_BENCH_BENCH_UTIL_H_

#include <errno.h>  // program_invocation_short_name (glibc)

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>

#include <nlohmann/json.hpp>

#include "absl/status/statusor.h"
#include "absl/strings/numbers.h"
#include "absl/strings/string_view.h"
#include "engine/image/synth.h"
#include "engine/physics/physics_prior.h"

namespace logstar::bench {

[[noreturn]] inline void Die(const std::string& message) {
  std::fprintf(stderr, "%s: %s\n", program_invocation_short_name, message.c_str());
  std::exit(1);
}

template <typename T>
T Must(absl::StatusOr<T> v, const char* what) {
  if (!v.ok()) Die(std::string(what) + ": " + std::string(v.status().message()));
  return *std::move(v);
}

inline double MsSince(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
}

inline std::string ReadFile(const std::string& path) {
  std::ifstream in(path);
  if (!in) Die("cannot read " + path);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

// Flag parsing: when `arg` starts with `prefix` (e.g. "--evals="), parses
// the rest into *out (dying with `arg` on a bad value) and returns true;
// otherwise returns false and leaves both alone.
inline bool ParseFlag(absl::string_view arg, absl::string_view prefix, int* out) {
  if (arg.substr(0, prefix.size()) != prefix) return false;
  if (!absl::SimpleAtoi(arg.substr(prefix.size()), out)) Die("bad value: " + std::string(arg));
  return true;
}
inline bool ParseFlag(absl::string_view arg, absl::string_view prefix, double* out) {
  if (arg.substr(0, prefix.size()) != prefix) return false;
  if (!absl::SimpleAtod(arg.substr(prefix.size()), out)) Die("bad value: " + std::string(arg));
  return true;
}
inline bool ParseFlag(absl::string_view arg, absl::string_view prefix, std::string* out) {
  if (arg.substr(0, prefix.size()) != prefix) return false;
  *out = std::string(arg.substr(prefix.size()));
  return true;
}

// The prior of a synth frame directory, from its meta.json.
inline PhysicsPrior ReadSynthPrior(const std::string& dir) {
  const nlohmann::json meta = nlohmann::json::parse(ReadFile(dir + "/meta.json"));
  PhysicsPrior p;
  p.pixel_size_angstrom = meta.at("pixel_size_angstrom").get<double>();
  p.column_density_per_nm2 = meta.at("column_density_per_nm2").get<double>();
  p.nearest_neighbor_angstrom = meta.at("nearest_neighbor_angstrom").get<double>();
  if (absl::Status s = p.Validate(); !s.ok()) Die(dir + "/meta.json: " + std::string(s.message()));
  return p;
}

// A generated square frame of `lattice` (synth's name) for the sweeps:
// size × size px at `noise`, from `seed`.
inline SynthFrame SweepFrame(const std::string& lattice, int size, double noise, double seed) {
  SynthOptions so;
  so.lattice = Must(ParseSynthLattice(lattice), "lattice");
  so.width = so.height = size;
  so.noise = noise;
  so.seed = static_cast<uint64_t>(seed);
  return Must(Synthesize(so), "synth");
}

}  // namespace logstar::bench

#endif  // LOGSTAR_TESTS_BENCH_BENCH_UTIL_H_
