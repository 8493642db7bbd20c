// What the benchmark programs share: dying with a message, unwrapping
// StatusOr, timing, and reading a frame directory written by `logstar synth`
// (meta.json with the prior, image.npy, atoms.csv).
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

}  // namespace logstar::bench

#endif  // LOGSTAR_TESTS_BENCH_BENCH_UTIL_H_
