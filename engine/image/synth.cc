#include "engine/image/synth.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <exception>
#include <filesystem>
#include <fstream>
#include <limits>
#include <numbers>
#include <optional>
#include <random>
#include <string>
#include <string_view>
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
// Scenes. A particle is an ellipse of this least aspect, drawn with this many
// vertices, or has kMinFacets .. kMinFacets + kFacetChoices - 1 facets whose
// angles are jittered by this share of their spacing and whose distances
// from the centre by this share; its centre is this share of the frame off
// the frame's centre.
constexpr double kParticleMinAspect = 0.7;
constexpr int kEllipseVertices = 96;
constexpr int kMinFacets = 5;
constexpr int kFacetChoices = 4;
constexpr double kFacetAngleJitter = 0.15;
constexpr double kFacetDistanceJitter = 0.2;
constexpr double kParticleCentreJitter = 0.1;
// The support film, relative to the brightest column's peak (1): its mean
// signal and texture std; its light atoms per crystal column's area, their
// peak heights and their width relative to a column's.
constexpr double kSupportLevel = 0.04;
constexpr double kSupportContrast = 0.015;
constexpr double kSupportAtomsPerColumn = 0.25;
constexpr double kSupportAtomMin = 0.1;
constexpr double kSupportAtomMax = 0.25;
constexpr double kSupportAtomWidth = 0.8;
// A/B peak-height ratios accepted.
constexpr double kMinAbRatio = 1.0;
constexpr double kMaxAbRatio = 10.0;
constexpr double kMinCrystalFraction = 0.05;
constexpr double kMaxCrystalFraction = 0.95;
// The random field is built on a grid of at most this many cells a side and
// upsampled: its correlation length is 1/8 of the frame, so a full-resolution
// blur of an 8192² frame would only waste time.
constexpr int kFieldGrid = 64;

struct Site {
  double fx;  // fractional coordinates in the rectangular cell
  double fy;
  const char* element;
  int z;
  const char* sublattice;  // "A"/"B" where the lattice has them, else the element
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
      return {3.905, 3.905, 0.45, 0.125, {{0.0, 0.0, "Sr", 38, "A"}, {0.5, 0.5, "Ti", 22, "B"}}};
    case SynthLattice::kHex: {
      // Honeycomb with a along x; the rectangular cell a × a√3 holds two
      // primitive cells, i.e. four atoms. Each site's three nearest
      // neighbours belong to the other triangular sublattice.
      const double a = 2.46;
      return {a,
              a * std::sqrt(3.0),
              0.35,
              0.078,
              {{0.0, 0.0, "C", 6, "A"},
               {0.5, 1.0 / 6.0, "C", 6, "B"},
               {0.5, 0.5, "C", 6, "A"},
               {0.0, 2.0 / 3.0, "C", 6, "B"}}};
    }
    case SynthLattice::kYbco:
    default:
      return {3.82,
              11.68,
              0.45,
              0.125,
              {{0.0, 0.0, "Cu", 29, "Cu"},
               {0.5, 0.184, "Ba", 56, "Ba"},
               {0.5, 0.816, "Ba", 56, "Ba"},
               {0.0, 0.355, "Cu", 29, "Cu"},
               {0.0, 0.645, "Cu", 29, "Cu"},
               {0.5, 0.5, "Y", 39, "Y"}}};
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

bool HasAbSublattices(const LatticeSpec& spec) {
  return std::any_of(spec.sites.begin(), spec.sites.end(),
                     [](const Site& s) { return std::string_view(s.sublattice) == "B"; });
}

// The smaller nearest-neighbour distance of the frame's crystals.
double FrameNearestNeighborAngstrom(const SynthOptions& opt) {
  double nn = MinSpacingAngstrom(SpecFor(opt.lattice));
  if (opt.scene == SynthScene::kInterface) {
    nn = std::min(nn, MinSpacingAngstrom(SpecFor(opt.interface_lattice.value_or(opt.lattice))));
  }
  return nn;
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

enum Stream : uint64_t {
  kLatticeStream = 1,
  kAmorphousStream,
  kDoseStream,
  kNoiseStream,
  kSceneStream,
  kInterfaceStream,
  kSupportStream,
};

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
// contrast goes, or A = 1, B = 1 / ab_ratio when a ratio is asked for and the
// lattice has A and B sublattices.
double PeakIntensity(const LatticeSpec& spec, const Site& site, double ab_ratio) {
  if (ab_ratio > 0.0 && HasAbSublattices(spec)) {
    return std::string_view(site.sublattice) == "B" ? 1.0 / ab_ratio : 1.0;
  }
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
        atom.intensity = PeakIntensity(spec, s, opt.ab_brightness_ratio);
        atom.sigma_px = sigma_px;
        atom.sublattice = s.sublattice;
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
    atom.crystal = -1;
    kept.push_back(std::move(atom));
  }
  *atoms = std::move(kept);
  return touched;
}

// The pixels (y · width + x) where (mask != 0) == set.
std::vector<int64_t> RegionPixels(const cv::Mat& mask, bool set) {
  const int width = mask.cols;
  std::vector<int64_t> region;
  for (int y = 0; y < mask.rows; ++y) {
    const uint8_t* m = mask.ptr<uint8_t>(y);
    for (int x = 0; x < width; ++x) {
      if ((m[x] != 0) == set) region.push_back(static_cast<int64_t>(y) * width + x);
    }
  }
  return region;
}

// Amorphous material still scatters: `count` extra disordered columns at
// random places in the region of `mask`.
void AddDisorderedColumns(const LatticeSpec& spec, const cv::Mat& mask, int64_t count,
                          double sigma_px, double ab_ratio, Rng& rng,
                          std::vector<SynthAtom>* atoms) {
  const int width = mask.cols;
  const std::vector<int64_t> region = RegionPixels(mask, true);
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
    atom.intensity =
        PeakIntensity(spec, s, ab_ratio) * rng.Uniform(kAmorphousDimMin, kAmorphousDimMax);
    atom.sigma_px = sigma_px;
    atom.amorphous = true;
    atom.sublattice = s.sublattice;
    atom.crystal = -1;
    atoms->push_back(std::move(atom));
  }
}

// ---------------------------------------------------------------- scenes

// A polygon in undrifted pixel coordinates (x = column, y = row).
using Polygon = std::vector<cv::Point2d>;

// The half-plane n·p <= d.
struct HalfPlane {
  cv::Point2d n;
  double d;
};

// The part of `poly` inside `h` (one Sutherland–Hodgman step; convex in,
// convex out).
Polygon Clip(const Polygon& poly, const HalfPlane& h) {
  Polygon out;
  for (size_t i = 0; i < poly.size(); ++i) {
    const cv::Point2d& a = poly[i];
    const cv::Point2d& b = poly[(i + 1) % poly.size()];
    const double fa = h.n.dot(a) - h.d;
    const double fb = h.n.dot(b) - h.d;
    if (fa <= 0.0) out.push_back(a);
    if ((fa < 0.0 && fb > 0.0) || (fa > 0.0 && fb < 0.0))
      out.push_back(a + (b - a) * (fa / (fa - fb)));
  }
  return out;
}

// The half-planes whose intersection is the convex polygon `poly`.
std::vector<HalfPlane> HalfPlanesOf(const Polygon& poly) {
  cv::Point2d centre(0.0, 0.0);
  for (const cv::Point2d& p : poly) centre += p;
  centre *= 1.0 / static_cast<double>(poly.size());
  std::vector<HalfPlane> planes;
  for (size_t i = 0; i < poly.size(); ++i) {
    const cv::Point2d& a = poly[i];
    const cv::Point2d& b = poly[(i + 1) % poly.size()];
    cv::Point2d n(b.y - a.y, a.x - b.x);
    if (n.dot(centre - a) > 0.0) n = -n;  // outwards, whatever the winding
    planes.push_back({n, n.dot(a)});
  }
  return planes;
}

double Area(const Polygon& poly) {
  double twice = 0.0;
  for (size_t i = 0; i < poly.size(); ++i) twice += poly[i].cross(poly[(i + 1) % poly.size()]);
  return 0.5 * std::fabs(twice);
}

// What the frame's pixels cover in undrifted coordinates: row y is shifted
// by shear · y, so the frame is the parallelogram of the points
// (x - shear · y, y). Shear keeps areas: it covers width × height px².
Polygon UndriftedFrame(int width, int height, double shear) {
  const double top = -0.5;
  const double bottom = height - 0.5;
  return {{-0.5 - shear * top, top},
          {width - 0.5 - shear * top, top},
          {width - 0.5 - shear * bottom, bottom},
          {-0.5 - shear * bottom, bottom}};
}

// Share of the frame a convex shape covers.
double FrameShare(const Polygon& shape, const Polygon& frame) {
  Polygon inside = shape;
  for (const HalfPlane& h : HalfPlanesOf(frame)) inside = Clip(inside, h);
  return inside.size() < 3 ? 0.0 : Area(inside) / Area(frame);
}

// The t in [lo, hi] where the nondecreasing share(t) reaches `target`.
template <typename ShareFn>
double SolveForShare(ShareFn share, double lo, double hi, double target) {
  for (int i = 0; i < 100 && hi - lo > 1e-9 * (std::fabs(lo) + std::fabs(hi) + 1.0); ++i) {
    const double mid = 0.5 * (lo + hi);
    (share(mid) < target ? lo : hi) = mid;
  }
  return 0.5 * (lo + hi);
}

// Sets `map` to `label` at the pixels whose centre lies in `shape` once
// undrifted: scan lines, even–odd rule, x half-open.
void Rasterize(const Polygon& shape, double shear, uint8_t label, cv::Mat& map) {
  std::vector<double> xs;
  for (int y = 0; y < map.rows; ++y) {
    xs.clear();
    for (size_t i = 0; i < shape.size(); ++i) {
      const cv::Point2d& a = shape[i];
      const cv::Point2d& b = shape[(i + 1) % shape.size()];
      if ((a.y <= y) != (b.y <= y)) xs.push_back(a.x + (y - a.y) * (b.x - a.x) / (b.y - a.y));
    }
    std::sort(xs.begin(), xs.end());
    const double shift = shear * y;
    uint8_t* row = map.ptr<uint8_t>(y);
    for (size_t k = 0; k + 1 < xs.size(); k += 2) {
      const double lo = std::max(std::ceil(xs[k] + shift), 0.0);
      const double hi = std::min(std::ceil(xs[k + 1] + shift), static_cast<double>(map.cols));
      for (int x = static_cast<int>(lo); x < static_cast<int>(hi); ++x) row[x] = label;
    }
  }
}

// A square of side 2 · half centred on c.
Polygon Square(cv::Point2d c, double half) {
  return {{c.x - half, c.y - half},
          {c.x + half, c.y - half},
          {c.x + half, c.y + half},
          {c.x - half, c.y + half}};
}

// A particle shape of size ~1 around the origin: a rounded one (an ellipse
// of random aspect and orientation) or a faceted one (5–8 facets at jittered
// angles and distances, convex as an intersection of half-planes).
Polygon UnitParticle(Rng& rng) {
  Polygon shape;
  if (rng.Uniform() < 0.5) {
    const double aspect = rng.Uniform(kParticleMinAspect, 1.0);
    const double phi = rng.Uniform(0.0, std::numbers::pi);
    for (int k = 0; k < kEllipseVertices; ++k) {
      const double t = 2.0 * std::numbers::pi * k / kEllipseVertices;
      const double u = std::cos(t);
      const double v = aspect * std::sin(t);
      shape.push_back(
          {u * std::cos(phi) - v * std::sin(phi), u * std::sin(phi) + v * std::cos(phi)});
    }
    return shape;
  }
  const int facets =
      kMinFacets + std::min(kFacetChoices - 1, static_cast<int>(rng.Uniform() * kFacetChoices));
  const double phi0 = rng.Uniform(0.0, 2.0 * std::numbers::pi);
  const double step = 2.0 * std::numbers::pi / facets;
  shape = Square({0.0, 0.0}, 2.0);
  for (int k = 0; k < facets; ++k) {
    const double angle = phi0 + step * (k + rng.Uniform(-kFacetAngleJitter, kFacetAngleJitter));
    const double distance = rng.Uniform(1.0 - kFacetDistanceJitter, 1.0 + kFacetDistanceJitter);
    shape = Clip(shape, {{std::cos(angle), std::sin(angle)}, distance});
  }
  return shape;
}

// The particle of kNanoparticle and kSupport: a unit shape near the frame's
// centre (in its row: the frame may be sheared), scaled so it covers
// `fraction` of the frame.
Polygon ParticleShape(const Polygon& frame, int width, int height, double shear, double fraction,
                      Rng& rng) {
  cv::Point2d centroid(0.0, 0.0);
  for (const cv::Point2d& p : frame) centroid += p * 0.25;
  const double dx = width * rng.Uniform(-kParticleCentreJitter, kParticleCentreJitter);
  const double dy = height * rng.Uniform(-kParticleCentreJitter, kParticleCentreJitter);
  const cv::Point2d centre = centroid + cv::Point2d(dx - shear * dy, dy);
  const Polygon unit = UnitParticle(rng);
  auto scaled = [&](double s) {
    Polygon p;
    for (const cv::Point2d& q : unit) p.push_back(centre + q * s);
    return p;
  };
  // Every unit shape holds the disc of radius 1/2 about its origin: at
  // `full` that disc covers the frame.
  double reach = 0.0;
  for (const cv::Point2d& p : frame) reach = std::max(reach, cv::norm(p - centre));
  const double full = 2.0 * reach + 2.0;
  return scaled(
      SolveForShare([&](double s) { return FrameShare(scaled(s), frame); }, 0.0, full, fraction));
}

// The side n·p <= d of a straight line of random orientation, placed so it
// covers `fraction` of the frame, as a polygon far larger than the frame.
Polygon HalfPlaneShape(const Polygon& frame, double fraction, Rng& rng) {
  const double angle = rng.Uniform(0.0, 2.0 * std::numbers::pi);
  const cv::Point2d n(std::cos(angle), std::sin(angle));
  cv::Point2d centre(0.0, 0.0);
  double reach = 0.0;
  for (const cv::Point2d& p : frame) centre += p * 0.25;
  for (const cv::Point2d& p : frame) reach = std::max(reach, cv::norm(p - centre));
  const Polygon big = Square(centre, 2.0 * reach + 1.0);
  const double d = SolveForShare(
      [&](double t) {
        return FrameShare(Clip(big, {n, n.dot(centre) + t}), frame);
      },
      -reach, reach, fraction);
  return Clip(big, {n, n.dot(centre) + d});
}

// The crystal map of a scene other than kCrystal: 0 = none, i + 1 = crystal i.
cv::Mat SceneCrystalMap(const SynthOptions& opt) {
  const double shear = opt.height > 1 ? opt.drift_px / (opt.height - 1) : 0.0;
  const Polygon frame = UndriftedFrame(opt.width, opt.height, shear);
  Rng rng(opt.seed, kSceneStream);
  cv::Mat map = cv::Mat::zeros(opt.height, opt.width, CV_8U);
  switch (opt.scene) {
    case SynthScene::kNanoparticle:
    case SynthScene::kSupport:
      Rasterize(ParticleShape(frame, opt.width, opt.height, shear, opt.crystal_fraction, rng),
                shear, 1, map);
      break;
    case SynthScene::kEdge:
      Rasterize(HalfPlaneShape(frame, opt.crystal_fraction, rng), shear, 1, map);
      break;
    case SynthScene::kInterface:
      map.setTo(2);
      Rasterize(HalfPlaneShape(frame, opt.crystal_fraction, rng), shear, 1, map);
      break;
    case SynthScene::kCrystal:
      break;
  }
  return map;
}

// Keeps the atoms whose pixel holds `label` in `map`.
void KeepInRegion(const cv::Mat& map, uint8_t label, std::vector<SynthAtom>* atoms) {
  std::erase_if(*atoms, [&](const SynthAtom& a) {
    return !InFrame(a.x, a.y, map.cols, map.rows) ||
           map.at<uint8_t>(PixelOf(a.y, map.rows), PixelOf(a.x, map.cols)) != label;
  });
}

// The columns of a lattice rotated by `rotation_deg` about the frame's centre
// with a random origin, in the pixels of `map` that hold `label`; drift
// applied. Each lattice row is clipped to the undrifted frame first, so the
// work is proportional to the frame's area whatever the drift.
std::vector<SynthAtom> PlaceRotatedLattice(const LatticeSpec& spec, const SynthOptions& opt,
                                           double rotation_deg, const cv::Mat& map, uint8_t label,
                                           Rng& rng) {
  const double px = opt.pixel_size_angstrom;
  const double sigma_px = spec.sigma_angstrom / px;
  const double shear = opt.height > 1 ? opt.drift_px / (opt.height - 1) : 0.0;
  const std::vector<HalfPlane> frame = HalfPlanesOf(UndriftedFrame(opt.width, opt.height, shear));
  const double ou = rng.Uniform() * spec.ax;
  const double ov = rng.Uniform() * spec.ay;
  const double c = std::cos(rotation_deg * std::numbers::pi / 180.0);
  const double s = std::sin(rotation_deg * std::numbers::pi / 180.0);
  const cv::Point2d centre(0.5 * (opt.width - 1), 0.5 * (opt.height - 1));
  // Lattice (u, v), Å from the centre, to undrifted pixels.
  auto to_px = [&](double u, double v) {
    return centre + cv::Point2d(c * u - s * v, s * u + c * v) / px;
  };
  const cv::Point2d step = to_px(spec.ax, 0.0) - centre;  // one cell along a

  double v_lo = std::numeric_limits<double>::infinity();
  double v_hi = -v_lo;
  for (const cv::Point2d& p : UndriftedFrame(opt.width, opt.height, shear)) {
    const double v = (-s * (p.x - centre.x) + c * (p.y - centre.y)) * px;
    v_lo = std::min(v_lo, v);
    v_hi = std::max(v_hi, v);
  }
  std::vector<SynthAtom> atoms;
  const int j0 = static_cast<int>(std::floor((v_lo - ov) / spec.ay)) - 1;
  const int j1 = static_cast<int>(std::ceil((v_hi - ov) / spec.ay)) + 1;
  for (int j = j0; j <= j1; ++j) {
    for (const Site& site : spec.sites) {
      // The row's points are p0 + i · step; the frame bounds i.
      const cv::Point2d p0 = to_px(ou + site.fx * spec.ax, ov + (j + site.fy) * spec.ay);
      double i_lo = -std::numeric_limits<double>::infinity();
      double i_hi = -i_lo;
      for (const HalfPlane& h : frame) {
        const double rate = h.n.dot(step);
        const double room = h.d - h.n.dot(p0);
        if (rate > 0.0) i_hi = std::min(i_hi, room / rate);
        if (rate < 0.0) i_lo = std::max(i_lo, room / rate);
        if (rate == 0.0 && room < 0.0) i_hi = -std::numeric_limits<double>::infinity();
      }
      if (!(i_lo <= i_hi)) continue;
      for (int i = static_cast<int>(std::floor(i_lo)); i <= static_cast<int>(std::ceil(i_hi));
           ++i) {
        const cv::Point2d p = p0 + step * i;
        SynthAtom atom;
        atom.x = p.x + shear * p.y;
        atom.y = p.y;
        atom.element = site.element;
        atom.intensity = PeakIntensity(spec, site, opt.ab_brightness_ratio);
        atom.sigma_px = sigma_px;
        atom.sublattice = site.sublattice;
        atom.crystal = label - 1;
        atoms.push_back(std::move(atom));
      }
    }
  }
  KeepInRegion(map, label, &atoms);
  return atoms;
}

// Drops from `b` every atom closer than `min_px` to an atom of `a`: where two
// crystals meet, a column of the second cannot sit on one of the first. Cells
// of side min_px hold a's atoms, so a close one is in the 3 × 3 block around.
void DropCrowded(const std::vector<SynthAtom>& a, double min_px, std::vector<SynthAtom>* b) {
  using Cell = std::pair<int64_t, int64_t>;
  auto cell_of = [&](double x, double y) {
    return Cell{static_cast<int64_t>(std::floor(x / min_px)),
                static_cast<int64_t>(std::floor(y / min_px))};
  };
  std::vector<std::pair<Cell, size_t>> cells;
  cells.reserve(a.size());
  for (size_t i = 0; i < a.size(); ++i) cells.push_back({cell_of(a[i].x, a[i].y), i});
  std::sort(cells.begin(), cells.end());
  std::erase_if(*b, [&](const SynthAtom& q) {
    const Cell home = cell_of(q.x, q.y);
    for (int64_t dy = -1; dy <= 1; ++dy) {
      for (int64_t dx = -1; dx <= 1; ++dx) {
        const Cell key{home.first + dx, home.second + dy};
        auto it = std::lower_bound(cells.begin(), cells.end(), std::make_pair(key, size_t{0}));
        for (; it != cells.end() && it->first == key; ++it) {
          const SynthAtom& p = a[it->second];
          if (std::hypot(p.x - q.x, p.y - q.y) < min_px) return true;
        }
      }
    }
    return false;
  });
}

// The support film's texture: smooth white noise with grains about
// `grain_px` wide, kSupportLevel ± kSupportContrast, never negative.
cv::Mat SupportTexture(int width, int height, double grain_px, Rng& rng) {
  const int gw = std::max(2, static_cast<int>(std::ceil(width / grain_px)));
  const int gh = std::max(2, static_cast<int>(std::ceil(height / grain_px)));
  cv::Mat coarse(gh, gw, CV_32F);
  for (int y = 0; y < gh; ++y) {
    float* row = coarse.ptr<float>(y);
    for (int x = 0; x < gw; ++x) row[x] = static_cast<float>(rng.Normal());
  }
  cv::GaussianBlur(coarse, coarse, cv::Size(0, 0), 1.0, 1.0, cv::BORDER_REFLECT_101);
  cv::Scalar mean, stddev;
  cv::meanStdDev(coarse, mean, stddev);
  cv::Mat texture;
  cv::resize(coarse, texture, cv::Size(width, height), 0, 0, cv::INTER_CUBIC);
  texture.convertTo(texture, CV_32F, kSupportContrast / std::max(stddev[0], 1e-12),
                    kSupportLevel - kSupportContrast * mean[0] / std::max(stddev[0], 1e-12));
  return cv::max(texture, 0.0);
}

// Light single atoms at random places outside the crystal: `count` of them.
std::vector<SynthAtom> SupportAtoms(const cv::Mat& crystal_map, int64_t count, double sigma_px,
                                    Rng& rng) {
  const std::vector<int64_t> film = RegionPixels(crystal_map, false);
  std::vector<SynthAtom> atoms;
  for (int64_t e = 0; e < count && !film.empty(); ++e) {
    const size_t pick = std::min(film.size() - 1, static_cast<size_t>(rng.Uniform() * film.size()));
    SynthAtom atom;
    atom.x = static_cast<double>(film[pick] % crystal_map.cols) + rng.Uniform() - 0.5;
    atom.y = static_cast<double>(film[pick] / crystal_map.cols) + rng.Uniform() - 0.5;
    atom.element = "Si";
    atom.intensity = rng.Uniform(kSupportAtomMin, kSupportAtomMax);
    atom.sigma_px = kSupportAtomWidth * sigma_px;
    atom.sublattice = "support";
    atom.crystal = -1;
    atoms.push_back(std::move(atom));
  }
  return atoms;
}

// Each sublattice of `spec` once, brightest first.
void DescribeSublattices(const LatticeSpec& spec, int crystal, double ab_ratio,
                         std::vector<SynthSublattice>* out) {
  std::vector<SynthSublattice> found;
  for (const Site& site : spec.sites) {
    auto same = [&](const SynthSublattice& s) { return s.name == site.sublattice; };
    if (std::any_of(found.begin(), found.end(), same)) continue;
    const auto n = std::count_if(spec.sites.begin(), spec.sites.end(), [&](const Site& t) {
      return std::string_view(t.sublattice) == site.sublattice;
    });
    found.push_back({site.sublattice, crystal, site.element,
                     static_cast<double>(n) / (spec.ax * spec.ay) * 100.0,
                     PeakIntensity(spec, site, ab_ratio)});
  }
  std::stable_sort(found.begin(), found.end(),
                   [](const SynthSublattice& a, const SynthSublattice& b) {
                     return a.relative_brightness > b.relative_brightness;
                   });
  out->insert(out->end(), found.begin(), found.end());
}

// The crystals of the scene: the crystal map, the first crystal's columns
// kept inside it, the second crystal's for kInterface, and their
// descriptions. `frame` holds the first crystal's columns over the whole
// frame and the amorphous mask.
void BuildCrystals(const LatticeSpec& spec, SynthFrame* frame) {
  const SynthOptions& opt = frame->options;
  if (opt.scene == SynthScene::kCrystal) {
    frame->crystal_map = cv::Mat::ones(opt.height, opt.width, CV_8U);
    frame->crystal_map.setTo(0, frame->amorphous_mask);
  } else {
    frame->crystal_map = SceneCrystalMap(opt);
    KeepInRegion(frame->crystal_map, 1, &frame->atoms);
  }
  std::vector<std::pair<SynthLattice, double>> crystals = {{opt.lattice, 0.0}};
  if (opt.scene == SynthScene::kInterface) {
    crystals.push_back({*opt.interface_lattice, opt.interface_rotation_deg});
    Rng rng(opt.seed, kInterfaceStream);
    std::vector<SynthAtom> second =
        PlaceRotatedLattice(SpecFor(*opt.interface_lattice), opt, opt.interface_rotation_deg,
                            frame->crystal_map, 2, rng);
    DropCrowded(frame->atoms, frame->prior.NearestNeighborPx(), &second);
    frame->atoms.insert(frame->atoms.end(), second.begin(), second.end());
  }
  frame->crystalline_mask = cv::min(frame->crystal_map, 1);
  const double pixels = static_cast<double>(opt.width) * opt.height;
  for (size_t i = 0; i < crystals.size(); ++i) {
    const LatticeSpec crystal_spec = i == 0 ? spec : SpecFor(crystals[i].first);
    SynthCrystal c;
    c.lattice = crystals[i].first;
    c.rotation_deg = crystals[i].second;
    c.area_fraction = cv::countNonZero(frame->crystal_map == static_cast<int>(i) + 1) / pixels;
    c.column_density_per_nm2 = ColumnDensityPerNm2(crystal_spec);
    c.nearest_neighbor_angstrom = MinSpacingAngstrom(crystal_spec);
    frame->crystals.push_back(c);
    DescribeSublattices(crystal_spec, static_cast<int>(i), opt.ab_brightness_ratio,
                        &frame->sublattices);
  }
}

// kSupport: the film's texture (returned, to add to the clean frame) and its
// light atoms (into frame->support_atoms), outside the particle.
cv::Mat BuildSupport(double sigma_px, SynthFrame* frame) {
  const SynthOptions& opt = frame->options;
  Rng rng(opt.seed, kSupportStream);
  cv::Mat texture = SupportTexture(opt.width, opt.height, sigma_px, rng);
  const double film_px =
      static_cast<double>(opt.width) * opt.height - cv::countNonZero(frame->crystal_map);
  const int64_t count =
      std::llround(kSupportAtomsPerColumn * frame->prior.ColumnDensityPerPx2() * film_px);
  frame->support_atoms = SupportAtoms(frame->crystal_map, count, sigma_px, rng);
  return texture;
}

// The clean frame: every atom's Gaussian (the columns', then the support
// atoms') on the background, plus the support film's texture if any.
cv::Mat RenderClean(const SynthFrame& frame, const cv::Mat& film, int width, int height) {
  cv::Mat image = cv::Mat::zeros(height, width, CV_32F);
  std::vector<float> ex;
  for (const SynthAtom& atom : frame.atoms) RenderAtom(atom, image, ex);
  for (const SynthAtom& atom : frame.support_atoms) RenderAtom(atom, image, ex);
  image += cv::Scalar(kBackground);
  if (!film.empty()) image += film;
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
  if (frame.options.scene == SynthScene::kInterface && !frame.options.interface_lattice) {
    frame.options.interface_lattice = frame.options.lattice;
  }
  const SynthOptions& opt = frame.options;
  const double px = opt.pixel_size_angstrom;
  const double nn_angstrom = MinSpacingAngstrom(spec);
  const double sigma_px = spec.sigma_angstrom / px;
  frame.prior.pixel_size_angstrom = px;
  frame.prior.column_density_per_nm2 = ColumnDensityPerNm2(spec);
  frame.prior.nearest_neighbor_angstrom = FrameNearestNeighborAngstrom(opt);
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
    AddDisorderedColumns(spec, frame.amorphous_mask, extra, sigma_px, opt.ab_brightness_ratio,
                         amorphous_rng, &frame.atoms);
  }
  BuildCrystals(spec, &frame);
  const cv::Mat film =
      opt.scene == SynthScene::kSupport ? BuildSupport(sigma_px, &frame) : cv::Mat();

  frame.image = RenderClean(frame, film, opt.width, opt.height);
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

bool KnownLattice(SynthLattice lattice) {
  return lattice == SynthLattice::kYbco || lattice == SynthLattice::kPerovskite ||
         lattice == SynthLattice::kHex;
}

// The frame's prior must pass PhysicsPrior::Validate(), which needs two
// pixels between neighbouring columns.
absl::Status CheckPixelSizeFor(double pixel_size_angstrom, SynthLattice lattice) {
  const double nn = MinSpacingAngstrom(SpecFor(lattice));
  if (pixel_size_angstrom > nn / 2.0) {
    return absl::InvalidArgumentError(
        absl::StrCat("pixel_size_angstrom must be at most ", nn / 2.0, " for lattice ",
                     SynthLatticeName(lattice), " (nearest neighbour ", nn,
                     " Å must span >= 2 px), got ", pixel_size_angstrom));
  }
  return absl::OkStatus();
}

// The scene and sublattice options; the rest is checked before.
absl::Status ValidateScene(const SynthOptions& o) {
  if (o.scene != SynthScene::kCrystal && o.scene != SynthScene::kNanoparticle &&
      o.scene != SynthScene::kEdge && o.scene != SynthScene::kSupport &&
      o.scene != SynthScene::kInterface) {
    return absl::InvalidArgumentError(
        absl::StrCat("scene must be crystal, nanoparticle, edge, support or interface, got ",
                     static_cast<int>(o.scene)));
  }
  if (o.scene != SynthScene::kCrystal && o.amorphous_fraction != 0.0) {
    return absl::InvalidArgumentError(
        absl::StrCat("amorphous_fraction must be 0 unless scene is crystal (scene ",
                     SynthSceneName(o.scene), "), got ", o.amorphous_fraction));
  }
  if (!(o.crystal_fraction >= kMinCrystalFraction && o.crystal_fraction <= kMaxCrystalFraction)) {
    return absl::InvalidArgumentError(absl::StrCat("crystal_fraction must be in [",
                                                   kMinCrystalFraction, ", ", kMaxCrystalFraction,
                                                   "], got ", o.crystal_fraction));
  }
  if (!(o.ab_brightness_ratio == 0.0 ||
        (o.ab_brightness_ratio >= kMinAbRatio && o.ab_brightness_ratio <= kMaxAbRatio))) {
    return absl::InvalidArgumentError(absl::StrCat("ab_brightness_ratio must be 0 (Z^1.7) or in [",
                                                   kMinAbRatio, ", ", kMaxAbRatio, "], got ",
                                                   o.ab_brightness_ratio));
  }
  if (o.ab_brightness_ratio != 0.0 && !HasAbSublattices(SpecFor(o.lattice))) {
    return absl::InvalidArgumentError(absl::StrCat(
        "ab_brightness_ratio needs a lattice with A and B sublattices (perovskite, hex); lattice ",
        SynthLatticeName(o.lattice), " has none"));
  }
  if (o.interface_lattice && !KnownLattice(*o.interface_lattice)) {
    return absl::InvalidArgumentError(
        absl::StrCat("interface_lattice must be ybco, perovskite or hex, got ",
                     static_cast<int>(*o.interface_lattice)));
  }
  if (!(std::fabs(o.interface_rotation_deg) <= 180.0)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "interface_rotation_deg must be in [-180, 180], got ", o.interface_rotation_deg));
  }
  if (o.scene == SynthScene::kInterface && o.interface_lattice) {
    const double px = o.pixel_size_angstrom > 0.0 ? o.pixel_size_angstrom
                                                  : SpecFor(o.lattice).default_pixel_size_angstrom;
    if (absl::Status s = CheckPixelSizeFor(px, *o.interface_lattice); !s.ok()) {
      return absl::InvalidArgumentError(absl::StrCat("interface_lattice: ", s.message()));
    }
  }
  return absl::OkStatus();
}

// meta.json: the reference workflow's fields, the prior's, the options and
// the scene's facts.
std::string MetaJson(const SynthFrame& frame) {
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
  absl::StrAppend(&meta, "  \"column_density_per_nm2\": ", Num(prior.ColumnDensityPerNm2()), ",\n");
  absl::StrAppend(&meta, "  \"nearest_neighbor_angstrom\": ", Num(prior.nearest_neighbor_angstrom),
                  ",\n");
  absl::StrAppend(&meta, "  \"noise\": ", Num(o.noise), ",\n");
  absl::StrAppend(&meta, "  \"amorphous_fraction\": ", Num(o.amorphous_fraction), ",\n");
  absl::StrAppend(&meta, "  \"drift_px\": ", Num(o.drift_px), ",\n");
  absl::StrAppend(&meta, "  \"dose\": ", Num(o.dose), ",\n");
  absl::StrAppend(&meta, "  \"seed\": ", o.seed, ",\n");
  absl::StrAppend(&meta, "  \"scene\": \"", SynthSceneName(o.scene), "\",\n");
  absl::StrAppend(&meta, "  \"crystal_fraction\": ", Num(o.crystal_fraction), ",\n");
  absl::StrAppend(&meta, "  \"crystalline_fraction\": ", Num(cv::mean(frame.crystalline_mask)[0]),
                  ",\n");
  absl::StrAppend(&meta, "  \"ab_brightness_ratio\": ", Num(o.ab_brightness_ratio), ",\n");
  absl::StrAppend(&meta, "  \"crystals\": [");
  for (size_t i = 0; i < frame.crystals.size(); ++i) {
    const SynthCrystal& c = frame.crystals[i];
    absl::StrAppend(&meta, i ? ",\n" : "\n", "    {\"lattice\": \"", SynthLatticeName(c.lattice),
                    "\", \"rotation_deg\": ", Num(c.rotation_deg),
                    ", \"area_fraction\": ", Num(c.area_fraction),
                    ", \"density_per_nm2\": ", Num(c.column_density_per_nm2),
                    ", \"nn_angstrom\": ", Num(c.nearest_neighbor_angstrom), "}");
  }
  absl::StrAppend(&meta, "],\n  \"sublattices\": [");
  for (size_t i = 0; i < frame.sublattices.size(); ++i) {
    const SynthSublattice& l = frame.sublattices[i];
    absl::StrAppend(&meta, i ? ",\n" : "\n", "    {\"name\": \"", l.name,
                    "\", \"crystal\": ", l.crystal, ", \"element\": \"", l.element,
                    "\", \"density_per_nm2\": ", Num(l.density_per_nm2),
                    ", \"relative_brightness\": ", Num(l.relative_brightness), "}");
  }
  absl::StrAppend(&meta, "],\n");
  absl::StrAppend(&meta, "  \"n_support_atoms\": ", frame.support_atoms.size(), ",\n");
  absl::StrAppend(&meta, "  \"n_atoms\": ", frame.atoms.size(), "\n");
  meta += "}\n";
  return meta;
}

// atoms.csv: new columns go at the end, so readers by position keep working.
std::string AtomsCsv(const std::vector<SynthAtom>& atoms) {
  std::string csv = "x,y,element,intensity,sigma_px,amorphous,sublattice,crystal\n";
  for (const SynthAtom& a : atoms) {
    absl::StrAppendFormat(&csv, "%.17g,%.17g,%s,%.17g,%.17g,%d,%s,%d\n", a.x, a.y, a.element,
                          a.intensity, a.sigma_px, a.amorphous ? 1 : 0, a.sublattice, a.crystal);
  }
  return csv;
}

}  // namespace

absl::StatusOr<SynthScene> ParseSynthScene(const std::string& name) {
  for (SynthScene scene : {SynthScene::kCrystal, SynthScene::kNanoparticle, SynthScene::kEdge,
                           SynthScene::kSupport, SynthScene::kInterface}) {
    if (name == SynthSceneName(scene)) return scene;
  }
  return absl::InvalidArgumentError(absl::StrCat(
      "scene must be one of crystal, nanoparticle, edge, support, interface; got '", name, "'"));
}

const char* SynthSceneName(SynthScene scene) {
  switch (scene) {
    case SynthScene::kCrystal:
      return "crystal";
    case SynthScene::kNanoparticle:
      return "nanoparticle";
    case SynthScene::kEdge:
      return "edge";
    case SynthScene::kSupport:
      return "support";
    case SynthScene::kInterface:
      return "interface";
  }
  return "unknown";
}

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
  if (!KnownLattice(lattice)) {
    return absl::InvalidArgumentError(
        absl::StrCat("lattice must be ybco, perovskite or hex, got ", static_cast<int>(lattice)));
  }
  if (!std::isfinite(pixel_size_angstrom) || pixel_size_angstrom > kMaxPixelSizeAngstrom) {
    return absl::InvalidArgumentError(
        absl::StrCat("pixel_size_angstrom must be finite and at most ", kMaxPixelSizeAngstrom,
                     " (<= 0 picks the lattice's default), got ", pixel_size_angstrom));
  }
  LOGSTAR_RETURN_IF_ERROR(CheckPixelSizeFor(pixel_size_angstrom, lattice));
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
  return ValidateScene(*this);
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
  if (frame.crystalline_mask.type() != CV_8U ||
      frame.crystalline_mask.size() != frame.image.size()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "WriteSynthFrame(", dir, "): crystalline_mask must be CV_8U and the image's size"));
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
    LOGSTAR_RETURN_IF_ERROR(
        WriteNpy((root / "crystalline_mask.npy").string(), frame.crystalline_mask));
    LOGSTAR_RETURN_IF_ERROR(WriteText(root / "meta.json", MetaJson(frame)));
    LOGSTAR_RETURN_IF_ERROR(WriteText(root / "atoms.csv", AtomsCsv(frame.atoms)));
    LOGSTAR_RETURN_IF_ERROR(WriteText(root / "support_atoms.csv", AtomsCsv(frame.support_atoms)));

  } catch (const std::exception& e) {
    return absl::InternalError(absl::StrCat("WriteSynthFrame(", dir, "): ", e.what()));
  }
  return absl::OkStatus();
}

PhysicsPrior SynthPriorWithSublattices(const SynthFrame& frame) {
  PhysicsPrior prior = frame.prior;
  for (const SynthSublattice& s : frame.sublattices) {
    if (s.crystal != 0) continue;
    prior.sublattices.push_back({.name = s.name,
                                 .column_density_per_nm2 = s.density_per_nm2,
                                 .relative_brightness = s.relative_brightness});
  }
  if (prior.sublattices.size() < 2) prior.sublattices.clear();
  return prior;
}

}  // namespace logstar
