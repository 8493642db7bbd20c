#include "engine/image/synth.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <exception>
#include <filesystem>
#include <fstream>
#include <limits>
#include <numbers>
#include <random>
#include <string>
#include <system_error>
#include <utility>
#include <vector>

#include <opencv2/core.hpp>
#include <opencv2/imgproc.hpp>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "engine/base/random.h"
#include "engine/base/status_macros.h"
#include "engine/image/image_io.h"

namespace logstar {
namespace {

constexpr int kMinSize = 8;
constexpr int kMaxSize = 8192;
// Coarser sampling than this cannot resolve any of the lattices' columns, and
// it bounds the atom count (and memory) of the largest frames.
constexpr double kMaxPixelSizeAngstrom = 1.0;
constexpr double kMaxDriftPx = 1e6;
constexpr double kBackground = 0.05;
constexpr double kRenderSigmas = 4.0;
constexpr double kZExponent = 1.7;

// Amorphous material: what happens to a column inside the region.
constexpr double kAmorphousRemoveProbability = 0.25;
constexpr double kAmorphousDisplacementPerNn = 0.25;
constexpr double kAmorphousDimMin = 0.35;
constexpr double kAmorphousDimMax = 0.8;
constexpr double kAmorphousExtraShare = 0.15;
constexpr int kDisplacementTries = 16;
// The random field is built on a grid of at most this many cells a side and
// upsampled: its correlation length is 1/8 of the frame, so a full-resolution
// blur of an 8192² frame would only waste time.
constexpr int kFieldGrid = 64;

struct Site {
  double fx;  // fractional coordinates in the rectangular cell
  double fy;
  const char* element;
  int z;
};

// Every lattice is described by a rectangular (possibly non-primitive) cell,
// so tiling the frame is a double loop.
struct LatticeSpec {
  double ax;  // Å, along x
  double ay;  // Å, along y
  double sigma_angstrom;
  double default_pixel_size_angstrom;
  std::vector<Site> sites;
};

LatticeSpec SpecFor(SynthLattice lattice) {
  switch (lattice) {
    case SynthLattice::kPerovskite:
      return {3.905, 3.905, 0.45, 0.125, {{0.0, 0.0, "Sr", 38}, {0.5, 0.5, "Ti", 22}}};
    case SynthLattice::kHex: {
      // Honeycomb with a along x; the rectangular cell a × a√3 holds two
      // primitive cells, i.e. four atoms.
      const double a = 2.46;
      return {a,
              a * std::sqrt(3.0),
              0.35,
              0.078,
              {{0.0, 0.0, "C", 6},
               {0.5, 1.0 / 6.0, "C", 6},
               {0.5, 0.5, "C", 6},
               {0.0, 2.0 / 3.0, "C", 6}}};
    }
    case SynthLattice::kYbco:
    default:
      return {3.82,
              11.68,
              0.45,
              0.125,
              {{0.0, 0.0, "Cu", 29},
               {0.5, 0.184, "Ba", 56},
               {0.5, 0.816, "Ba", 56},
               {0.0, 0.355, "Cu", 29},
               {0.0, 0.645, "Cu", 29},
               {0.5, 0.5, "Y", 39}}};
  }
}

// Smallest distance between two columns of the infinite crystal, found
// numerically so that it cannot drift from the site table.
double MinSpacingAngstrom(const LatticeSpec& spec) {
  double best = std::numeric_limits<double>::infinity();
  for (size_t i = 0; i < spec.sites.size(); ++i) {
    for (size_t j = 0; j < spec.sites.size(); ++j) {
      for (int di = -1; di <= 1; ++di) {
        for (int dj = -1; dj <= 1; ++dj) {
          if (i == j && di == 0 && dj == 0) continue;
          const double dx = (spec.sites[j].fx + di - spec.sites[i].fx) * spec.ax;
          const double dy = (spec.sites[j].fy + dj - spec.sites[i].fy) * spec.ay;
          best = std::min(best, std::hypot(dx, dy));
        }
      }
    }
  }
  return best;
}

double ColumnDensityPerNm2(const LatticeSpec& spec) {
  return static_cast<double>(spec.sites.size()) / (spec.ax * spec.ay) * 100.0;
}

// The std:: distributions differ between standard libraries; these
// transforms of the raw engine output do not, so a seed names one frame.
class Rng {
 public:
  // Independent streams per purpose: turning noise on or off must not change
  // the lattice or the amorphous region drawn from the same seed.
  Rng(uint64_t seed, uint64_t stream) : engine_(SplitMix64Hash(seed ^ SplitMix64Hash(stream))) {}

  // [0, 1)
  double Uniform() { return UnitIntervalFromBits(engine_()); }
  double Uniform(double lo, double hi) { return lo + (hi - lo) * Uniform(); }

  // Box–Muller.
  double Normal() {
    if (has_spare_) {
      has_spare_ = false;
      return spare_;
    }
    // (0, 1], exactly: k·2^-53 + 2^-53 for k < 2^53 is representable.
    const double u1 = UnitIntervalFromBits(engine_()) + 0x1.0p-53;
    const double u2 = Uniform();
    const double r = std::sqrt(-2.0 * std::log(u1));
    const double t = 2.0 * std::numbers::pi * u2;
    spare_ = r * std::sin(t);
    has_spare_ = true;
    return r * std::cos(t);
  }

  // Knuth's multiplication method for small means, Hörmann's PTRS
  // (transformed rejection with squeeze) for large ones.
  // Returned as double: a huge dose would overflow any integer type.
  double Poisson(double lambda) {
    if (!(lambda > 0.0)) return 0.0;
    if (lambda < 10.0) {
      const double limit = std::exp(-lambda);
      double k = 0.0;
      double p = Uniform();
      while (p > limit) {
        k += 1.0;
        p *= Uniform();
      }
      return k;
    }
    const double slam = std::sqrt(lambda);
    const double loglam = std::log(lambda);
    const double b = 0.931 + 2.53 * slam;
    const double a = -0.059 + 0.02483 * b;
    const double inv_alpha = 1.1239 + 1.1328 / (b - 3.4);
    const double vr = 0.9277 - 3.6224 / (b - 2.0);
    while (true) {
      const double u = Uniform() - 0.5;
      const double v = Uniform();
      const double us = 0.5 - std::fabs(u);
      const double k = std::floor((2.0 * a / us + b) * u + lambda + 0.43);
      if (us >= 0.07 && v <= vr) return k;
      if (k < 0.0 || (us < 0.013 && v > us)) continue;
      if (std::log(v) + std::log(inv_alpha) - std::log(a / (us * us) + b) <=
          -lambda + k * loglam - std::lgamma(k + 1.0)) {
        return k;
      }
    }
  }

 private:
  std::mt19937_64 engine_;
  bool has_spare_ = false;
  double spare_ = 0.0;
};

enum Stream : uint64_t { kLatticeStream = 1, kAmorphousStream, kDoseStream, kNoiseStream };

// Rounds to the pixel that contains the point; floor(x + 0.5) rather than
// std::lround so that -0.5 (the frame's left edge) belongs to pixel 0.
int PixelOf(double v, int size) {
  return std::clamp(static_cast<int>(std::floor(v + 0.5)), 0, size - 1);
}

bool InFrame(double x, double y, int width, int height) {
  return x >= -0.5 && x < width - 0.5 && y >= -0.5 && y < height - 0.5;
}

// Smooth random field (blurred white noise, correlation length ~1/8 of the
// frame, plus one broad bump so there is one main blob); the mask is its top
// `fraction` quantile, so the masked share is `fraction` up to ties.
cv::Mat AmorphousMask(int width, int height, double fraction, Rng& rng) {
  cv::Mat mask = cv::Mat::zeros(height, width, CV_8U);
  const int64_t n = static_cast<int64_t>(width) * height;
  const int64_t k = std::llround(fraction * static_cast<double>(n));
  if (k <= 0) return mask;

  const int gw = std::min(width, kFieldGrid);
  const int gh = std::min(height, kFieldGrid);
  cv::Mat coarse(gh, gw, CV_64F);
  for (int y = 0; y < gh; ++y) {
    double* row = coarse.ptr<double>(y);
    for (int x = 0; x < gw; ++x) row[x] = rng.Normal();
  }
  cv::GaussianBlur(coarse, coarse, cv::Size(0, 0), gw / 8.0, gh / 8.0, cv::BORDER_REFLECT_101);
  cv::Scalar mean, stddev;
  cv::meanStdDev(coarse, mean, stddev);
  coarse = (coarse - mean[0]) / std::max(stddev[0], 1e-12);
  const double cx = rng.Uniform(0.15, 0.85) * gw;
  const double cy = rng.Uniform(0.15, 0.85) * gh;
  const double bx = gw / 5.0;
  const double by = gh / 5.0;
  for (int y = 0; y < gh; ++y) {
    double* row = coarse.ptr<double>(y);
    for (int x = 0; x < gw; ++x) {
      const double dx = (x + 0.5 - cx) / bx;
      const double dy = (y + 0.5 - cy) / by;
      row[x] += 2.0 * std::exp(-0.5 * (dx * dx + dy * dy));
    }
  }
  cv::Mat field;
  cv::resize(coarse, field, cv::Size(width, height), 0, 0, cv::INTER_CUBIC);

  std::vector<double> values;
  values.reserve(static_cast<size_t>(n));
  for (int y = 0; y < height; ++y) {
    const double* row = field.ptr<double>(y);
    values.insert(values.end(), row, row + width);
  }
  auto nth = values.begin() + (n - k);
  std::nth_element(values.begin(), nth, values.end());
  const double threshold = *nth;
  for (int y = 0; y < height; ++y) {
    const double* f = field.ptr<double>(y);
    uint8_t* m = mask.ptr<uint8_t>(y);
    for (int x = 0; x < width; ++x) m[x] = f[x] >= threshold ? 1 : 0;
  }
  return mask;
}

void RenderAtom(const SynthAtom& atom, cv::Mat& image, std::vector<float>& ex) {
  const double reach = kRenderSigmas * atom.sigma_px;
  const int x0 = std::max(0, static_cast<int>(std::ceil(atom.x - reach)));
  const int x1 = std::min(image.cols - 1, static_cast<int>(std::floor(atom.x + reach)));
  const int y0 = std::max(0, static_cast<int>(std::ceil(atom.y - reach)));
  const int y1 = std::min(image.rows - 1, static_cast<int>(std::floor(atom.y + reach)));
  if (x0 > x1 || y0 > y1) return;
  const double inv = 1.0 / (2.0 * atom.sigma_px * atom.sigma_px);
  // The Gaussian is separable: one exp per row and per column of the box.
  ex.resize(static_cast<size_t>(x1 - x0 + 1));
  for (int x = x0; x <= x1; ++x) {
    const double d = x - atom.x;
    ex[x - x0] = static_cast<float>(std::exp(-d * d * inv));
  }
  for (int y = y0; y <= y1; ++y) {
    const double d = y - atom.y;
    const float wy = static_cast<float>(atom.intensity * std::exp(-d * d * inv));
    float* row = image.ptr<float>(y);
    for (int x = x0; x <= x1; ++x) row[x] += wy * ex[x - x0];
  }
}

// Relative peak height of a site's column: (Z / Z_max)^1.7, as HAADF
// contrast goes.
double PeakIntensity(const LatticeSpec& spec, const Site& site) {
  int max_z = 0;
  for (const Site& s : spec.sites) max_z = std::max(max_z, s.z);
  return std::pow(static_cast<double>(site.z) / max_z, kZExponent);
}

// The lattice's columns inside the frame: axis aligned, with a random origin
// inside one cell so that column centres fall at arbitrary sub-pixel
// positions, each row shifted by the drift.
std::vector<SynthAtom> PlaceLattice(const LatticeSpec& spec, const SynthOptions& opt,
                                    double sigma_px) {
  const int width = opt.width;
  const int height = opt.height;
  const double px = opt.pixel_size_angstrom;
  Rng lattice_rng(opt.seed, kLatticeStream);
  const double ox = lattice_rng.Uniform() * spec.ax;
  const double oy = lattice_rng.Uniform() * spec.ay;
  const double shear = height > 1 ? opt.drift_px / (height - 1) : 0.0;
  const int j0 = static_cast<int>(std::floor((-0.5 * px - oy) / spec.ay)) - 1;
  const int j1 = static_cast<int>(std::ceil(((height - 0.5) * px - oy) / spec.ay)) + 1;

  std::vector<SynthAtom> atoms;
  atoms.reserve(
      static_cast<size_t>(ColumnDensityPerNm2(spec) * px * px / 100.0 * width * height * 1.1) + 16);
  for (int j = j0; j <= j1; ++j) {
    for (const Site& s : spec.sites) {
      const double y = (oy + (j + s.fy) * spec.ay) / px;
      if (y < -0.5 || y >= height - 0.5) continue;
      // The drift is constant along a lattice row, so the range of cells that
      // lands inside the frame is known without scanning the drifted-out ones.
      const double shift = shear * y;
      const int i0 = static_cast<int>(std::floor(((-0.5 - shift) * px - ox) / spec.ax - s.fx)) - 1;
      const int i1 =
          static_cast<int>(std::ceil(((width - 0.5 - shift) * px - ox) / spec.ax - s.fx)) + 1;
      for (int i = i0; i <= i1; ++i) {
        const double x = (ox + (i + s.fx) * spec.ax) / px + shift;
        if (!InFrame(x, y, width, height)) continue;
        SynthAtom atom;
        atom.x = x;
        atom.y = y;
        atom.element = s.element;
        atom.intensity = PeakIntensity(spec, s);
        atom.sigma_px = sigma_px;
        atoms.push_back(std::move(atom));
      }
    }
  }
  return atoms;
}

// Whether (x, y) lies in the frame and in the region of `mask` (CV_8U).
bool InRegion(const cv::Mat& mask, double x, double y) {
  return InFrame(x, y, mask.cols, mask.rows) &&
         mask.at<uint8_t>(PixelOf(y, mask.rows), PixelOf(x, mask.cols)) != 0;
}

// The columns inside the amorphous region: each is removed or displaced by
// `displacement` px (staying inside the region) and dimmed. Returns how many
// were inside.
int64_t DisorderAtoms(const cv::Mat& mask, double displacement, Rng& rng,
                      std::vector<SynthAtom>* atoms) {
  std::vector<SynthAtom> kept;
  kept.reserve(atoms->size());
  int64_t touched = 0;
  for (SynthAtom& atom : *atoms) {
    if (!InRegion(mask, atom.x, atom.y)) {
      kept.push_back(std::move(atom));
      continue;
    }
    ++touched;
    if (rng.Uniform() < kAmorphousRemoveProbability) continue;
    // Displaced atoms stay inside the region, so the flag always agrees
    // with the mask at the atom's pixel and the region edge stays sharp.
    for (int t = 0; t < kDisplacementTries; ++t) {
      const double nx = atom.x + displacement * rng.Normal();
      const double ny = atom.y + displacement * rng.Normal();
      if (InRegion(mask, nx, ny)) {
        atom.x = nx;
        atom.y = ny;
        break;
      }
    }
    atom.intensity *= rng.Uniform(kAmorphousDimMin, kAmorphousDimMax);
    atom.amorphous = true;
    kept.push_back(std::move(atom));
  }
  *atoms = std::move(kept);
  return touched;
}

// Amorphous material still scatters: `count` extra disordered columns at
// random places in the region of `mask`.
void AddDisorderedColumns(const LatticeSpec& spec, const cv::Mat& mask, int64_t count,
                          double sigma_px, Rng& rng, std::vector<SynthAtom>* atoms) {
  const int width = mask.cols;
  std::vector<int64_t> region;
  for (int y = 0; y < mask.rows; ++y) {
    const uint8_t* m = mask.ptr<uint8_t>(y);
    for (int x = 0; x < width; ++x) {
      if (m[x]) region.push_back(static_cast<int64_t>(y) * width + x);
    }
  }
  for (int64_t e = 0; e < count && !region.empty(); ++e) {
    const size_t pick =
        std::min(region.size() - 1, static_cast<size_t>(rng.Uniform() * region.size()));
    const Site& s = spec.sites[std::min(spec.sites.size() - 1,
                                        static_cast<size_t>(rng.Uniform() * spec.sites.size()))];
    SynthAtom atom;
    // Jitter within [-0.5, 0.5) keeps the atom in its pixel.
    atom.x = static_cast<double>(region[pick] % width) + rng.Uniform() - 0.5;
    atom.y = static_cast<double>(region[pick] / width) + rng.Uniform() - 0.5;
    atom.element = s.element;
    atom.intensity = PeakIntensity(spec, s) * rng.Uniform(kAmorphousDimMin, kAmorphousDimMax);
    atom.sigma_px = sigma_px;
    atom.amorphous = true;
    atoms->push_back(std::move(atom));
  }
}

// The clean frame: every atom's Gaussian on the background.
cv::Mat RenderClean(const std::vector<SynthAtom>& atoms, int width, int height) {
  cv::Mat image = cv::Mat::zeros(height, width, CV_32F);
  std::vector<float> ex;
  for (const SynthAtom& atom : atoms) RenderAtom(atom, image, ex);
  image += cv::Scalar(kBackground);
  return image;
}

// Shot noise: the frame scaled to `dose` counts at its brightest pixel
// (clean_max), drawn as Poisson counts and scaled back.
void AddShotNoise(double dose, double clean_max, uint64_t seed, cv::Mat& image) {
  Rng dose_rng(seed, kDoseStream);
  const double to_counts = dose / clean_max;
  const double from_counts = clean_max / dose;
  for (int y = 0; y < image.rows; ++y) {
    float* row = image.ptr<float>(y);
    for (int x = 0; x < image.cols; ++x) {
      row[x] = static_cast<float>(dose_rng.Poisson(row[x] * to_counts) * from_counts);
    }
  }
}

void AddGaussianNoise(double noise_std, uint64_t seed, cv::Mat& image) {
  Rng noise_rng(seed, kNoiseStream);
  for (int y = 0; y < image.rows; ++y) {
    float* row = image.ptr<float>(y);
    for (int x = 0; x < image.cols; ++x) {
      row[x] = static_cast<float>(row[x] + noise_std * noise_rng.Normal());
    }
  }
}

absl::StatusOr<SynthFrame> SynthesizeImpl(const SynthOptions& options) {
  const LatticeSpec spec = SpecFor(options.lattice);
  SynthFrame frame;
  frame.options = options;
  if (!(frame.options.pixel_size_angstrom > 0.0)) {
    frame.options.pixel_size_angstrom = spec.default_pixel_size_angstrom;
  }
  const SynthOptions& opt = frame.options;
  const double px = opt.pixel_size_angstrom;
  const double nn_angstrom = MinSpacingAngstrom(spec);
  const double sigma_px = spec.sigma_angstrom / px;
  frame.prior.pixel_size_angstrom = px;
  frame.prior.column_density_per_nm2 = ColumnDensityPerNm2(spec);
  frame.prior.nearest_neighbor_angstrom = nn_angstrom;
  LOGSTAR_RETURN_IF_ERROR(frame.prior.Validate());

  frame.atoms = PlaceLattice(spec, opt, sigma_px);
  Rng amorphous_rng(opt.seed, kAmorphousStream);
  frame.amorphous_mask =
      AmorphousMask(opt.width, opt.height, opt.amorphous_fraction, amorphous_rng);
  if (opt.amorphous_fraction > 0.0) {
    const double nn_px = nn_angstrom / px;
    const double displacement = kAmorphousDisplacementPerNn * nn_px;
    const int64_t touched =
        DisorderAtoms(frame.amorphous_mask, displacement, amorphous_rng, &frame.atoms);
    const int64_t extra = std::llround(kAmorphousExtraShare * static_cast<double>(touched));
    AddDisorderedColumns(spec, frame.amorphous_mask, extra, sigma_px, amorphous_rng, &frame.atoms);
  }

  frame.image = RenderClean(frame.atoms, opt.width, opt.height);
  double clean_min = 0.0;
  double clean_max = 0.0;
  cv::minMaxLoc(frame.image, &clean_min, &clean_max);
  if (opt.dose > 0.0 && clean_max > 0.0) AddShotNoise(opt.dose, clean_max, opt.seed, frame.image);
  const double noise_std = opt.noise * (clean_max - clean_min);
  if (noise_std > 0.0) AddGaussianNoise(noise_std, opt.seed, frame.image);
  return frame;
}

std::string Num(double v) { return absl::StrFormat("%.17g", v); }

absl::Status WriteText(const std::filesystem::path& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  if (!out) return absl::InternalError(absl::StrCat("cannot open ", path.string(), " for writing"));
  out.write(text.data(), static_cast<std::streamsize>(text.size()));
  out.close();
  if (!out) return absl::InternalError(absl::StrCat("cannot write ", path.string()));
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<SynthLattice> ParseSynthLattice(const std::string& name) {
  if (name == "ybco") return SynthLattice::kYbco;
  if (name == "perovskite") return SynthLattice::kPerovskite;
  if (name == "hex") return SynthLattice::kHex;
  return absl::InvalidArgumentError(
      absl::StrCat("lattice must be one of ybco, perovskite, hex; got '", name, "'"));
}

const char* SynthLatticeName(SynthLattice lattice) {
  switch (lattice) {
    case SynthLattice::kYbco:
      return "ybco";
    case SynthLattice::kPerovskite:
      return "perovskite";
    case SynthLattice::kHex:
      return "hex";
  }
  return "unknown";
}

absl::Status SynthOptions::Validate() const {
  if (width < kMinSize || width > kMaxSize) {
    return absl::InvalidArgumentError(
        absl::StrCat("width must be in [", kMinSize, ", ", kMaxSize, "], got ", width));
  }
  if (height < kMinSize || height > kMaxSize) {
    return absl::InvalidArgumentError(
        absl::StrCat("height must be in [", kMinSize, ", ", kMaxSize, "], got ", height));
  }
  if (lattice != SynthLattice::kYbco && lattice != SynthLattice::kPerovskite &&
      lattice != SynthLattice::kHex) {
    return absl::InvalidArgumentError(
        absl::StrCat("lattice must be ybco, perovskite or hex, got ", static_cast<int>(lattice)));
  }
  if (!std::isfinite(pixel_size_angstrom) || pixel_size_angstrom > kMaxPixelSizeAngstrom) {
    return absl::InvalidArgumentError(
        absl::StrCat("pixel_size_angstrom must be finite and at most ", kMaxPixelSizeAngstrom,
                     " (<= 0 picks the lattice's default), got ", pixel_size_angstrom));
  }
  // The frame's prior must pass PhysicsPrior::Validate(), which needs two
  // pixels between neighbouring columns.
  const double nn = MinSpacingAngstrom(SpecFor(lattice));
  if (pixel_size_angstrom > nn / 2.0) {
    return absl::InvalidArgumentError(
        absl::StrCat("pixel_size_angstrom must be at most ", nn / 2.0, " for lattice ",
                     SynthLatticeName(lattice), " (nearest neighbour ", nn,
                     " Å must span >= 2 px), got ", pixel_size_angstrom));
  }
  if (!(noise >= 0.0 && noise <= 1.0)) {
    return absl::InvalidArgumentError(absl::StrCat("noise must be in [0, 1], got ", noise));
  }
  if (!(amorphous_fraction >= 0.0 && amorphous_fraction <= 0.9)) {
    return absl::InvalidArgumentError(
        absl::StrCat("amorphous_fraction must be in [0, 0.9], got ", amorphous_fraction));
  }
  // Bounded so that lattice indices stay far from integer overflow.
  if (!(std::fabs(drift_px) <= kMaxDriftPx)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "drift_px must be finite with |drift_px| <= ", kMaxDriftPx, ", got ", drift_px));
  }
  if (!(dose >= 0.0) || !std::isfinite(dose)) {
    return absl::InvalidArgumentError(
        absl::StrCat("dose must be finite and >= 0 (0 = no shot noise), got ", dose));
  }
  return absl::OkStatus();
}

absl::StatusOr<SynthFrame> Synthesize(const SynthOptions& options) {
  LOGSTAR_RETURN_IF_ERROR(options.Validate());
  try {
    return SynthesizeImpl(options);
  } catch (const cv::Exception& e) {
    return absl::InternalError(absl::StrCat("Synthesize: OpenCV error: ", e.what()));
  } catch (const std::exception& e) {
    return absl::InternalError(absl::StrCat("Synthesize: ", e.what()));
  }
}

absl::Status WriteSynthFrame(const SynthFrame& frame, const std::string& dir) {
  if (frame.image.empty() || frame.image.type() != CV_32F || frame.image.dims != 2) {
    return absl::InvalidArgumentError(
        absl::StrCat("WriteSynthFrame(", dir, "): image must be a non-empty 2-D CV_32F Mat"));
  }
  if (frame.amorphous_mask.type() != CV_8U || frame.amorphous_mask.size() != frame.image.size()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "WriteSynthFrame(", dir, "): amorphous_mask must be CV_8U and the image's size"));
  }
  if (absl::Status s = frame.prior.Validate(); !s.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("WriteSynthFrame(", dir, "): invalid prior: ", s.message()));
  }
  try {
    const std::filesystem::path root(dir);
    std::error_code ec;
    std::filesystem::create_directories(root, ec);
    if (ec) {
      return absl::InternalError(absl::StrCat("cannot create directory ", dir, ": ", ec.message()));
    }
    if (!std::filesystem::is_directory(root, ec)) {
      return absl::InternalError(absl::StrCat("not a directory: ", dir));
    }

    LOGSTAR_RETURN_IF_ERROR(WriteNpy((root / "image.npy").string(), frame.image));
    LOGSTAR_RETURN_IF_ERROR(WriteNpy((root / "amorphous_mask.npy").string(), frame.amorphous_mask));

    const PhysicsPrior& prior = frame.prior;
    const SynthOptions& o = frame.options;
    std::string meta = "{\n";
    absl::StrAppend(&meta, "  \"lattice\": \"", SynthLatticeName(o.lattice), "\",\n");
    absl::StrAppend(&meta, "  \"width\": ", frame.image.cols, ",\n");
    absl::StrAppend(&meta, "  \"height\": ", frame.image.rows, ",\n");
    absl::StrAppend(&meta, "  \"pixel_size_angstrom\": ", Num(prior.pixel_size_angstrom), ",\n");
    absl::StrAppend(&meta, "  \"px_per_angstrom\": ", Num(prior.PxPerAngstrom()), ",\n");
    absl::StrAppend(&meta, "  \"atom_density_per_px2\": ", Num(prior.ColumnDensityPerPx2()), ",\n");
    absl::StrAppend(&meta, "  \"nn_min_px\": ", Num(prior.NearestNeighborPx()), ",\n");
    absl::StrAppend(&meta, "  \"column_density_per_nm2\": ", Num(prior.ColumnDensityPerNm2()),
                    ",\n");
    absl::StrAppend(
        &meta, "  \"nearest_neighbor_angstrom\": ", Num(prior.nearest_neighbor_angstrom), ",\n");
    absl::StrAppend(&meta, "  \"noise\": ", Num(o.noise), ",\n");
    absl::StrAppend(&meta, "  \"amorphous_fraction\": ", Num(o.amorphous_fraction), ",\n");
    absl::StrAppend(&meta, "  \"drift_px\": ", Num(o.drift_px), ",\n");
    absl::StrAppend(&meta, "  \"dose\": ", Num(o.dose), ",\n");
    absl::StrAppend(&meta, "  \"seed\": ", o.seed, ",\n");
    absl::StrAppend(&meta, "  \"n_atoms\": ", frame.atoms.size(), "\n");
    meta += "}\n";
    LOGSTAR_RETURN_IF_ERROR(WriteText(root / "meta.json", meta));

    std::string csv = "x,y,element,intensity,sigma_px,amorphous\n";
    for (const SynthAtom& a : frame.atoms) {
      absl::StrAppendFormat(&csv, "%.17g,%.17g,%s,%.17g,%.17g,%d\n", a.x, a.y, a.element,
                            a.intensity, a.sigma_px, a.amorphous ? 1 : 0);
    }
    LOGSTAR_RETURN_IF_ERROR(WriteText(root / "atoms.csv", csv));
  } catch (const std::exception& e) {
    return absl::InternalError(absl::StrCat("WriteSynthFrame(", dir, "): ", e.what()));
  }
  return absl::OkStatus();
}

}  // namespace logstar
