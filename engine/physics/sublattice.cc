#include "engine/physics/sublattice.h"

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <limits>
#include <numbers>
#include <numeric>
#include <optional>
#include <string>
#include <vector>

#include <opencv2/imgproc.hpp>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "engine/base/status_macros.h"

namespace logstar {
namespace {

// A column whose filter disk lies less than this share inside the frame is
// not measured: its few pixels would make it an outlier of either group.
constexpr double kMinFilterCoverage = 0.4;
// The columns' width s: at least half a pixel (a narrower Gaussian is not
// sampled), at most 0.35 nn (the filter disk, 2 s, must not reach a
// neighbour's core); a quarter of nn when no sigma is usable.
constexpr double kMinColumnSigmaPx = 0.5;
constexpr double kMaxColumnSigmaNn = 0.35;
constexpr double kDefaultColumnSigmaNn = 0.25;
// Pseudo-count added to every cell of a pile's class-pair table, so that a
// pile of a few links cannot claim certainty (a vote is worth at most
// log((n + 0.5) / 0.5)).
constexpr double kPileSmoothing = 0.5;
// Verdict (see the header, 5.).
constexpr double kLinkSignificance = 4.0;   // standard errors between two piles
constexpr double kMinCorrelationGap = 0.2;  // and at least this much
constexpr double kFoldHeightGap = 0.1;      // of the brightest column's height
constexpr double kBrightnessFactor = 1.5;   // measured vs prior relative brightness
constexpr double kShareMismatch = 0.2;      // of all assigned columns
constexpr int kMaxPermutedSublattices = 6;  // 720 orders to try at most
constexpr int kEmIterations = 500;
constexpr int kOutlierRounds = 3;
// A column is supported by the lattice with this many links on piles, and
// this share of its links (see Supported).
constexpr int kMinPileLinks = 3;
constexpr double kMinPileShare = 0.4;
// A pile of link vectors must exceed chance by this many standard
// deviations (see PileLinks).
constexpr double kPileSigmas = 5.0;
// Two detections closer than this many nearest-neighbour spacings are one
// column found twice (see Supported).
constexpr double kCrowdedNn = 0.5;
constexpr int kColumnsPerBlock = 256;  // a ParallelFor piece
// The background (see Background): pixels this many nn from every atom;
// at least kMinClearPixels of them, else a low percentile of the frame.
constexpr double kClearNn = 0.5;
constexpr size_t kMinClearPixels = 64;
constexpr double kFallbackPercentile = 5.0;
// The median is taken over a grid of every k-th pixel in both directions,
// k the smallest that keeps the grid within kBackgroundSamples pixels: the
// median of 65536 samples is good to about 0.005 of the noise's standard
// deviation, and on a 1024² frame the whole frame's median cost more than
// the rest of the assignment (k = 1 up to 256², so small frames use every
// pixel).
constexpr int64_t kBackgroundSamples = 65536;

absl::Status CheckRange(const char* field, double value, double lo, double hi) {
  if (!std::isfinite(value) || value < lo || value > hi) {
    return absl::InvalidArgumentError(
        absl::StrCat("SublatticeOptions.", field, " must be in [", lo, ", ", hi, "], got ", value));
  }
  return absl::OkStatus();
}

// ---------------------------------------------------------------------------
// 1. Brightness per column.

struct ColumnMeasure {
  bool valid = false;
  double sum_g = 0.0;      // Σ g over the disk
  double sum_gg = 0.0;     // Σ g²
  double sum_gi = 0.0;     // Σ g·I
  double amplitude = 0.0;  // Σ g (I - c0) / Σ g²
};

ColumnMeasure MeasureColumn(const cv::Mat& frame, const PointXY& p, double sigma, double radius) {
  ColumnMeasure m;
  if (!std::isfinite(p.x) || !std::isfinite(p.y)) return m;
  const int x0 = std::max(0, static_cast<int>(std::ceil(p.x - radius)));
  const int x1 = std::min(frame.cols - 1, static_cast<int>(std::floor(p.x + radius)));
  const int y0 = std::max(0, static_cast<int>(std::ceil(p.y - radius)));
  const int y1 = std::min(frame.rows - 1, static_cast<int>(std::floor(p.y + radius)));
  const double inv = 1.0 / (2.0 * sigma * sigma);
  double n = 0.0;
  for (int y = y0; y <= y1; ++y) {
    const float* row = frame.ptr<float>(y);
    for (int x = x0; x <= x1; ++x) {
      const double r2 = (x - p.x) * (x - p.x) + (y - p.y) * (y - p.y);
      if (r2 > radius * radius) continue;
      const double g = std::exp(-r2 * inv);
      n += 1.0;
      m.sum_g += g;
      m.sum_gg += g * g;
      m.sum_gi += g * row[x];
    }
  }
  m.valid = n >= kMinFilterCoverage * std::numbers::pi * radius * radius && m.sum_gg > 0.0;
  return m;
}

// The frame's background c0: the median of the pixels (sampled, see
// kBackgroundSamples) at least kClearNn ×
// nn from every atom (between the columns, or vacuum), where no column
// adds its tail; with too few of them (a frame packed with columns), the
// frame's kFallbackPercentile-th percentile.
double Background(const cv::Mat& frame, absl::Span<const PointXY> positions, double nn) {
  const int64_t pixels = static_cast<int64_t>(frame.rows) * frame.cols;
  int step = 1;
  while (pixels / (static_cast<int64_t>(step) * step) > kBackgroundSamples) ++step;
  cv::Mat near(frame.size(), CV_8U, cv::Scalar(0));
  const int radius = std::max(1, static_cast<int>(std::lround(kClearNn * nn)));
  for (const PointXY& p : positions) {
    if (std::isfinite(p.x) && std::isfinite(p.y) && std::abs(p.x) < 1e9 && std::abs(p.y) < 1e9) {
      cv::circle(near,
                 cv::Point(static_cast<int>(std::lround(p.x)), static_cast<int>(std::lround(p.y))),
                 radius, cv::Scalar(1), cv::FILLED);
    }
  }
  std::vector<float> clear, all;
  clear.reserve(static_cast<size_t>(pixels / (static_cast<int64_t>(step) * step) + frame.cols));
  for (int y = 0; y < frame.rows; y += step) {
    const float* row = frame.ptr<float>(y);
    const uint8_t* mask = near.ptr<uint8_t>(y);
    for (int x = 0; x < frame.cols; x += step) {
      if (!mask[x]) clear.push_back(row[x]);
    }
  }
  if (clear.size() >= kMinClearPixels) {
    std::nth_element(clear.begin(), clear.begin() + clear.size() / 2, clear.end());
    return clear[clear.size() / 2];
  }
  all.assign(frame.begin<float>(), frame.end<float>());
  const size_t at = static_cast<size_t>(kFallbackPercentile / 100.0 * (all.size() - 1));
  std::nth_element(all.begin(), all.begin() + at, all.end());
  return all[at];
}

// Measures every column (in `context`'s arena when given) and sets the
// amplitudes above the background. With the background right, a column's
// amplitude is its peak height whatever part of its disk the frame cuts
// off, so columns at the edges join their groups.
std::vector<ColumnMeasure> MeasureColumns(const cv::Mat& frame, absl::Span<const PointXY> positions,
                                          double sigma, double radius, double nn,
                                          ExecutionContext* context) {
  const int n = static_cast<int>(positions.size());
  std::vector<ColumnMeasure> out(n);
  const int blocks = (n + kColumnsPerBlock - 1) / kColumnsPerBlock;
  auto block = [&](int b) {
    const int end = std::min(n, (b + 1) * kColumnsPerBlock);
    for (int i = b * kColumnsPerBlock; i < end; ++i) {
      out[i] = MeasureColumn(frame, positions[i], sigma, radius);
    }
  };
  if (context != nullptr) {
    context->ParallelFor(blocks, block);
  } else {
    for (int b = 0; b < blocks; ++b) block(b);
  }
  const double c0 = Background(frame, positions, nn);
  for (ColumnMeasure& m : out) {
    if (m.valid) m.amplitude = (m.sum_gi - c0 * m.sum_g) / m.sum_gg;
  }
  return out;
}

// ---------------------------------------------------------------------------
// 3. Groups of brightness: a 1-D Gaussian mixture with a shared variance.

struct Mixture {
  std::vector<double> mean;    // brightest first
  std::vector<double> weight;  // sums to 1
  double variance = 0.0;
  double log_likelihood = 0.0;  // of the values, with every constant
};

// Per value and component: -(x - mean)² / (2 variance), the log-likelihood
// up to a term common to all components (shared variance).
std::vector<double> ComponentLogLikelihoods(absl::Span<const double> values, const Mixture& m) {
  const size_t k = m.mean.size();
  std::vector<double> out(values.size() * k);
  for (size_t i = 0; i < values.size(); ++i) {
    for (size_t a = 0; a < k; ++a) {
      const double d = values[i] - m.mean[a];
      out[i * k + a] = -0.5 * d * d / m.variance;
    }
  }
  return out;
}

// Normalises row i of `log_p` (k per row) into probabilities in `p`;
// returns log Σ exp(row).
double Softmax(const double* log_p, size_t k, double* p) {
  const double top = *std::max_element(log_p, log_p + k);
  double sum = 0.0;
  for (size_t a = 0; a < k; ++a) sum += (p[a] = std::exp(log_p[a] - top));
  for (size_t a = 0; a < k; ++a) p[a] /= sum;
  return top + std::log(sum);
}

double Variance(absl::Span<const double> values) {
  const double mean = std::accumulate(values.begin(), values.end(), 0.0) / values.size();
  double sum = 0.0;
  for (const double v : values) sum += (v - mean) * (v - mean);
  return sum / values.size();
}

// EM from a split of the sorted values by `shares` (the prior's density
// shares, brightest first, summing to 1): whatever the noise, the start is
// then the answer for a frame that shows what the prior says.
Mixture FitMixture(absl::Span<const double> values, absl::Span<const double> shares) {
  const size_t n = values.size(), k = shares.size();
  std::vector<double> sorted(values.begin(), values.end());
  std::sort(sorted.begin(), sorted.end(), std::greater<>());
  Mixture m;
  size_t begin = 0;
  double within = 0.0;
  for (size_t a = 0; a < k; ++a) {
    const size_t left = n - begin - (k - 1 - a);  // leave one for each later group
    const size_t take =
        a + 1 == k ? n - begin
                   : std::clamp<size_t>(static_cast<size_t>(std::lround(shares[a] * n)), 1, left);
    const auto first = sorted.begin() + begin, last = first + take;
    const double mean = std::accumulate(first, last, 0.0) / take;
    for (auto it = first; it != last; ++it) within += (*it - mean) * (*it - mean);
    m.mean.push_back(mean);
    m.weight.push_back(static_cast<double>(take) / n);
    begin += take;
  }
  // A floor keeps a group from collapsing onto one value.
  const double floor = std::max(1e-6 * Variance(values), 1e-300);
  m.variance = std::max(within / n, floor);

  std::vector<double> resp(n * k);
  double previous = -std::numeric_limits<double>::infinity();
  for (int iteration = 0; iteration < kEmIterations; ++iteration) {
    const std::vector<double> ll = ComponentLogLikelihoods(values, m);
    double total = 0.0;
    std::vector<double> row(k);
    for (size_t i = 0; i < n; ++i) {
      for (size_t a = 0; a < k; ++a) row[a] = ll[i * k + a] + std::log(m.weight[a]);
      total += Softmax(row.data(), k, &resp[i * k]);
    }
    m.log_likelihood = total - 0.5 * n * std::log(2.0 * std::numbers::pi * m.variance);
    if (m.log_likelihood - previous <= 1e-10 * n) break;
    previous = m.log_likelihood;
    double squares = 0.0;
    for (size_t a = 0; a < k; ++a) {
      double nk = 0.0, sum = 0.0;
      for (size_t i = 0; i < n; ++i) {
        nk += resp[i * k + a];
        sum += resp[i * k + a] * values[i];
      }
      // MAP weight under a Dirichlet prior of n pseudo-columns shared as
      // the prior's densities: the data move a weight at most halfway from
      // the prior's share, so a handful of stray values (noise peaks the
      // lattice happens to support) cannot take a group of their own.
      m.weight[a] = (nk + n * shares[a]) / (2.0 * n);
      if (nk > 0.0) m.mean[a] = sum / nk;
      for (size_t i = 0; i < n; ++i) {
        const double d = values[i] - m.mean[a];
        squares += resp[i * k + a] * d * d;
      }
    }
    m.variance = std::max(squares / n, floor);
  }
  // Brightest first, whatever EM did to the start's order.
  std::vector<size_t> order(k);
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(),
                   [&](size_t a, size_t b) { return m.mean[a] > m.mean[b]; });
  Mixture sorted_m = m;
  for (size_t a = 0; a < k; ++a) {
    sorted_m.mean[a] = m.mean[order[a]];
    sorted_m.weight[a] = m.weight[order[a]];
  }
  return sorted_m;
}

// ---------------------------------------------------------------------------
// 2. Links between neighbours and their piles of vectors; 4. the votes.

struct Link {
  int tail = 0;  // indices into the measured columns
  int head = 0;
  PointXY v;  // head - tail
  int pile = -1;
};

// Every pair closer than `radius`, found through a grid of radius-sized
// cells (each pair once, tail < head).
std::vector<Link> FindLinks(absl::Span<const PointXY> points, double radius) {
  std::vector<Link> links;
  if (points.empty()) return links;
  double min_x = points[0].x, min_y = points[0].y;
  for (const PointXY& p : points) {
    min_x = std::min(min_x, p.x);
    min_y = std::min(min_y, p.y);
  }
  auto cell_of = [&](const PointXY& p) {
    return std::pair<int, int>(static_cast<int>((p.x - min_x) / radius),
                               static_cast<int>((p.y - min_y) / radius));
  };
  int cols = 1, rows = 1;
  for (const PointXY& p : points) {
    const auto [cx, cy] = cell_of(p);
    cols = std::max(cols, cx + 1);
    rows = std::max(rows, cy + 1);
  }
  std::vector<std::vector<int>> cells(static_cast<size_t>(cols) * rows);
  for (size_t i = 0; i < points.size(); ++i) {
    const auto [cx, cy] = cell_of(points[i]);
    cells[static_cast<size_t>(cy) * cols + cx].push_back(static_cast<int>(i));
  }
  for (size_t i = 0; i < points.size(); ++i) {
    const auto [cx, cy] = cell_of(points[i]);
    for (int y = std::max(0, cy - 1); y <= std::min(rows - 1, cy + 1); ++y) {
      for (int x = std::max(0, cx - 1); x <= std::min(cols - 1, cx + 1); ++x) {
        for (const int j : cells[static_cast<size_t>(y) * cols + x]) {
          const PointXY v{points[j].x - points[i].x, points[j].y - points[i].y};
          if (j > static_cast<int>(i) && v.x * v.x + v.y * v.y < radius * radius) {
            links.push_back({.tail = static_cast<int>(i), .head = j, .v = v});
          }
        }
      }
    }
  }
  return links;
}

// A 2-D histogram of link vectors over [-radius, radius]², bins of half the
// tolerance. A link has no direction of its own, so each enters as v and
// as -v: the histogram is point-symmetric, and a pile that straddles any
// line through the origin is not cut in two. Bins keep their vectors' sums
// for exact means.
class VectorHistogram {
 public:
  VectorHistogram(const std::vector<Link>& links, double radius, double tolerance)
      : radius_(radius),
        bin_(0.5 * tolerance),
        side_(static_cast<int>(std::ceil(2.0 * radius / bin_)) + 1),
        count_(static_cast<size_t>(side_) * side_),
        sx_(count_.size()),
        sy_(count_.size()) {
    for (const Link& l : links) {
      for (const double sign : {1.0, -1.0}) {
        const size_t b = Bin(sign * l.v.x, sign * l.v.y);
        count_[b] += 1.0;
        sx_[b] += sign * l.v.x;
        sy_[b] += sign * l.v.y;
      }
    }
  }

  int side() const { return side_; }
  int Index(double c) const {
    return std::clamp(static_cast<int>(std::floor((c + radius_) / bin_)), 0, side_ - 1);
  }
  size_t Bin(double x, double y) const { return static_cast<size_t>(Index(y)) * side_ + Index(x); }
  double Centre(int i) const { return -radius_ + (i + 0.5) * bin_; }
  double Count(int bx, int by) const { return count_[static_cast<size_t>(by) * side_ + bx]; }

  // The bins whose centre lies within `reach` of c: calls f(bin index, bin
  // centre).
  template <typename F>
  void ForBinsNear(const PointXY& c, double reach, F&& f) const {
    const int span = static_cast<int>(std::ceil(reach / bin_)) + 1;
    const int cx = Index(c.x), cy = Index(c.y);
    for (int y = std::max(0, cy - span); y <= std::min(side_ - 1, cy + span); ++y) {
      for (int x = std::max(0, cx - span); x <= std::min(side_ - 1, cx + span); ++x) {
        const PointXY centre{Centre(x), Centre(y)};
        if (std::hypot(centre.x - c.x, centre.y - c.y) <= reach) {
          f(static_cast<size_t>(y) * side_ + x, centre);
        }
      }
    }
  }

  // The number of vectors in the bins within `reach` of c; their mean goes
  // to *mean.
  double Gather(const PointXY& c, double reach, PointXY* mean) const {
    double n = 0.0, mx = 0.0, my = 0.0;
    ForBinsNear(c, reach, [&](size_t b, const PointXY&) {
      n += count_[b];
      mx += sx_[b];
      my += sy_[b];
    });
    if (n > 0.0) *mean = {mx / n, my / n};
    return n;
  }

 private:
  double radius_, bin_;
  int side_;
  std::vector<double> count_, sx_, sy_;
};

// The piles of link vectors, one of each ± pair (see the header, 2.): the
// histogram's local maxima (of single bins: sums over several would merge
// piles a few bins apart, as YBCO's Ba-Y, Cu-Cu and Cu-Cu vectors along c
// are) as seeds, strongest first, each
// moved to the mean of the vectors within `tolerance` (three mean-shift
// steps) and kept when it holds at least `min_links` and neither it nor its
// mirror is within `tolerance` of a pile kept before. Noise peaks link to
// columns at random vectors, and on a frame of few columns those would
// make piles of their own, so a second pass keeps only the piles clearly
// above chance: the links outside every pile, spread evenly over the disk
// of `radius` (as v and -v), would put m = outside × 2 tolerance² /
// radius² into a pile's disk, and a pile needs m + kPileSigmas·sqrt(m).
std::vector<PointXY> FindPiles(const VectorHistogram& h, size_t num_links, double tolerance,
                               double radius, int min_links) {
  struct Seed {
    double score;
    int bx, by;
  };
  std::vector<Seed> seeds;
  for (int by = 0; by < h.side(); ++by) {
    for (int bx = 0; bx < h.side(); ++bx) {
      const double s = h.Count(bx, by);
      if (s == 0.0) continue;
      bool peak = true;
      for (int dy = -1; dy <= 1 && peak; ++dy)
        for (int dx = -1; dx <= 1 && peak; ++dx)
          if ((dx || dy) && bx + dx >= 0 && bx + dx < h.side() && by + dy >= 0 &&
              by + dy < h.side())
            peak = h.Count(bx + dx, by + dy) <= s;
      if (peak) seeds.push_back({s, bx, by});
    }
  }
  std::stable_sort(seeds.begin(), seeds.end(),
                   [](const Seed& a, const Seed& b) { return a.score > b.score; });
  std::vector<PointXY> piles;
  std::vector<double> held;
  auto near_kept = [&](const PointXY& c) {
    return std::any_of(piles.begin(), piles.end(), [&](const PointXY& q) {
      return std::hypot(q.x - c.x, q.y - c.y) <= tolerance ||
             std::hypot(q.x + c.x, q.y + c.y) <= tolerance;
    });
  };
  for (const Seed& seed : seeds) {
    PointXY c{h.Centre(seed.bx), h.Centre(seed.by)};
    double n = 0.0;
    for (int step = 0; step < 3; ++step) n = h.Gather(c, tolerance, &c);
    // A pile at the origin would be its own mirror: two detections of one
    // column, not a vector between columns.
    if (n < min_links || std::hypot(c.x, c.y) <= tolerance || near_kept(c)) continue;
    piles.push_back(c);
    held.push_back(n);
  }
  const double outside = std::max(0.0, num_links - std::accumulate(held.begin(), held.end(), 0.0));
  const double chance = outside * 2.0 * tolerance * tolerance / (radius * radius);
  const double least = chance + kPileSigmas * std::sqrt(chance);
  std::vector<PointXY> significant;
  for (size_t p = 0; p < piles.size(); ++p) {
    if (held[p] >= least) significant.push_back(piles[p]);
  }
  return significant;
}

// Every link joins the nearest pile (or mirror of one) within `tolerance`;
// a link that matches a mirror is turned round, so that along each pile
// tail and head mean the same ends.
void JoinPiles(const VectorHistogram& h, const std::vector<PointXY>& piles, double tolerance,
               std::vector<Link>& links) {
  // Per bin, the piles (index, sign) a vector in it can join.
  std::vector<std::vector<std::pair<int, double>>> near(static_cast<size_t>(h.side()) * h.side());
  for (size_t p = 0; p < piles.size(); ++p) {
    for (const double sign : {1.0, -1.0}) {
      const PointXY c{sign * piles[p].x, sign * piles[p].y};
      h.ForBinsNear(c, tolerance + h.Centre(1) - h.Centre(0), [&](size_t b, const PointXY&) {
        near[b].push_back({static_cast<int>(p), sign});
      });
    }
  }
  for (Link& l : links) {
    double best = tolerance, turn = 1.0;
    for (const auto& [p, sign] : near[h.Bin(l.v.x, l.v.y)]) {
      const double d = std::hypot(l.v.x - sign * piles[p].x, l.v.y - sign * piles[p].y);
      if (d <= best) {
        best = d;
        l.pile = p;
        turn = sign;
      }
    }
    if (turn < 0.0) {
      std::swap(l.tail, l.head);
      l.v = {-l.v.x, -l.v.y};
    }
  }
}

// The links' piles; returns their number.
int PileLinks(std::vector<Link>& links, double radius, double tolerance, int min_links) {
  const VectorHistogram h(links, radius, tolerance);
  const std::vector<PointXY> piles = FindPiles(h, links.size(), tolerance, radius, min_links);
  JoinPiles(h, piles, tolerance, links);
  return static_cast<int>(piles.size());
}

// The votes (see the header, 4.): returns each column's log posterior (k per
// column, up to a constant per column). `own`: the columns' component
// log-likelihoods; `log_weight`: the mixture's log weights.
std::vector<double> VoteAlongLinks(const std::vector<Link>& links, int num_piles,
                                   const std::vector<double>& own,
                                   const std::vector<double>& log_weight, int iterations) {
  const size_t k = log_weight.size(), n = own.size() / k;
  std::vector<double> base(own.size());
  for (size_t i = 0; i < n; ++i)
    for (size_t a = 0; a < k; ++a) base[i * k + a] = own[i * k + a] + log_weight[a];
  // Each column's likelihoods scaled to a maximum of 1: what it tells a
  // neighbour (its own evidence only, so nothing echoes back).
  std::vector<double> scaled(own.size());
  for (size_t i = 0; i < n; ++i) {
    const double top = *std::max_element(&own[i * k], &own[i * k] + k);
    for (size_t a = 0; a < k; ++a) scaled[i * k + a] = std::exp(own[i * k + a] - top);
  }
  std::vector<double> post = base, resp(own.size());
  for (int iteration = 0; iteration < iterations && num_piles > 0; ++iteration) {
    for (size_t i = 0; i < n; ++i) Softmax(&post[i * k], k, &resp[i * k]);
    // Per pile, the class pairs along its links: joint[p][a][b], a at the
    // tail, b at the head.
    std::vector<double> joint(static_cast<size_t>(num_piles) * k * k, kPileSmoothing);
    for (const Link& l : links) {
      if (l.pile < 0) continue;
      double* j = &joint[static_cast<size_t>(l.pile) * k * k];
      for (size_t a = 0; a < k; ++a)
        for (size_t b = 0; b < k; ++b) j[a * k + b] += resp[l.tail * k + a] * resp[l.head * k + b];
    }
    // forward[p][a][b] = P(b at head | a at tail); backward[p][b][a] =
    // P(a at tail | b at head).
    std::vector<double> forward(joint.size()), backward(joint.size());
    for (int p = 0; p < num_piles; ++p) {
      const double* j = &joint[static_cast<size_t>(p) * k * k];
      double* f = &forward[static_cast<size_t>(p) * k * k];
      double* g = &backward[static_cast<size_t>(p) * k * k];
      for (size_t a = 0; a < k; ++a) {
        double row = 0.0, col = 0.0;
        for (size_t b = 0; b < k; ++b) {
          row += j[a * k + b];
          col += j[b * k + a];
        }
        for (size_t b = 0; b < k; ++b) {
          f[a * k + b] = j[a * k + b] / row;
          g[a * k + b] = j[b * k + a] / col;  // here a is the head's class, b the tail's
        }
      }
    }
    post = base;
    for (const Link& l : links) {
      if (l.pile < 0) continue;
      const double* f = &forward[static_cast<size_t>(l.pile) * k * k];
      const double* g = &backward[static_cast<size_t>(l.pile) * k * k];
      for (size_t a = 0; a < k; ++a) {
        double to_tail = 0.0, to_head = 0.0;
        for (size_t b = 0; b < k; ++b) {
          to_tail += f[a * k + b] * scaled[l.head * k + b];
          to_head += g[a * k + b] * scaled[l.tail * k + b];
        }
        post[l.tail * k + a] += std::log(to_tail);
        post[l.head * k + a] += std::log(to_head);
      }
    }
  }
  return post;
}

// The columns the lattice supports: at least kMinPileLinks of their links,
// and kMinPileShare of them, lie on piles, and no other detection is closer
// than `crowded_px`. A column of a crystal has 8-20 such links; a noise peak
// links to columns at random vectors, of which about one in ten falls on a
// pile by chance; and of a column found twice (split by noise) neither
// detection sits on the column, so both measure it low.
std::vector<bool> Supported(const std::vector<Link>& links, size_t n, double crowded_px) {
  std::vector<int> on(n), all(n);
  std::vector<bool> crowded(n);
  for (const Link& l : links) {
    ++all[l.tail];
    ++all[l.head];
    if (l.pile >= 0) ++on[l.tail], ++on[l.head];
    if (std::hypot(l.v.x, l.v.y) < crowded_px) crowded[l.tail] = crowded[l.head] = true;
  }
  std::vector<bool> out(n);
  for (size_t i = 0; i < n; ++i) {
    out[i] = !crowded[i] && on[i] >= kMinPileLinks && on[i] >= kMinPileShare * all[i];
  }
  return out;
}

// The spread of `values` about the mixture's nearest mean, robustly (1.4826
// × the median absolute deviation): the stray values the cut below is for
// inflate the fitted variance, not this.
double RobustSpread(absl::Span<const double> values, const Mixture& m) {
  std::vector<double> residual;
  for (const double v : values) {
    double best = std::numeric_limits<double>::infinity();
    for (const double mean : m.mean) best = std::min(best, std::abs(v - mean));
    residual.push_back(best);
  }
  std::nth_element(residual.begin(), residual.begin() + residual.size() / 2, residual.end());
  return std::max(1.4826 * residual[residual.size() / 2], std::sqrt(m.variance) * 1e-3);
}

// The brightness groups fitted to a set of columns.
struct Groups {
  Mixture mixture;
  std::vector<bool> inlier;    // per measured column: not below the last cut
  std::vector<double> fitted;  // the values the mixture was fitted to
};

// The mixture fitted to the columns `among` marks (null: all), then refitted
// without the columns more than `outlier_sigmas` robust spreads below the
// faintest group's mean, until that cut keeps its columns (at most
// kOutlierRounds times).
Groups FitGroups(absl::Span<const double> values, const std::vector<bool>* among,
                 absl::Span<const double> shares, double outlier_sigmas, size_t needed) {
  Groups g;
  g.inlier.assign(values.size(), true);
  auto select = [&] {
    std::vector<double> out;
    for (size_t j = 0; j < values.size(); ++j) {
      if (g.inlier[j] && (among == nullptr || (*among)[j])) out.push_back(values[j]);
    }
    return out;
  };
  g.fitted = select();
  g.mixture = FitMixture(g.fitted, shares);
  for (int round = 0; round < kOutlierRounds; ++round) {
    const double cut = g.mixture.mean.back() - outlier_sigmas * RobustSpread(g.fitted, g.mixture);
    for (size_t j = 0; j < values.size(); ++j) g.inlier[j] = values[j] >= cut;
    std::vector<double> kept = select();
    if (kept.size() == g.fitted.size() || kept.size() < needed) break;
    g.fitted = std::move(kept);
    g.mixture = FitMixture(g.fitted, shares);
  }
  return g;
}

// ---------------------------------------------------------------------------
// 5. Does the frame show the sublattices?

// The inliers' amplitudes' correlation along each pile's links (between
// inliers), and whether two piles differ by more than kLinkSignificance
// standard errors (and kMinCorrelationGap): a translation correlates, a
// vector between different sites anti-correlates, a gradient of thickness
// or background correlates every pile alike.
bool PilesTellApart(const std::vector<Link>& links, int num_piles, absl::Span<const double> values,
                    const std::vector<bool>& inlier, int min_links) {
  if (num_piles < 2) return false;
  std::vector<double> in;
  for (size_t j = 0; j < values.size(); ++j) {
    if (inlier[j]) in.push_back(values[j]);
  }
  if (in.empty()) return false;
  const double mean = std::accumulate(in.begin(), in.end(), 0.0) / in.size();
  const double sd = std::sqrt(Variance(in));
  if (!(sd > 0.0)) return false;
  std::vector<double> sum(num_piles), n(num_piles);
  for (const Link& l : links) {
    if (l.pile < 0 || !inlier[l.tail] || !inlier[l.head]) continue;
    sum[l.pile] += (values[l.tail] - mean) * (values[l.head] - mean) / (sd * sd);
    n[l.pile] += 1.0;
  }
  for (int p = 0; p < num_piles; ++p) {
    for (int q = 0; q < num_piles; ++q) {
      if (n[p] < min_links || n[q] < min_links) continue;
      const double gap = sum[p] / n[p] - sum[q] / n[q];
      if (gap > std::max(kMinCorrelationGap, kLinkSignificance * std::sqrt(1 / n[p] + 1 / n[q])))
        return true;
    }
  }
  return false;
}

// The mixture against one Gaussian, by BIC: k - 1 more means and weights.
bool MixtureTellsApart(absl::Span<const double> values, const Mixture& m) {
  const double n = values.size();
  const double variance = Variance(values);
  if (!(variance > 0.0)) return false;
  const double one = -0.5 * n * (std::log(2.0 * std::numbers::pi * variance) + 1.0);
  return m.log_likelihood - one > (m.mean.size() - 1.0) * std::log(n);
}

bool FoldShowsLevels(const LatticeMeasurement* lattice) {
  if (lattice == nullptr || !lattice->found || lattice->columns.size() < 2) return false;
  double lo = 1.0, hi = 0.0;
  for (const LatticeColumn& c : lattice->columns) {
    lo = std::min(lo, c.relative_height);
    hi = std::max(hi, c.relative_height);
  }
  return hi - lo > kFoldHeightGap;
}

bool GroupsTellApart(const Groups& g, const std::vector<Link>& links, int num_piles,
                     absl::Span<const double> values, int min_links) {
  return MixtureTellsApart(g.fitted, g.mixture) ||
         PilesTellApart(links, num_piles, values, g.inlier, min_links);
}

// The prior's density shares of its sublattices (summing to 1).
std::vector<double> DensityShares(const PhysicsPrior& prior) {
  std::vector<double> shares;
  for (const SublatticePrior& s : prior.sublattices) shares.push_back(s.column_density_per_nm2);
  const double total = std::accumulate(shares.begin(), shares.end(), 0.0);
  for (double& s : shares) s /= total;
  return shares;
}

// The groups fitted to the supported columns (noise peaks stay out) when
// there are enough of them and they show the groups, else to all columns
// when those do (a sublattice too faint to be found at its sites leaves
// the supported set with fewer groups); `shown` says whether the chosen
// fit tells the groups apart.
Groups ChooseGroups(absl::Span<const double> values, const std::vector<Link>& links, int num_piles,
                    const std::vector<bool>& supported, absl::Span<const double> shares,
                    const SublatticeOptions& options, size_t needed, bool& shown) {
  const int min_links = options.min_links_per_vector;
  std::optional<Groups> groups;
  shown = false;
  if (static_cast<size_t>(std::count(supported.begin(), supported.end(), true)) >= needed) {
    groups = FitGroups(values, &supported, shares, options.outlier_sigmas, needed);
    shown = GroupsTellApart(*groups, links, num_piles, values, min_links);
  }
  if (!shown) {
    Groups all = FitGroups(values, nullptr, shares, options.outlier_sigmas, needed);
    const bool all_shown = GroupsTellApart(all, links, num_piles, values, min_links);
    if (all_shown || !groups.has_value()) {
      groups = std::move(all);
      shown = all_shown;
    }
  }
  return *std::move(groups);
}

std::string SublatticeName(const PhysicsPrior& prior, size_t a) {
  return absl::StrCat("sublattices[", a, "] '", prior.sublattices[a].name, "'");
}

std::string Percent(double share) { return absl::StrFormat("%.0f %%", 100.0 * share); }

// The groups' shares of the assigned columns against the prior's density
// shares: another order that fits clearly better, else any share far off.
void CheckShares(const PhysicsPrior& prior, absl::Span<const int> found,
                 std::vector<std::string>& notes) {
  const size_t k = found.size();
  const double total = std::accumulate(found.begin(), found.end(), 0.0);
  if (total <= 0.0) return;
  for (size_t a = 0; a < k; ++a) {
    if (found[a] == 0) {
      notes.push_back(absl::StrCat(SublatticeName(prior, a), ": no columns of its brightness"));
    }
  }
  const std::vector<double> expected = DensityShares(prior);
  std::vector<double> share(k);
  for (size_t a = 0; a < k; ++a) share[a] = found[a] / total;
  // mismatch(order): Σ_a |share of the group order[a] - expected[a]|.
  auto mismatch = [&](const std::vector<size_t>& order) {
    double m = 0.0;
    for (size_t a = 0; a < k; ++a) m += std::abs(share[order[a]] - expected[a]);
    return m;
  };
  std::vector<size_t> order(k);
  std::iota(order.begin(), order.end(), 0);
  const double own = mismatch(order);
  std::vector<size_t> best = order;
  double best_mismatch = own;
  if (static_cast<int>(k) <= kMaxPermutedSublattices) {
    while (std::next_permutation(order.begin(), order.end())) {
      if (const double m = mismatch(order); m < best_mismatch) {
        best_mismatch = m;
        best = order;
      }
    }
  }
  std::vector<std::string> shares, names;
  for (size_t a = 0; a < k; ++a) shares.push_back(Percent(share[a]));
  if (own - best_mismatch > kShareMismatch) {
    // best[a] is the group that fits sublattice a: list the sublattices in
    // the order of the groups' brightness.
    std::vector<size_t> by_group(k);
    for (size_t a = 0; a < k; ++a) by_group[best[a]] = a;
    for (size_t g = 0; g < k; ++g) names.push_back(prior.sublattices[by_group[g]].name);
    notes.push_back(absl::StrCat("the brightness groups' shares of the columns (brightest first: ",
                                 absl::StrJoin(shares, ", "), ") fit the sublattices in the order ",
                                 absl::StrJoin(names, ", "),
                                 " better than in the prior's: its brightness order or densities "
                                 "may be wrong"));
    return;
  }
  for (size_t a = 0; a < k; ++a) {
    if (std::abs(share[a] - expected[a]) > kShareMismatch) {
      notes.push_back(absl::StrCat(SublatticeName(prior, a), " holds ", Percent(share[a]),
                                   " of the assigned columns, the prior's densities say ",
                                   Percent(expected[a])));
    }
  }
}

void CheckBrightness(const PhysicsPrior& prior, absl::Span<const SublatticeCount> counts,
                     std::vector<std::string>& notes) {
  for (size_t a = 1; a < counts.size(); ++a) {
    const double given = prior.sublattices[a].relative_brightness;
    const double measured = counts[a].relative_brightness;
    if (given <= 0.0 || counts[a].num_found == 0 || counts[0].num_found == 0) continue;
    if (!(measured > given / kBrightnessFactor && measured < given * kBrightnessFactor)) {
      notes.push_back(absl::StrFormat("%s: measured relative brightness %.2f, the prior says %.2f",
                                      SublatticeName(prior, a), measured, given));
    }
  }
}

absl::Status CheckInputs(const cv::Mat& frame, absl::Span<const PointXY> positions,
                         absl::Span<const double> sigmas, const PhysicsPrior& prior,
                         double crystalline_area_px2, const SublatticeOptions& options) {
  if (frame.empty() || frame.type() != CV_32FC1) {
    return absl::InvalidArgumentError(
        "AssignSublattices needs a non-empty single-channel float32 frame");
  }
  if (!cv::checkRange(frame)) {
    return absl::InvalidArgumentError("AssignSublattices: the frame has non-finite pixels");
  }
  if (sigmas.size() != positions.size()) {
    return absl::InvalidArgumentError(absl::StrCat("AssignSublattices: ", sigmas.size(),
                                                   " sigmas for ", positions.size(),
                                                   " atoms (one per atom)"));
  }
  LOGSTAR_RETURN_IF_ERROR(prior.Validate());
  if (prior.sublattices.size() < 2) {
    return absl::InvalidArgumentError(
        "AssignSublattices: the prior lists no sublattices (sublattices must hold at least 2)");
  }
  if (!std::isfinite(crystalline_area_px2) || crystalline_area_px2 < 0.0) {
    return absl::InvalidArgumentError(
        absl::StrCat("crystalline_area_px2 must be finite and >= 0, got ", crystalline_area_px2));
  }
  return options.Validate();
}

// The columns' common width (see the header, 1.).
double ColumnSigma(absl::Span<const double> sigmas, double nn_px) {
  std::vector<double> usable;
  for (const double s : sigmas) {
    if (std::isfinite(s) && s > 0.0) usable.push_back(s);
  }
  double sigma = kDefaultColumnSigmaNn * nn_px;
  if (!usable.empty()) {
    std::nth_element(usable.begin(), usable.begin() + usable.size() / 2, usable.end());
    sigma = usable[usable.size() / 2];
  }
  return std::clamp(sigma, kMinColumnSigmaPx,
                    std::max(kMinColumnSigmaPx, kMaxColumnSigmaNn * nn_px));
}

std::vector<SublatticeCount> MakeCounts(const PhysicsPrior& prior, double crystalline_area_px2) {
  const double pixel_nm = prior.pixel_size_angstrom / 10.0;
  std::vector<SublatticeCount> counts;
  for (const SublatticePrior& s : prior.sublattices) {
    SublatticeCount& c = counts.emplace_back();
    c.name = s.name;
    c.num_expected = s.column_density_per_nm2 * pixel_nm * pixel_nm * crystalline_area_px2;
  }
  return counts;
}

// Found, qc and measured brightness from the labels. The brightness is
// averaged over the group's columns that `supported` marks (per atom; may
// be empty) when it has any: a noise peak in a group would pull its mean
// height towards the noise's.
void FillCounts(absl::Span<const int> labels, const std::vector<ColumnMeasure>& measures,
                const std::vector<bool>& supported, std::vector<SublatticeCount>& counts) {
  const size_t k = counts.size();
  std::vector<double> sum(2 * k), n(2 * k);  // [a]: all of the group, [k + a]: supported
  for (size_t i = 0; i < labels.size(); ++i) {
    if (labels[i] < 0) continue;
    ++counts[labels[i]].num_found;
    for (const size_t slot : {size_t{0}, k}) {
      if (slot == k && (supported.empty() || !supported[i])) continue;
      sum[slot + labels[i]] += measures[i].amplitude;
      n[slot + labels[i]] += 1.0;
    }
  }
  std::vector<double> height(k);
  for (size_t a = 0; a < k; ++a) {
    SublatticeCount& c = counts[a];
    c.qc = c.num_expected > 0.0 ? std::abs(c.num_found - c.num_expected) / c.num_expected : 0.0;
    const size_t slot = n[k + a] > 0.0 ? k + a : a;
    if (n[slot] > 0.0) height[a] = sum[slot] / n[slot];
  }
  if (counts[0].num_found > 0 && height[0] > 0.0) {
    for (size_t a = 0; a < k; ++a) {
      if (counts[a].num_found > 0) counts[a].relative_brightness = height[a] / height[0];
    }
  }
}

}  // namespace

absl::Status SublatticeOptions::Validate() const {
  LOGSTAR_RETURN_IF_ERROR(CheckRange("filter_radius_sigmas", filter_radius_sigmas, 1.0, 4.0));
  LOGSTAR_RETURN_IF_ERROR(CheckRange("link_radius_nn", link_radius_nn, 1.0, 4.0));
  if (!(link_tolerance_nn > 0.0 && link_tolerance_nn < 0.5)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "SublatticeOptions.link_tolerance_nn must be in (0, 0.5), got ", link_tolerance_nn));
  }
  if (min_links_per_vector < 1) {
    return absl::InvalidArgumentError(absl::StrCat(
        "SublatticeOptions.min_links_per_vector must be >= 1, got ", min_links_per_vector));
  }
  if (message_iterations < 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "SublatticeOptions.message_iterations must be >= 0, got ", message_iterations));
  }
  if (!(std::isfinite(outlier_sigmas) && outlier_sigmas > 0.0)) {
    return absl::InvalidArgumentError(
        absl::StrCat("SublatticeOptions.outlier_sigmas must be positive, got ", outlier_sigmas));
  }
  if (min_atoms_per_sublattice < 1) {
    return absl::InvalidArgumentError(absl::StrCat(
        "SublatticeOptions.min_atoms_per_sublattice must be >= 1, got ", min_atoms_per_sublattice));
  }
  return absl::OkStatus();
}

absl::StatusOr<SublatticeAssignment> AssignSublattices(
    const cv::Mat& frame, absl::Span<const PointXY> positions_px,
    absl::Span<const double> sigmas_px, const PhysicsPrior& prior,
    const LatticeMeasurement* lattice, double crystalline_area_px2,
    const SublatticeOptions& options, ExecutionContext* context) {
  LOGSTAR_RETURN_IF_ERROR(
      CheckInputs(frame, positions_px, sigmas_px, prior, crystalline_area_px2, options));
  const size_t k = prior.sublattices.size();
  SublatticeAssignment out;
  out.labels.assign(positions_px.size(), -1);
  out.counts = MakeCounts(prior, crystalline_area_px2);

  // 1. Brightness per column.
  const double nn = lattice != nullptr && lattice->found && lattice->nearest_neighbor_px > 0.0
                        ? lattice->nearest_neighbor_px
                        : prior.NearestNeighborPx();
  const double sigma = ColumnSigma(sigmas_px, nn);
  const std::vector<ColumnMeasure> measures =
      MeasureColumns(frame, positions_px, sigma, options.filter_radius_sigmas * sigma, nn, context);
  std::vector<int> kept;  // indices of the measured columns
  for (size_t i = 0; i < measures.size(); ++i) {
    if (measures[i].valid) kept.push_back(static_cast<int>(i));
  }
  const size_t needed = static_cast<size_t>(options.min_atoms_per_sublattice) * k;
  if (kept.size() < needed) {
    out.note = absl::StrCat("only ", kept.size(), " columns could be measured; at least ", needed,
                            " are needed to tell ", k, " sublattices apart: none assigned");
    FillCounts(out.labels, measures, {}, out.counts);
    return out;
  }

  // 2. Links and their piles: geometry only, so that the columns the
  // lattice supports can be told from noise peaks before any brightness is
  // fitted.
  std::vector<PointXY> points;
  std::vector<double> values;
  for (const int i : kept) {
    points.push_back(positions_px[i]);
    values.push_back(measures[i].amplitude);
  }
  const double radius = options.link_radius_nn * nn;
  std::vector<Link> links = FindLinks(points, radius);
  const int num_piles =
      PileLinks(links, radius, options.link_tolerance_nn * nn, options.min_links_per_vector);

  // 3. Groups of brightness (see ChooseGroups); the columns too faint for
  // any group leave the links. 4. The votes.
  const std::vector<bool> supported = Supported(links, values.size(), kCrowdedNn * nn);
  bool shown = false;
  const Groups groups = ChooseGroups(values, links, num_piles, supported, DensityShares(prior),
                                     options, needed, shown);
  const std::vector<bool>& inlier = groups.inlier;
  for (Link& l : links) {
    if (!inlier[l.tail] || !inlier[l.head]) l.pile = -1;
  }
  const std::vector<double> own = ComponentLogLikelihoods(values, groups.mixture);
  std::vector<double> log_weight;
  for (const double w : groups.mixture.weight) log_weight.push_back(std::log(w));
  const std::vector<double> post =
      VoteAlongLinks(links, num_piles, own, log_weight, options.message_iterations);

  // 5. Does the frame show them (the fold of the lattice may say so too)?
  // Then the labels, the counts and the notes.
  if (!shown && !FoldShowsLevels(lattice)) {
    std::vector<std::string> names;
    for (const SublatticePrior& s : prior.sublattices) names.push_back(s.name);
    out.note = absl::StrCat("the frame shows one brightness of columns where the prior lists ", k,
                            " sublattices (", absl::StrJoin(names, ", "), "): none assigned");
    FillCounts(out.labels, measures, {}, out.counts);
    return out;
  }
  for (size_t j = 0; j < kept.size(); ++j) {
    if (!inlier[j]) continue;
    out.labels[kept[j]] =
        static_cast<int>(std::max_element(&post[j * k], &post[j * k] + k) - &post[j * k]);
  }
  std::vector<bool> supported_atom(positions_px.size());
  for (size_t j = 0; j < kept.size(); ++j) supported_atom[kept[j]] = supported[j];
  FillCounts(out.labels, measures, supported_atom, out.counts);
  std::vector<int> found;
  for (const SublatticeCount& c : out.counts) found.push_back(c.num_found);
  std::vector<std::string> notes;
  CheckShares(prior, found, notes);
  CheckBrightness(prior, out.counts, notes);
  out.note = absl::StrJoin(notes, "; ");
  return out;
}

}  // namespace logstar
