// The engine's plain geometry types.
//
// Coordinates everywhere in the engine: x = column, y = row, in pixels, with
// the origin at the centre of the top-left pixel. Pixel (col, row) covers
// [col - 0.5, col + 0.5) × [row - 0.5, row + 0.5).
#ifndef LOGSTAR_ENGINE_BASE_GEOMETRY_H_
#define LOGSTAR_ENGINE_BASE_GEOMETRY_H_

namespace logstar {

// A point, px.
struct PointXY {
  double x = 0.0;  // column, pixels
  double y = 0.0;  // row, pixels
};

// The pixel rectangle [col0, col0 + cols) × [row0, row0 + rows): with the
// origin at the centre of the top-left pixel it covers x in
// [col0 - 0.5, col0 + cols - 0.5) and likewise y, area cols × rows px². A
// point belongs to it when its centre lies in that half-open box, so tiling
// a frame with regions counts every point exactly once.
struct PixelRegion {
  int col0 = 0;
  int row0 = 0;
  int cols = 0;
  int rows = 0;
};

}  // namespace logstar

#endif  // LOGSTAR_ENGINE_BASE_GEOMETRY_H_
