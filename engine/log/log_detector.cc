#include "engine/log/log_detector.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <utility>

#include "absl/strings/str_cat.h"
#include "engine/log/log_internal.h"
#include "engine/log/log_kernels.h"
#include "engine/log/padded_frame.h"
#include "engine/base/status_macros.h"

namespace logstar {
namespace internal {
namespace {

// Whether a CV_32F image has no NaN or infinity: those are exactly the
// floats whose exponent bits are all set. An integer max over the exponent
// bits vectorises, unlike cv::checkRange, which cost 2.5 % of a detection.
bool AllFinite(const cv::Mat& image) {
  constexpr uint32_t kExponent = 0x7f800000u;
  for (int y = 0; y < image.rows; ++y) {
    const uint32_t* row = image.ptr<uint32_t>(y);
    uint32_t worst = 0;
    for (int x = 0; x < image.cols; ++x) worst = std::max(worst, row[x] & kExponent);
    if (worst == kExponent) return false;
  }
  return true;
}

// scipy.ndimage 'reflect' (half-sample symmetric) index for any i, n >= 1.
int Reflect(int i, int n) {
  if (n == 1) return 0;
  const int period = 2 * n;
  int m = i % period;
  if (m < 0) m += period;
  return m < n ? m : period - 1 - m;
}

int RoundUp(int n, int m) { return (n + m - 1) / m * m; }

}  // namespace

ScaleKernel MakeKernel(double sigma) {
  ScaleKernel k;
  k.sigma = sigma;
  k.radius = static_cast<int>(4.0 * sigma + 0.5);
  const int r = k.radius;
  const double sigma2 = sigma * sigma;
  std::vector<double> phi(2 * r + 1);
  double sum = 0.0;
  for (int i = -r; i <= r; ++i) {
    phi[i + r] = std::exp(-0.5 / sigma2 * static_cast<double>(i) * static_cast<double>(i));
    sum += phi[i + r];
  }
  k.g.resize(r + 1);
  k.d.resize(r + 1);
  for (int i = 0; i <= r; ++i) {
    const double p = phi[i + r] / sum;
    const double x = i;
    k.g[i] = static_cast<float>(p);
    k.d[i] = static_cast<float>((x * x / (sigma2 * sigma2) - 1.0 / sigma2) * p);
  }
  return k;
}

std::vector<ScaleKernel> MakeKernels(const std::vector<double>& sigmas, int* max_radius) {
  std::vector<ScaleKernel> kernels;
  kernels.reserve(sigmas.size());
  *max_radius = 0;
  for (double sigma : sigmas) {
    kernels.push_back(MakeKernel(sigma));
    *max_radius = std::max(*max_radius, kernels.back().radius);
  }
  return kernels;
}

absl::Status CheckLogImage(const cv::Mat& image) {
  if (image.empty() || image.rows == 0 || image.cols == 0) {
    return absl::InvalidArgumentError("image is empty");
  }
  if (image.type() != CV_32FC1) {
    return absl::InvalidArgumentError(
        "image must be single-channel float32 (normalise it with NormalizeFrame first)");
  }
  if (!AllFinite(image)) {
    return absl::InvalidArgumentError("image has NaN or infinite pixels");
  }
  return absl::OkStatus();
}

cv::Mat InPaddedLayout(const cv::Mat& image) {
  if (HasPaddedLayout(image)) return image;
  cv::Mat frame = NewPaddedFrame(image.rows, image.cols);
  image.copyTo(frame);
  return frame;
}

PlaneMaker::PlaneMaker(const cv::Mat& image, int max_radius)
    : image_(image),
      fns_(Kernels()),
      width_(image.cols),
      height_(image.rows),
      max_radius_(max_radius) {
  padded_width_ = RoundUp(width_, fns_.lanes);
  // Image columns of the horizontal taps; the same for every band.
  xrows_.resize(width_ + 2 * max_radius_ + 3);
  for (size_t i = 0; i < xrows_.size(); ++i) {
    xrows_[i] = Reflect(static_cast<int>(i) - max_radius_, width_);
  }
}

Band PlaneMaker::MakeBand(int y0, int y1) const {
  const int ry0 = std::max(y0 - 1, 0);
  const int ry1 = std::min(y1 + 1, height_);
  return Band{y0, y1, ry0, ry1 - ry0, RoundUp(ry1 - ry0, fns_.lanes)};
}

size_t PlaneMaker::PlaneSize(const Band& band) const {
  return static_cast<size_t>(padded_width_) * band.cols;
}

void PlaneMaker::Prepare(const Band& band, BandScratch& s) const {
  const size_t plane_size = PlaneSize(band);
  s.gt.resize(plane_size);
  s.dt.resize(plane_size);
  // Border tables for the largest radius; a scale of radius r starts
  // max_radius - r entries in (see ComputePlane). Rows past the band, up
  // to the vector-aligned count, are computed too and never looked at;
  // any valid image row will do for them.
  s.rows.resize(band.cols + 2 * max_radius_ + 2);
  for (size_t i = 0; i < s.rows.size(); ++i) {
    s.rows[i] = Reflect(band.ry0 - max_radius_ + static_cast<int>(i), height_);
  }
}

void PlaneMaker::ComputePlane(const ScaleKernel& k, const Band& band, BandScratch& s,
                              float* dst) const {
  const int r = k.radius;
  const int skip = max_radius_ - r;  // table entry i + skip is offset i - r
  fns_.vertical(image_.ptr<float>(0), image_.step1(), s.rows.data() + skip, band.cols, r,
                k.g.data(), k.d.data(), width_, s.gt.data(), s.dt.data(), band.cols);
  fns_.horizontal(s.gt.data(), s.dt.data(), band.cols, xrows_.data() + skip, r, k.g.data(),
                  k.d.data(), static_cast<float>(-k.sigma * k.sigma), width_, band.cols, dst,
                  band.cols);
}

bool IsPeak3x3x3(float v, const float* below, const float* at, const float* above, const Band& band,
                 int width, int x, int j) {
  const int xa = std::max(x - 1, 0), xb = std::min(x + 1, width - 1);
  const int ja = std::max(j - 1, 0), jb = std::min(j + 1, band.nrows - 1);
  const float* planes[3] = {at, below, above};  // the current plane first: it rejects most
  for (const float* p : planes) {
    if (p == nullptr) continue;
    for (int xx = xa; xx <= xb; ++xx) {
      const float* line = p + static_cast<size_t>(xx) * band.cols;
      for (int jj = ja; jj <= jb; ++jj) {
        if (line[jj] > v) return false;
      }
    }
  }
  return true;
}

namespace {

// Computes the scale-space of one band of rows and finds its peaks, keeping
// only three planes at a time.
class BandWorker {
 public:
  BandWorker(const PlaneMaker& maker, const std::vector<ScaleKernel>& kernels,
             const LogScaleOptions& options)
      : maker_(maker), kernels_(kernels), options_(options) {}

  struct Scratch {
    BandScratch planes_scratch;
    std::vector<float> planes;  // 3 rolling response planes, transposed
    std::vector<int> candidates;
  };

  // Appends the peaks whose row lies in [y0, y1) to `out`.
  void Run(int y0, int y1, Scratch& s, std::vector<LogScaleSpace::Peak>& out) const {
    const Band band = maker_.MakeBand(y0, y1);
    const size_t plane_size = maker_.PlaneSize(band);
    const int lanes = maker_.fns().lanes;
    maker_.Prepare(band, s.planes_scratch);
    // Candidate scans read a vector past the last plane row.
    s.planes.resize(3 * plane_size + lanes);
    s.candidates.resize(static_cast<size_t>(maker_.width()) * band.cols);

    const int num_scales = static_cast<int>(kernels_.size());
    int num_candidates = -1;  // of the last plane scanned
    auto plane = [&](int scale) -> const float* {
      if (scale < 0 || scale >= num_scales) return nullptr;
      return s.planes.data() + static_cast<size_t>(scale % 3) * plane_size;
    };
    for (int scale = 0; scale < num_scales; ++scale) {
      float* dest = s.planes.data() + static_cast<size_t>(scale % 3) * plane_size;
      if (scale > 0 && kernels_[scale].sigma == kernels_[scale - 1].sigma) {
        // min_sigma == max_sigma repeats one sigma num_sigma times (a common
        // tuned choice): the plane is the same, computing it once suffices.
        const float* previous = plane(scale - 1);
        std::copy(previous, previous + plane_size, dest);
      } else {
        maker_.ComputePlane(kernels_[scale], band, s.planes_scratch, dest);
      }
      if (scale >= 1) {
        FindPeaks(scale - 1, plane(scale - 2), plane(scale - 1), plane(scale), band, s.candidates,
                  num_candidates, out);
      }
    }
    FindPeaks(num_scales - 1, plane(num_scales - 2), plane(num_scales - 1), nullptr, band,
              s.candidates, num_candidates, out);
  }

 private:
  // A voxel is a peak when it equals the maximum of its 3×3×3 neighbourhood.
  // Outside the cube counts as 0, which never beats a candidate: candidates
  // are above response_floor >= 0. Peaks come out in no particular order;
  // Compute() sorts them.
  void FindPeaks(int scale, const float* below, const float* at, const float* above,
                 const Band& band, std::vector<int>& candidates, int& num_candidates,
                 std::vector<LogScaleSpace::Peak>& out) const {
    const int width = maker_.width(), height = maker_.height();
    const int eb = options_.exclude_border;
    const int ylo = std::max(band.y0, eb), yhi = std::min(band.y1, height - eb);
    if (ylo >= yhi || eb >= width - eb) return;
    // A plane repeated from the scale before (see Run) has the same
    // candidates: the scan is skipped.
    const bool repeated =
        scale > 0 && kernels_[scale].sigma == kernels_[scale - 1].sigma && num_candidates >= 0;
    const int n = repeated ? num_candidates
                           : maker_.fns().plane_candidates(
                                 at, width, band.cols, band.nrows,
                                 static_cast<float>(options_.response_floor), candidates.data());
    num_candidates = n;
    for (int i = 0; i < n; ++i) {
      const int x = candidates[i] / band.cols;
      const int j = candidates[i] % band.cols;
      const int y = band.ry0 + j;
      if (y < ylo || y >= yhi || x < eb || x >= width - eb) continue;
      const float v = at[candidates[i]];
      if (IsPeak3x3x3(v, below, at, above, band, width, x, j)) out.push_back({v, y, x, scale});
    }
  }

  const PlaneMaker& maker_;
  const std::vector<ScaleKernel>& kernels_;
  const LogScaleOptions& options_;
};

}  // namespace

namespace {

// scikit-image's _compute_disk_overlap: the overlap area of two disks (radii
// r1, r2, centres d apart) over the area of the smaller one.
double DiskOverlap(double d, double r1, double r2) {
  double ratio1 = (d * d + r1 * r1 - r2 * r2) / (2 * d * r1);
  ratio1 = std::clamp(ratio1, -1.0, 1.0);
  const double acos1 = std::acos(ratio1);
  double ratio2 = (d * d + r2 * r2 - r1 * r1) / (2 * d * r2);
  ratio2 = std::clamp(ratio2, -1.0, 1.0);
  const double acos2 = std::acos(ratio2);
  const double a = -d + r2 + r1;
  const double b = d - r2 + r1;
  const double c = d + r2 - r1;
  const double e = d + r2 + r1;
  const double area = r1 * r1 * acos1 + r2 * r2 * acos2 - 0.5 * std::sqrt(std::abs(a * b * c * e));
  return area / (M_PI * std::min(r1, r2) * std::min(r1, r2));
}

// scikit-image's _blob_overlap for two live 2-D blobs: space is rescaled by
// the larger sigma·√2 so the larger disk has radius 1.
double BlobOverlap(const Blob& b1, const Blob& b2) {
  double max_sigma, r1, r2;
  if (b1.sigma > b2.sigma) {
    max_sigma = b1.sigma;
    r1 = 1.0;
    r2 = b2.sigma / b1.sigma;
  } else {
    max_sigma = b2.sigma;
    r2 = 1.0;
    r1 = b1.sigma / b2.sigma;
  }
  const double denom = max_sigma * std::sqrt(2.0);
  const double dy = b2.y / denom - b1.y / denom;
  const double dx = b2.x / denom - b1.x / denom;
  const double d = std::sqrt(dy * dy + dx * dx);
  if (d > r1 + r2) return 0.0;
  if (d <= std::abs(r1 - r2)) return 1.0;
  return DiskOverlap(d, r1, r2);
}

// CPython's hash of the tuple (i, j) of two small non-negative ints
// (xxHash-based tuplehash, CPython >= 3.8, 64-bit).
uint64_t PyTupleHash(uint64_t i, uint64_t j) {
  constexpr uint64_t kPrime1 = 11400714785074694791ULL;
  constexpr uint64_t kPrime2 = 14029467366897019727ULL;
  constexpr uint64_t kPrime5 = 2870177450012600261ULL;
  uint64_t acc = kPrime5;
  for (uint64_t lane : {i, j}) {
    acc += lane * kPrime2;
    acc = (acc << 31) | (acc >> 33);
    acc *= kPrime1;
  }
  acc += 2 ^ (kPrime5 ^ 3527539ULL);
  return acc == ~0ULL ? 1546275796ULL : acc;
}

// scikit-image prunes pairs in the iteration order of the Python set that
// scipy's cKDTree.query_pairs returns. The order matters when removals
// chain (A removes B, which would have removed C), which is common when
// pruning is heavy. This reproduces CPython's set: open addressing with 9
// linear probes then perturbed jumps, growth to 4× the used count when 3/5
// full, entries re-inserted in slot order; pairs are inserted in
// lexicographic order. Returns indices into `pairs` in iteration order.
std::vector<uint32_t> PythonSetOrder(const std::vector<std::pair<int, int>>& pairs) {
  constexpr size_t kLinearProbes = 9;
  constexpr int kPerturbShift = 5;
  struct Slot {
    uint64_t hash;
    uint32_t index;
  };
  constexpr uint32_t kEmpty = ~0u;
  auto insert_clean = [&](std::vector<Slot>& table, size_t mask, uint32_t index, uint64_t hash) {
    uint64_t perturb = hash;
    size_t i = hash & mask;
    while (true) {
      if (table[i].index == kEmpty) {
        table[i] = {hash, index};
        return;
      }
      if (i + kLinearProbes <= mask) {
        for (size_t j = 1; j <= kLinearProbes; ++j) {
          if (table[i + j].index == kEmpty) {
            table[i + j] = {hash, index};
            return;
          }
        }
      }
      perturb >>= kPerturbShift;
      i = (i * 5 + 1 + perturb) & mask;
    }
  };
  std::vector<Slot> table(8, Slot{0, kEmpty});
  size_t mask = 7;
  size_t fill = 0;
  for (uint32_t k = 0; k < pairs.size(); ++k) {
    insert_clean(table, mask, k, PyTupleHash(pairs[k].first, pairs[k].second));
    ++fill;
    if (fill * 5 >= mask * 3) {
      const size_t min_used = fill > 50000 ? fill * 2 : fill * 4;
      size_t size = 8;
      while (size <= min_used) size <<= 1;
      std::vector<Slot> grown(size, Slot{0, kEmpty});
      for (const Slot& slot : table) {
        if (slot.index != kEmpty) insert_clean(grown, size - 1, slot.index, slot.hash);
      }
      table.swap(grown);
      mask = size - 1;
    }
  }
  std::vector<uint32_t> order;
  order.reserve(pairs.size());
  for (const Slot& slot : table) {
    if (slot.index != kEmpty) order.push_back(slot.index);
  }
  return order;
}

// Calls visit(i, j) for every pair i < j of blobs closer than `cutoff`
// (inclusive, as cKDTree), by increasing i; a uniform grid of cutoff-sized
// cells keeps this O(n + pairs).
template <typename Visit>
void ForEachPairWithin(const std::vector<Blob>& blobs, double cutoff, Visit&& visit) {
  const size_t n = blobs.size();
  const double cutoff2 = cutoff * cutoff;
  double min_x = blobs[0].x, min_y = blobs[0].y, max_x = min_x, max_y = min_y;
  for (const Blob& b : blobs) {
    min_x = std::min(min_x, b.x), max_x = std::max(max_x, b.x);
    min_y = std::min(min_y, b.y), max_y = std::max(max_y, b.y);
  }
  const int gw = static_cast<int>((max_x - min_x) / cutoff) + 1;
  const int gh = static_cast<int>((max_y - min_y) / cutoff) + 1;
  auto cell_x = [&](const Blob& b) {
    return std::min(static_cast<int>((b.x - min_x) / cutoff), gw - 1);
  };
  auto cell_y = [&](const Blob& b) {
    return std::min(static_cast<int>((b.y - min_y) / cutoff), gh - 1);
  };
  // Counting sort of blob indices by cell; indices stay ascending per cell.
  std::vector<int> cell_start(static_cast<size_t>(gw) * gh + 1, 0);
  std::vector<int> cell_of(n);
  for (size_t i = 0; i < n; ++i) {
    cell_of[i] = cell_y(blobs[i]) * gw + cell_x(blobs[i]);
    ++cell_start[cell_of[i] + 1];
  }
  std::partial_sum(cell_start.begin(), cell_start.end(), cell_start.begin());
  std::vector<int> by_cell(n);
  {
    std::vector<int> fill(cell_start.begin(), cell_start.end() - 1);
    for (size_t i = 0; i < n; ++i) by_cell[fill[cell_of[i]]++] = static_cast<int>(i);
  }
  for (size_t i = 0; i < n; ++i) {
    const Blob& bi = blobs[i];
    const int cx = cell_x(bi), cy = cell_y(bi);
    for (int gy = std::max(cy - 1, 0); gy <= std::min(cy + 1, gh - 1); ++gy) {
      for (int gx = std::max(cx - 1, 0); gx <= std::min(cx + 1, gw - 1); ++gx) {
        const int cell = gy * gw + gx;
        for (int k = cell_start[cell]; k < cell_start[cell + 1]; ++k) {
          const int j = by_cell[k];
          if (j <= static_cast<int>(i)) continue;
          const double dx = blobs[j].x - bi.x, dy = blobs[j].y - bi.y;
          if (dx * dx + dy * dy <= cutoff2) visit(static_cast<int>(i), j);
        }
      }
    }
  }
}

// All pairs (i, j), i < j, closer than `cutoff`, in lexicographic order.
std::vector<std::pair<int, int>> PairsWithin(const std::vector<Blob>& blobs, double cutoff) {
  std::vector<std::pair<int, int>> pairs;
  size_t first_of_i = 0;
  ForEachPairWithin(blobs, cutoff, [&](int i, int j) {
    if (pairs.empty() || pairs.back().first != i) {
      std::sort(pairs.begin() + first_of_i, pairs.end());
      first_of_i = pairs.size();
    }
    pairs.emplace_back(i, j);
  });
  std::sort(pairs.begin() + first_of_i, pairs.end());
  return pairs;
}

}  // namespace

// A removed blob removes nothing (in scikit-image its sigma is set to 0).
std::vector<Blob> PruneBlobs(std::vector<Blob> blobs, double overlap) {
  const size_t n = blobs.size();
  if (n < 2 || overlap >= 1.0) return blobs;
  double max_sigma = 0.0;
  for (const Blob& b : blobs) max_sigma = std::max(max_sigma, b.sigma);
  // Two disks can only overlap when their centres are closer than the sum of
  // their radii, at most 2·max_sigma·√2; scikit-image uses that cutoff too,
  // and the number of pairs it yields shapes the set's iteration order.
  const std::vector<std::pair<int, int>> pairs =
      PairsWithin(blobs, 2.0 * max_sigma * std::sqrt(2.0));
  // Only pairs that overlap by more than `overlap` remove anything, so the
  // others can be dropped whatever their place in the order. When no blob is
  // in two of them the removals are independent and the order is moot; the
  // set-order emulation (most of the cost when thresholds are low and pairs
  // many) runs only when removals can chain.
  std::vector<char> removes(pairs.size(), 0);
  std::vector<uint8_t> degree(n, 0);
  bool chained = false;
  for (size_t k = 0; k < pairs.size(); ++k) {
    const auto [i, j] = pairs[k];
    if (BlobOverlap(blobs[i], blobs[j]) > overlap) {
      removes[k] = 1;
      chained |= ++degree[i] > 1;
      chained |= ++degree[j] > 1;
    }
  }
  std::vector<char> alive(n, 1);
  auto resolve = [&](uint32_t k) {
    if (!removes[k]) return;
    const auto [i, j] = pairs[k];
    if (!alive[i] || !alive[j]) return;
    if (blobs[i].sigma > blobs[j].sigma) {
      alive[j] = 0;
    } else {
      alive[i] = 0;
    }
  };
  if (chained) {
    for (uint32_t k : PythonSetOrder(pairs)) resolve(k);
  } else {
    for (uint32_t k = 0; k < pairs.size(); ++k) resolve(k);
  }
  std::vector<Blob> kept;
  kept.reserve(n);
  for (size_t i = 0; i < n; ++i) {
    if (alive[i]) kept.push_back(blobs[i]);
  }
  return kept;
}

size_t PrunedCountLowerBound(const std::vector<Blob>& blobs, double overlap, double x_min,
                             double x_end, double y_min, double y_end) {
  const size_t n = blobs.size();
  auto inside = [&](const Blob& b) {
    return b.x >= x_min && b.x < x_end && b.y >= y_min && b.y < y_end;
  };
  if (n < 2 || overlap >= 1.0) {
    return static_cast<size_t>(std::count_if(blobs.begin(), blobs.end(), inside));
  }
  // Union-find over the pairs that remove; group g stays countable while all
  // of its blobs are inside the box.
  std::vector<int> parent(n);
  std::iota(parent.begin(), parent.end(), 0);
  auto find = [&](int i) {
    while (parent[i] != i) i = parent[i] = parent[parent[i]];
    return i;
  };
  double max_sigma = 0.0;
  for (const Blob& b : blobs) max_sigma = std::max(max_sigma, b.sigma);
  const double cutoff = 2.0 * max_sigma * std::sqrt(2.0);
  ForEachPairWithin(blobs, cutoff, [&](int i, int j) {
    if (BlobOverlap(blobs[i], blobs[j]) > overlap) parent[find(i)] = find(j);
  });
  std::vector<char> countable(n, 1);
  for (size_t i = 0; i < n; ++i) {
    if (!inside(blobs[i])) countable[find(static_cast<int>(i))] = 0;
  }
  size_t groups = 0;
  for (size_t i = 0; i < n; ++i)
    groups += find(static_cast<int>(i)) == static_cast<int>(i) && countable[i];
  return groups;
}

}  // namespace internal

namespace {
bool IsFinitePositive(double v) { return std::isfinite(v) && v > 0.0; }
}  // namespace

absl::Status LogScaleOptions::Validate() const {
  if (!IsFinitePositive(min_sigma)) {
    return absl::InvalidArgumentError(
        absl::StrCat("min_sigma must be positive and finite, got ", min_sigma));
  }
  if (!std::isfinite(max_sigma) || max_sigma < min_sigma) {
    return absl::InvalidArgumentError(absl::StrCat("max_sigma must be finite and >= min_sigma (",
                                                   min_sigma, "), got ", max_sigma));
  }
  // Kernels grow as 8·sigma + 1 taps; beyond this the frame, not the blob,
  // sets the scale and the work explodes.
  constexpr double kMaxSigma = 256.0;
  if (max_sigma > kMaxSigma) {
    return absl::InvalidArgumentError(
        absl::StrCat("max_sigma must be <= ", kMaxSigma, " px, got ", max_sigma));
  }
  if (num_sigma < 1 || num_sigma > 256) {
    return absl::InvalidArgumentError(
        absl::StrCat("num_sigma must be in [1, 256], got ", num_sigma));
  }
  if (exclude_border < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("exclude_border must be >= 0, got ", exclude_border));
  }
  if (!std::isfinite(response_floor) || response_floor < 0.0) {
    return absl::InvalidArgumentError(
        absl::StrCat("response_floor must be finite and >= 0, got ", response_floor));
  }
  return absl::OkStatus();
}

std::vector<double> LogScaleOptions::Sigmas() const {
  // numpy.linspace: start + i·step, the last one exactly stop; logspace is
  // 10 to the power of a linspace of the logarithms.
  const double start = log_scale ? std::log10(min_sigma) : min_sigma;
  const double stop = log_scale ? std::log10(max_sigma) : max_sigma;
  std::vector<double> out(num_sigma);
  const int div = num_sigma - 1;
  const double step = div > 0 ? (stop - start) / div : 0.0;
  for (int i = 0; i < num_sigma; ++i) out[i] = static_cast<double>(i) * step + start;
  if (num_sigma > 1) out.back() = stop;
  if (log_scale) {
    for (double& s : out) s = std::pow(10.0, s);
  }
  return out;
}

absl::Status LogDetectOptions::Validate() const {
  if (!std::isfinite(threshold) || threshold < 0.0) {
    return absl::InvalidArgumentError(
        absl::StrCat("threshold must be finite and >= 0, got ", threshold));
  }
  if (!(overlap >= 0.0 && overlap <= 1.0)) {
    return absl::InvalidArgumentError(absl::StrCat("overlap must be in [0, 1], got ", overlap));
  }
  return absl::OkStatus();
}

absl::Status LogOptions::Validate() const {
  if (absl::Status s = scale.Validate(); !s.ok()) return s;
  return detect.Validate();
}

absl::StatusOr<LogScaleSpace> LogScaleSpace::Compute(const cv::Mat& image,
                                                     const LogScaleOptions& options,
                                                     ExecutionContext* context) {
  if (absl::Status s = options.Validate(); !s.ok()) return s;
  if (context == nullptr) return absl::InvalidArgumentError("context must not be null");
  LOGSTAR_RETURN_IF_ERROR(internal::CheckLogImage(image));

  LogScaleSpace space;
  space.options_ = options;
  space.sigmas_ = options.Sigmas();
  space.width_ = image.cols;
  space.height_ = image.rows;

  int max_radius = 0;
  const std::vector<internal::ScaleKernel> kernels =
      internal::MakeKernels(space.sigmas_, &max_radius);

  // NormalizeFrame's output is used in place; other layouts are copied once.
  const cv::Mat frame = internal::InPaddedLayout(image);

  using internal::kBandRows;
  const int num_bands = (image.rows + kBandRows - 1) / kBandRows;
  std::vector<std::vector<Peak>> band_peaks(num_bands);
  try {
    const internal::PlaneMaker maker(frame, max_radius);
    const internal::BandWorker worker(maker, kernels, options);
    context->ParallelFor(num_bands, [&](int b) {
      // Kept per thread across calls: a fresh allocation per call costs
      // page faults comparable to a tenth of the work.
      thread_local internal::BandWorker::Scratch scratch;
      worker.Run(b * kBandRows, std::min((b + 1) * kBandRows, image.rows), scratch, band_peaks[b]);
    });
  } catch (const std::exception& e) {
    return absl::ResourceExhaustedError(absl::StrCat("LoG scale-space failed: ", e.what()));
  }

  size_t total = 0;
  for (const auto& v : band_peaks) total += v.size();
  space.peaks_.reserve(total);
  for (auto& v : band_peaks) {
    space.peaks_.insert(space.peaks_.end(), v.begin(), v.end());
    std::vector<Peak>().swap(v);
  }
  std::sort(space.peaks_.begin(), space.peaks_.end(), internal::PeakBefore);
  return space;
}

absl::StatusOr<std::vector<Blob>> LogScaleSpace::Detect(const LogDetectOptions& options) const {
  if (absl::Status s = options.Validate(); !s.ok()) return s;
  if (options.threshold < options_.response_floor) {
    return absl::FailedPreconditionError(absl::StrCat(
        "threshold ", options.threshold, " is below this scale-space's response_floor ",
        options_.response_floor, "; recompute it with a lower floor"));
  }
  const float threshold = static_cast<float>(options.threshold);
  const auto end = std::partition_point(peaks_.begin(), peaks_.end(),
                                        [&](const Peak& p) { return p.response > threshold; });
  std::vector<Blob> blobs;
  blobs.reserve(end - peaks_.begin());
  for (auto it = peaks_.begin(); it != end; ++it) {
    blobs.push_back(Blob{static_cast<double>(it->x), static_cast<double>(it->y), sigmas_[it->scale],
                         it->response, it->scale});
  }
  return internal::PruneBlobs(std::move(blobs), options.overlap);
}

absl::StatusOr<std::vector<Blob>> DetectBlobsLog(const cv::Mat& image, const LogOptions& options,
                                                 ExecutionContext* context) {
  if (absl::Status s = options.Validate(); !s.ok()) return s;
  LogScaleOptions scale = options.scale;
  scale.response_floor = options.detect.threshold;
  absl::StatusOr<LogScaleSpace> space = LogScaleSpace::Compute(image, scale, context);
  if (!space.ok()) return space.status();
  return space->Detect(options.detect);
}

}  // namespace logstar
