// Per-column 2-D Gaussian refinement: positions to the precision limit, with
// an uncertainty, an integrated intensity and a shape for every column.
//
// Each detected column is fitted, by Levenberg–Marquardt least squares, with
//   m(x, y) = B + A · exp(-½ (p - c)ᵀ P (p - c)),   p = (x, y), c = (x0, y0),
// over the pixels of a disk around it (radius window_sigmas × the column's
// width: its earlier fit's where there is one, else the blob's sigma), P the
// 2×2 precision matrix (σx, σy and the rotation) and B a local constant
// background. Unweighted least squares is the maximum-likelihood fit
// for white Gaussian noise, whose Cramér–Rao bound on each coordinate is
// about σ_noise / A · √(2/π) px; the fit reaches it when the window holds
// nearly all of the column's gradient (2.5 σ holds 98.6 % of the Fisher
// information on the centre).
//
// Neighbours. A neighbour whose Gaussian reaches deep into the window (its
// centre closer than the window radius + 2 of its sigmas; at most 6, the
// closest) is fitted with the column: its amplitude always, its centre too
// when that lies inside the window (outside, only a flank shows, which
// would leave the centre poorly determined), its shape held. Farther
// neighbours' Gaussians (without their backgrounds) are subtracted from the
// window. The neighbours' models come from the detections in the first
// pass (isotropic with the blob's sigma, peak height over the window's low
// quantile) and from the previous pass's fits after. A later pass refits a
// column only when a neighbour's Gaussian reaches above 2 % of its peak
// into the window (elsewhere the detection's models are good to ~0.2 % of
// the peak) and the change of its neighbours' models would move its centre
// by more than 0.1 of its standard deviation (one Gauss–Newton step from
// its fit; a bias that small adds 0.5 % to the error's spread), or its fit
// failed.
// From the third pass on, neighbours see the mean of their last two fits,
// which damps the back-and-forth of strongly coupled columns. Each pass
// fits its columns independently and in parallel from the previous pass's
// results, so the output does not depend on the thread count.
//
// Levenberg–Marquardt stops when a step promises to lower the residual sum
// of squares by less than 1 % of the noise variance (rss / dof; the
// parameters then move by under 0.1 of their standard deviations) or by
// less than 1e-7 of itself (the arithmetic's precision, on noise-free data).
//
// A fit fails, and its column keeps its detected position, when the window
// holds too few pixels, the amplitude is not above 3 of its standard errors,
// the shape is not a peak or lies outside [min_sigma_ratio,
// max_sigma_ratio] × the blob's sigma, the centre moves more than
// max_shift_sigmas × the blob's sigma, or the iterations do not converge. The ColumnFit then
// carries the reason; its uncertainty is the detection's (fallback_error_px) and its shape the
// detection's estimate, so every field is finite whatever the input.
//
// Coordinates: x = column, y = row, pixels, origin at the centre of the
// top-left pixel. Intensities in the image's units.
//
// Thread-safety: RefineGaussian may be called concurrently on distinct
// outputs; it reads `image` only.
#ifndef LOGSTAR_ENGINE_LOG_GAUSSIAN_FIT_H_
#define LOGSTAR_ENGINE_LOG_GAUSSIAN_FIT_H_

#include <vector>

#include <opencv2/core.hpp>

#include "absl/status/status.h"
#include "absl/types/span.h"
#include "engine/base/context.h"
#include "engine/log/log_detector.h"

namespace logstar {

struct GaussianRefineOptions {
  // Radius of the fit window, as a multiple of the column's width (its
  // earlier fit's, else the blob's sigma). 2.5 keeps 98.6 % of an isolated
  // centre's Fisher information, but where neighbours stand 4σ apart (the
  // honeycomb) their amplitudes, fitted from the flanks the window shows,
  // trade off against the centre (x spread 1.22× the bound), and the width
  // and background trade off against the amplitude (the integrated
  // intensity 3× its bound). 3.0 brings both to 1.07–1.10× and 1.7–2×, with
  // a third more pixels; 3.5 (1.2–1.5×) takes twice the pixels.
  double window_sigmas = 3.0;  // [1, 6]
  // Fitting passes; from the second on, neighbours' models are the previous
  // pass's fits (see the file comment). One is best on generated lattices:
  // a neighbour's fit has absorbed part of the shared pixels' noise, so
  // refitting against it (the honeycomb's x spread 1.07–1.10× the bound
  // after one pass, 1.11–1.15× after two) adds that noise back. A second
  // pass pays where the noise is low (below ~0.05 of the peak): after one,
  // neighbours fitted by their amplitude alone keep the detection's centre
  // and width, which on a noise-free honeycomb moves the centres by 0.017 px
  // (0.002 after two passes).
  int passes = 1;  // [1, 5]
  // Levenberg–Marquardt iterations per column and pass.
  int max_iterations = 30;  // [1, 1000]
  // A fit whose centre moved further than this multiple of the blob's sigma
  // from the detection has slid off its column.
  double max_shift_sigmas = 1.0;  // > 0
  // Fitted widths (σx, σy) must lie within these multiples of the blob's
  // sigma.
  double min_sigma_ratio = 0.25;  // > 0
  double max_sigma_ratio = 4.0;   // > min_sigma_ratio
  // The position uncertainty reported for a failed fit: the detection's
  // half pixel.
  double fallback_error_px = 0.5;  // > 0

  absl::Status Validate() const;
};

enum class ColumnFitStatus {
  kOk = 0,
  kTooFewPixels,  // the window (clipped to the frame) holds fewer than 16 pixels
  kNoPeak,        // fitted amplitude <= 0 or the precision matrix not positive definite
  kBadShape,      // σx or σy outside the allowed range
  kWandered,      // the centre moved beyond max_shift_sigmas
  kNotConverged,  // max_iterations reached, or the normal equations singular
};

// "ok", "too_few_pixels", "no_peak", "bad_shape", "wandered", "not_converged".
const char* ColumnFitStatusName(ColumnFitStatus status);

struct ColumnFit {
  double x = 0.0;          // column, px: the fitted centre (the detection's if the fit failed)
  double y = 0.0;          // row, px
  double x_err = 0.0;      // px, one standard deviation (fit covariance × residual variance)
  double y_err = 0.0;      // px
  double amplitude = 0.0;  // A: peak height above the background, image units
  // The Gaussian's volume 2π·A·σx·σy (image units × px²): the column's
  // scattering cross-section as atom counting uses it.
  double intensity = 0.0;
  // Widths along the Gaussian's axes, px: σx along the direction at angle
  // `rotation` from +x towards +y, σy perpendicular to it.
  double sigma_x = 0.0;
  double sigma_y = 0.0;
  double rotation = 0.0;    // radians, in (-π/4, π/4]
  double background = 0.0;  // B, image units
  ColumnFitStatus status = ColumnFitStatus::kOk;
  int iterations = 0;  // LM iterations of the last pass
};

// Fits every blob's column on `image` (single-channel CV_32F with finite
// values, the frame the blobs were detected on; blobs' x, y in px and sigma
// > 0). Writes one ColumnFit per blob into *fits (resized; same order) and
// moves blobs[i].x / .y to the fitted centre where the fit succeeded. Runs
// in `context`'s arena; results do not depend on the thread count.
//
// `previous`: fits of the same columns on an earlier frame (a stream's last
// one; same coordinates), or empty. A blob with an accepted earlier fit
// within half its sigma starts from that fit (centre, shape, amplitude and
// background), its window is sized by that fit's width √(σx·σy) (within
// [0.5, 1.5] × the blob's sigma) instead of the blob's, and its neighbours
// see that model in the first pass: on a frame like the earlier one the
// fits then start close to their optimum, in windows no larger than the
// column needs. Results differ from a cold start's by what the different
// window and the stopping rule allow (a fraction of a standard deviation
// where the blob's sigma is the width), and depend on the earlier frame.
absl::Status RefineGaussian(const cv::Mat& image, absl::Span<Blob> blobs,
                            std::vector<ColumnFit>* fits, const GaussianRefineOptions& options,
                            ExecutionContext* context, absl::Span<const ColumnFit> previous = {});

}  // namespace logstar

#endif  // LOGSTAR_ENGINE_LOG_GAUSSIAN_FIT_H_
