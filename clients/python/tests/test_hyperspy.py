"""The HyperSpy formats through logstar.read_frames/read_image, with
HyperSpy itself writing the files (Debian's python3-hyperspy, 1.7).

Only EMD is tested: it is the one format logstar reads through HyperSpy
that HyperSpy can also write (its Berkeley/NCEM EMD writer). DM3 and DM4
are read-only in HyperSpy (no writer in its io_plugins) and nothing else
here can make them, so they go through the same read_hyperspy code but are
not tested. Velox EMD (Thermo Fisher) is read-only too.

The truth is what each test sets: the pixels (compared exactly) and the
axis calibration, converted to Å by hand here, not by logstar's table.
Skipped, saying why, when HyperSpy is not installed.
"""
from __future__ import annotations

import numpy as np
import pytest

try:
    import hyperspy.api as hs
except ImportError as e:
    pytest.skip(f"HyperSpy is not installed ({e}): the DM3/DM4/EMD reader is untested here; "
                f"Debian: apt-get install python3-hyperspy", allow_module_level=True)

import logstar


def lattice(rows: int = 24, cols: int = 32, seed: int = 0) -> np.ndarray:
    """A small float32 lattice image with noise; not square, so that a swap
    of x and y (or a transpose on the way through the file) shows."""
    y, x = np.mgrid[0:rows, 0:cols].astype(np.float64)
    img = np.cos(2 * np.pi * x / 5.0) * np.cos(2 * np.pi * y / 4.0)
    img += np.random.default_rng(seed).normal(0.0, 0.1, img.shape)
    return img.astype(np.float32)


def image_signal(data: np.ndarray, x=None, y=None):
    """A Signal2D; x and y are (scale, units) for the columns and rows axes."""
    s = hs.signals.Signal2D(data)
    s.metadata.General.title = "image"
    ax_x, ax_y = s.axes_manager.signal_axes  # HyperSpy's natural order: x first
    for ax, cal in ((ax_x, x), (ax_y, y)):
        if cal is not None:
            ax.scale, ax.units = cal
    return s


def save_emd(signal, path) -> None:
    signal.save(str(path), overwrite=True)  # the .emd extension picks HyperSpy's EMD writer
    assert path.exists()


# (scale, units, Å per pixel): 0.125 Å/px in every unit the reader knows
# that a microscope writes.
CALIBRATIONS = [
    (0.0125, "nm", 0.125),
    (0.125, "Å", 0.125),
    (12.5, "pm", 0.125),
    (1.25e-5, "µm", 0.125),
    (0.03, "nm", 0.3),
]


@pytest.mark.parametrize("scale,units,angstrom", CALIBRATIONS,
                         ids=[f"{s}{u}" for s, u, _ in CALIBRATIONS])
def test_emd_image_pixels_and_pixel_size(tmp_path, scale, units, angstrom):
    data = lattice()
    path = tmp_path / "image.emd"
    save_emd(image_signal(data, x=(scale, units), y=(scale, units)), path)

    array, meta = logstar.read_image(path)
    assert array.dtype == np.float32 and array.shape == data.shape
    np.testing.assert_array_equal(array, data)
    assert set(meta) == {"pixel_size", "tag"}, meta
    assert meta["pixel_size"] == pytest.approx(angstrom, rel=1e-9)
    assert meta["tag"] == str(path)


def test_emd_different_x_and_y_pixel_sizes(tmp_path):
    data = lattice()
    path = tmp_path / "aniso.emd"
    # columns 0.0125 nm (0.125 Å), rows 0.015 nm (0.15 Å)
    save_emd(image_signal(data, x=(0.0125, "nm"), y=(0.015, "nm")), path)
    array, meta = logstar.read_image(path)
    np.testing.assert_array_equal(array, data)
    assert "pixel_size" not in meta
    assert meta["pixel_size_x"] == pytest.approx(0.125, rel=1e-9)
    assert meta["pixel_size_y"] == pytest.approx(0.15, rel=1e-9)


def test_emd_uint16_pixels_stay_uint16(tmp_path):
    data = (lattice() * 1000 + 2000).astype(np.uint16)  # a camera's counts
    path = tmp_path / "counts.emd"
    save_emd(image_signal(data, x=(0.0125, "nm"), y=(0.0125, "nm")), path)
    array, meta = logstar.read_image(path)
    assert array.dtype == np.uint16  # on the wire as it is, no conversion
    np.testing.assert_array_equal(array, data)
    assert meta["pixel_size"] == pytest.approx(0.125, rel=1e-9)


def test_emd_uncalibrated_has_no_pixel_size(tmp_path):
    """Documented in logstar.files: an axis without a length unit means the
    file is not calibrated, and the item has no pixel size at all (as for
    .npy), so the session's own pixel size applies; never a made-up 1 Å."""
    data = lattice()
    # HyperSpy's defaults: scale 1, units <undefined>.
    path = tmp_path / "raw.emd"
    s = image_signal(data)
    assert str(s.axes_manager.signal_axes[0].units) == "<undefined>"
    save_emd(s, path)
    array, meta = logstar.read_image(path)
    np.testing.assert_array_equal(array, data)
    assert meta == {"tag": str(path)}

    # Scale 1 with a non-length unit: pixels, and a diffraction pattern's 1/nm.
    for units in ("px", "1/nm"):
        path = tmp_path / f"units-{units.replace('/', '_')}.emd"
        save_emd(image_signal(data, x=(1.0, units), y=(1.0, units)), path)
        _, meta = logstar.read_image(path)
        assert meta == {"tag": str(path)}, (units, meta)

    # Calibrated along x only: no pixel size either (half a calibration is none).
    path = tmp_path / "half.emd"
    save_emd(image_signal(data, x=(0.0125, "nm")), path)
    _, meta = logstar.read_image(path)
    assert meta == {"tag": str(path)}


def test_emd_stack(tmp_path):
    """A stack: a Signal2D with one navigation axis, frames along the first
    array axis, each an item tagged FILE#i with the stack's pixel size."""
    frames = np.stack([lattice(seed=i) for i in range(3)])
    s = hs.signals.Signal2D(frames)
    s.metadata.General.title = "stack"
    s.axes_manager.navigation_axes[0].units = "s"  # time between frames: not the pixel size
    s.axes_manager.navigation_axes[0].scale = 0.5
    for ax in s.axes_manager.signal_axes:
        ax.scale, ax.units = 0.125, "Å"
    path = tmp_path / "stack.emd"
    save_emd(s, path)

    items = list(logstar.read_frames(path))
    assert len(items) == 3
    for i, (array, meta) in enumerate(items):
        np.testing.assert_array_equal(array, frames[i])
        assert meta["tag"] == f"{path}#{i}"
        assert meta["pixel_size"] == pytest.approx(0.125, rel=1e-9)
    with pytest.raises(logstar.InvalidFrame, match="3 frames"):
        logstar.read_image(path)


def test_emd_spectrum_is_refused_naming_the_problem(tmp_path):
    s = hs.signals.Signal1D(np.arange(64, dtype=np.float32))
    s.metadata.General.title = "spectrum"
    path = tmp_path / "spectrum.emd"
    save_emd(s, path)
    with pytest.raises(logstar.InvalidFrame, match="spectrum.emd.*not an image"):
        list(logstar.read_frames(path))
