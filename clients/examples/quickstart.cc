// Streams frames to logstard and prints the atoms found: the shortest C++
// client (clients/cpp/client.h, library logstar_client).
//
//   build/clients/examples/quickstart 127.0.0.1:50051
//
// Acquire() stands in for the microscope: put your camera's read-out there
// and your sample's prior below.
#include <bit>
#include <cmath>
#include <cstdio>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "clients/cpp/client.h"

namespace {

constexpr int kSize = 256;

// A kSize² float32 frame: Gaussian columns (sigma 1.8 px) on a square
// lattice of 16 px, the first at 8 px, with noise.
std::vector<float> Acquire(std::mt19937& rng) {
  std::vector<float> profile(kSize, 0.0f);
  for (int t = 0; t < kSize; ++t) {
    for (double c = 8; c < kSize; c += 16)
      profile[t] += std::exp(-(t - c) * (t - c) / (2 * 1.8 * 1.8));
  }
  std::normal_distribution<float> noise(0.0f, 0.05f);
  std::vector<float> image(kSize * kSize);
  for (int y = 0; y < kSize; ++y) {
    for (int x = 0; x < kSize; ++x) image[y * kSize + x] = profile[y] * profile[x] + noise(rng);
  }
  return image;
}

int Fail(const absl::Status& status) {
  std::fprintf(stderr, "quickstart: %s\n", std::string(status.message()).c_str());
  return 1;
}

}  // namespace

int main(int argc, char** argv) {
  auto client = logstar::Client::Connect({.address = argc > 1 ? argv[1] : "127.0.0.1:50051"});
  if (!client.ok()) return Fail(client.status());

  // What is known about the sample: 0.25 Å per pixel, one column per
  // 4 × 4 Å cell (16 px), no two columns closer than 4 Å.
  logstar::v1::SessionSettings settings;
  logstar::v1::PhysicsPrior* prior = settings.mutable_prior();
  prior->set_pixel_size_angstrom(0.25);
  prior->set_nearest_neighbor_angstrom(4.0);
  prior->mutable_lattice()->set_a_angstrom(4.0);
  prior->mutable_lattice()->set_b_angstrom(4.0);
  prior->mutable_lattice()->set_columns_per_cell(1);
  settings.set_overload_policy(logstar::v1::OVERLOAD_POLICY_BLOCK);  // analyse every frame
  auto stream = (*client)->OpenStream({.settings = settings});
  if (!stream.ok()) return Fail(stream.status());

  // One answer per frame, in order: a result, or a dropped or error record.
  std::thread reader([&stream] {
    while (std::optional<logstar::StreamAnswer> answer = (*stream)->Read()) {
      const logstar::v1::StreamResponse& r = answer->response;
      const auto sequence = static_cast<unsigned long long>(r.sequence());
      if (r.has_result() && r.result().atoms_size() > 0) {
        const logstar::v1::Atom& atom = r.result().atoms(0);  // x = column, y = row, px
        std::printf("frame %llu: %d atoms, e.g. x=%.2f y=%.2f\n", sequence, r.result().atoms_size(),
                    atom.x(), atom.y());
      } else {
        std::printf("frame %llu: %s\n", sequence, r.ShortDebugString().c_str());
      }
    }
  });

  static_assert(std::endian::native == std::endian::little, "the wire's pixels are little-endian");
  std::mt19937 rng(0);
  for (uint64_t sequence = 1; sequence <= 5; ++sequence) {
    const std::vector<float> image = Acquire(rng);
    logstar::v1::Frame frame;
    frame.set_sequence(sequence);
    logstar::v1::PixelData* pixels = frame.mutable_pixels();
    pixels->set_dtype(logstar::v1::DTYPE_FLOAT32);
    pixels->set_width(kSize);
    pixels->set_height(kSize);
    pixels->set_data(image.data(), image.size() * sizeof(float));
    if (!(*stream)->Push(std::move(frame)).ok()) break;  // Finish() says why
  }
  const absl::Status status = (*stream)->Finish();
  reader.join();
  return status.ok() ? 0 : Fail(status);
}
