// Streams frames to logstard and prints the atoms found: the shortest C++
// client (clients/cpp/client.h; find_package(logstar), target
// logstar::client: docs/packaging.md).
//
//   build/clients/examples/quickstart 127.0.0.1:50051
//
// Acquire() stands in for the microscope: put your camera's read-out there
// and your sample's prior below (or LoadPriorFile("prior.json")).
#include <cmath>
#include <cstdio>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "clients/cpp/client.h"
#include "clients/cpp/make_frame.h"
#include "clients/cpp/prior_loader.h"

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
  auto prior = logstar::ParsePriorJson(R"({"pixel_size_angstrom": 0.25,
      "nearest_neighbor_angstrom": 4.0,
      "lattice": {"a_angstrom": 4.0, "b_angstrom": 4.0, "columns_per_cell": 1}})");
  if (!prior.ok()) return Fail(prior.status());
  logstar::v1::SessionSettings settings;
  *settings.mutable_prior() = *prior;
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

  std::mt19937 rng(0);
  absl::Status made;
  for (uint64_t sequence = 1; sequence <= 5; ++sequence) {
    const std::vector<float> image = Acquire(rng);  // row-major, kSize × kSize
    // 0.25 Å per pixel, as the prior says (a frame's own pixel size wins).
    auto frame = logstar::MakeFrame(image.data(), kSize, kSize, logstar::v1::DTYPE_FLOAT32, 0.25);
    if (made = frame.status(); !made.ok()) break;
    frame->set_sequence(sequence);
    if (!(*stream)->Push(*std::move(frame)).ok()) break;  // Finish() says why
  }
  const absl::Status status = (*stream)->Finish();
  reader.join();
  if (!made.ok()) return Fail(made);
  return status.ok() ? 0 : Fail(status);
}
