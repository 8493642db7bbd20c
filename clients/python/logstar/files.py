"""Reading the image files microscopists have, as stream items.

Formats
-------
* ``.npy``: numpy arrays, 2-D (one frame) or 3-D (a stack, frames along the
  first axis). No calibration.
* ``.tif``/``.tiff`` (tifffile): the first series, 2-D or a stack. Pixel
  size from the resolution tags: XResolution/YResolution pixels per
  ResolutionUnit (inch or cm), or per the ImageJ ``unit`` (nm, µm, Å, pm)
  when the unit tag is NONE. Values that cannot be an atomic-resolution
  calibration (over 1000 Å per pixel, e.g. the 72 dpi many writers put in
  by default) are ignored.
* ``.dm3``/``.dm4``/``.emd`` through HyperSpy, **only when it is installed**
  (Debian's python3-hyperspy); otherwise :class:`MissingDependency` says so.
  One image or a stack (frames along the first array axis). Pixel size
  from the scale and units (m, cm, mm, µm, nm, Å, pm) of the image's two
  axes. An axis without a length unit (``<undefined>``, ``px``, ``1/nm``)
  means the file is not calibrated: no pixel size, as for ``.npy``.
  Spectra and 4-D data are refused. Tested with EMD files HyperSpy writes
  (tests/test_hyperspy.py); DM3/DM4 take the same path but HyperSpy cannot
  write them, so they are not tested here.

Every reader yields ``(array, metadata)`` items ready for
:meth:`logstar.Session.stream`; metadata has ``pixel_size`` (Å) when the
file is calibrated (``pixel_size_x``/``_y`` when they differ; neither when
it is not, or only along one axis) and ``tag``
= ``"FILE[#index]"``. Pixel types the wire does not carry are converted
without loss: other integers to float64, float16 to float32. Colour images
are refused (one channel only).

Pure functions; thread-safe.
"""
from __future__ import annotations

import os
from typing import Any, Dict, Iterator, Optional, Tuple, Union

import numpy as np

from . import frames as _frames
from .errors import InvalidFrame, MissingDependency

PathLike = Union[str, os.PathLike]
Item = Tuple[np.ndarray, Dict[str, Any]]

# Å per unit of length.
_ANGSTROM_PER = {
    "m": 1e10, "cm": 1e8, "mm": 1e7, "um": 1e4, "µm": 1e4, "\u03bcm": 1e4, "micron": 1e4,
    "microns": 1e4, "nm": 10.0, "a": 1.0, "å": 1.0, "\u212b": 1.0, "angstrom": 1.0,
    "angstroms": 1.0, "pm": 0.01,
}
_MAX_ATOMIC_PIXEL_ANGSTROM = 1000.0


def _lossless(array: np.ndarray) -> np.ndarray:
    dt = array.dtype
    if (dt.kind, dt.itemsize) in _frames._BY_KIND:  # on the wire as it is
        return array
    if dt == np.float16:
        return array.astype(np.float32)
    if dt.kind in "iu" and dt.itemsize <= 4:
        return array.astype(np.float64)  # exact: |values| < 2^53
    if dt.kind in "iu":  # 64-bit integers: exact below 2^53 only
        if array.size and np.abs(array).max() >= 2 ** 53:
            raise InvalidFrame(f"{dt} pixels beyond 2^53 cannot be converted to float64 exactly")
        return array.astype(np.float64)
    if dt == bool:
        return array.astype(np.uint8)
    raise InvalidFrame(f"pixel dtype {dt} cannot be converted to a frame (one real channel)")


def _frames_of(array: np.ndarray, path: str, what: str) -> Iterator[np.ndarray]:
    if array.ndim == 2:
        yield array
    elif array.ndim == 3 and not (array.shape[-1] in (3, 4) and min(array.shape[:2]) >= 8):
        # (frames, rows, columns); rows × columns × 3 or 4 is a colour image
        yield from array
    else:
        raise InvalidFrame(f"{path}: {what} of shape {array.shape} is neither one 2-D "
                           f"single-channel image nor a stack of them")


def _pixel_meta(px: Optional[float], py: Optional[float]) -> Dict[str, Any]:
    ok = [v for v in (px, py) if v is not None and 0 < v <= _MAX_ATOMIC_PIXEL_ANGSTROM]
    if len(ok) != 2:
        return {}
    if abs(px - py) <= 1e-9 * max(px, py):
        return {"pixel_size": px}
    return {"pixel_size_x": px, "pixel_size_y": py}


def _items(arrays: Iterator[np.ndarray], path: str, meta: Dict[str, Any]) -> Iterator[Item]:
    frames = list(arrays)
    for i, a in enumerate(frames):
        tag = path if len(frames) == 1 else f"{path}#{i}"
        yield _lossless(np.asarray(a)), dict(meta, tag=tag)


def read_npy(path: PathLike) -> Iterator[Item]:
    p = os.fspath(path)
    array = np.load(p, allow_pickle=False)
    return _items(_frames_of(array, p, "array"), p, {})


def tiff_pixel_size(tif: Any) -> Dict[str, Any]:
    """Pixel size metadata from a tifffile.TiffFile's first page."""
    page = tif.pages[0]
    tags = page.tags

    def per_pixel(name: str) -> Optional[float]:
        tag = tags.get(name)
        if tag is None:
            return None
        v = tag.value
        num, den = (v if isinstance(v, tuple) else (v, 1))
        return den / num if num else None  # resolution is pixels per unit

    unit_tag = tags.get("ResolutionUnit")
    unit = int(unit_tag.value) if unit_tag is not None else 2  # TIFF default: inch
    if unit == 2:
        scale = 2.54e8
    elif unit == 3:
        scale = 1e8
    else:  # NONE: ImageJ writes its unit into the description
        ij = getattr(tif, "imagej_metadata", None) or {}
        scale = _ANGSTROM_PER.get(str(ij.get("unit", "")).strip().lower())
        if scale is None:
            return {}
    px, py = per_pixel("XResolution"), per_pixel("YResolution")
    return _pixel_meta(px * scale if px else None, py * scale if py else None)


def read_tiff(path: PathLike) -> Iterator[Item]:
    import tifffile
    p = os.fspath(path)
    with tifffile.TiffFile(p) as tif:
        series = tif.series[0]
        if "S" in series.axes:
            raise InvalidFrame(f"{p}: colour/multi-sample TIFF (axes {series.axes}); "
                               f"logstar analyses one channel")
        array = series.asarray()
        meta = tiff_pixel_size(tif)
    return _items(_frames_of(array, p, "TIFF image"), p, meta)


def _hyperspy_signal(signal: Any, p: str) -> Any:
    """The image signal among what ``hs.load`` returned (a list for some EMD files)."""
    if not isinstance(signal, list):
        return signal
    # EMD files may hold several signals: the first image (or stack of images)
    images = [s for s in signal if s.axes_manager.signal_dimension >= 2 and s.data.ndim in (2, 3)]
    if not images:
        shapes = ", ".join(str(s.data.shape) for s in signal)
        raise InvalidFrame(f"{p}: no image or image stack among the file's signals "
                           f"(shapes: {shapes})")
    return images[0]


def _signal_pixel_size(signal: Any, ndim: int) -> Dict[str, Any]:
    """Pixel size metadata from a HyperSpy signal's axes: the image is the
    last two array axes (rows, columns), whether a stack's frame axis is a
    navigation axis (HyperSpy's own files, Velox EMD) or a third signal axis
    (Berkeley EMD marks no axis as navigation)."""
    am = signal.axes_manager
    by_index = {ax.index_in_array: ax for ax in am.navigation_axes + am.signal_axes}
    sizes = []
    for ax in (by_index[ndim - 1], by_index[ndim - 2]):  # x (columns), y (rows)
        unit = str(ax.units or "").strip().lower()
        factor = _ANGSTROM_PER.get(unit)  # None: uncalibrated, or not a length (1/nm, px)
        scale = getattr(ax, "scale", None)  # non-uniform axes (HyperSpy ≥ 1.7) have none
        ok = factor is not None and scale is not None
        sizes.append(abs(float(scale)) * factor if ok else None)
    return _pixel_meta(*sizes)


def is_signal(value: Any) -> bool:
    """Whether ``value`` looks like a HyperSpy signal (without importing HyperSpy)."""
    return hasattr(value, "axes_manager") and hasattr(value, "data")


def signal_frame(signal: Any) -> Tuple[np.ndarray, Dict[str, Any]]:
    """One frame from a HyperSpy Signal2D (or a signal whose data is one 2-D
    image): its pixels (converted without loss as from a file) and its pixel
    size in Å from the axes' scale and units, when calibrated."""
    data = np.asarray(signal.data)
    if signal.axes_manager.signal_dimension < 2 or data.ndim != 2:
        raise InvalidFrame(
            f"a HyperSpy signal frame must be one 2-D image, got {type(signal).__name__} of "
            f"shape {data.shape} (a stack: stream the signal itself, each of its frames is "
            f"one item)")
    return _lossless(data), _signal_pixel_size(signal, 2)


def read_hyperspy(path: PathLike) -> Iterator[Item]:
    p = os.fspath(path)
    try:
        import hyperspy.api as hs
    except ImportError:
        raise MissingDependency(
            f"{p}: reading {os.path.splitext(p)[1]} files needs HyperSpy, which is not "
            f"installed (Debian: apt-get install python3-hyperspy)") from None
    signal = _hyperspy_signal(hs.load(p, lazy=False), p)
    am = signal.axes_manager
    data = np.asarray(signal.data)
    if am.signal_dimension < 2:
        raise InvalidFrame(f"{p}: a {am.signal_dimension}-D signal (spectrum or profile) of "
                           f"shape {data.shape}, not an image")
    if data.ndim not in (2, 3):
        raise InvalidFrame(f"{p}: signal of shape {data.shape} is neither one 2-D image nor "
                           f"a stack of them")
    return _items(_frames_of(data, p, "signal"), p, _signal_pixel_size(signal, data.ndim))


def read_frames(path: PathLike) -> Iterator[Item]:
    """The frames of an image file, as ``(array, metadata)`` items."""
    p = os.fspath(path)
    ext = os.path.splitext(p)[1].lower()
    if ext == ".npy":
        return read_npy(p)
    if ext in (".tif", ".tiff"):
        return read_tiff(p)
    if ext in (".dm3", ".dm4", ".emd"):
        return read_hyperspy(p)
    raise InvalidFrame(f"{p}: unknown image format {ext!r} (known: .npy, .tif, .tiff, "
                       f".dm3, .dm4, .emd)")


def read_image(path: PathLike) -> Item:
    """The single frame of an image file; a stack raises."""
    items = list(read_frames(path))
    if len(items) != 1:
        raise InvalidFrame(f"{os.fspath(path)}: holds {len(items)} frames; use read_frames")
    return items[0]
