"""Reading the files microscopists have: .npy, TIFF with calibration
(written here with tifffile's tags set by hand), and the HyperSpy formats
when HyperSpy is absent."""
from __future__ import annotations

import importlib.util

import numpy as np
import pytest
import tifffile

import logstar


def test_npy_image_and_stack(tmp_path):
    img = np.arange(12, dtype=np.uint16).reshape(3, 4)
    np.save(tmp_path / "one.npy", img)
    array, meta = logstar.read_image(tmp_path / "one.npy")
    np.testing.assert_array_equal(array, img)
    assert meta == {"tag": str(tmp_path / "one.npy")}

    np.save(tmp_path / "stack.npy", np.stack([img, img + 1, img + 2]).astype(np.int32))
    items = list(logstar.read_frames(tmp_path / "stack.npy"))
    assert len(items) == 3
    # int32 is not on the wire: converted without loss to float64.
    assert items[2][0].dtype == np.float64
    np.testing.assert_array_equal(items[2][0], img + 2)
    assert items[1][1]["tag"].endswith("stack.npy#1")
    with pytest.raises(logstar.InvalidFrame, match="3 frames"):
        logstar.read_image(tmp_path / "stack.npy")


def test_tiff_pixel_size_from_resolution_tags(tmp_path):
    img = np.zeros((8, 6), np.float32)
    # 0.2 Å per pixel = 2e-9 cm per pixel: 5e8 pixels per centimetre.
    tifffile.imwrite(tmp_path / "cm.tif", img, resolution=(5e8, 5e8), resolutionunit=3)
    array, meta = logstar.read_image(tmp_path / "cm.tif")
    assert array.shape == (8, 6) and array.dtype == np.float32
    assert meta["pixel_size"] == pytest.approx(0.2)

    # ImageJ: unit in the description, 0.05 nm (0.5 Å) per pixel along x, 0.04 nm along y.
    tifffile.imwrite(tmp_path / "ij.tif", img, imagej=True, resolution=(20.0, 25.0),
                     metadata={"unit": "nm"})
    _, meta = logstar.read_image(tmp_path / "ij.tif")
    assert meta["pixel_size_x"] == pytest.approx(0.5) and meta["pixel_size_y"] == pytest.approx(0.4)

    # The 72 dpi placeholder of many writers is no atomic-resolution calibration.
    tifffile.imwrite(tmp_path / "dpi.tif", img, resolution=(72, 72), resolutionunit=2)
    _, meta = logstar.read_image(tmp_path / "dpi.tif")
    assert "pixel_size" not in meta and "pixel_size_x" not in meta


def test_tiff_colour_is_refused(tmp_path):
    tifffile.imwrite(tmp_path / "rgb.tif", np.zeros((8, 6, 3), np.uint8), photometric="rgb")
    with pytest.raises(logstar.InvalidFrame, match="one channel"):
        logstar.read_image(tmp_path / "rgb.tif")


@pytest.mark.skipif(importlib.util.find_spec("hyperspy") is not None,
                    reason="HyperSpy is installed")
def test_dm4_without_hyperspy_says_what_to_install(tmp_path):
    path = tmp_path / "image.dm4"
    path.write_bytes(b"\x00" * 16)
    with pytest.raises(logstar.MissingDependency, match="python3-hyperspy"):
        list(logstar.read_frames(path))


def test_unknown_format(tmp_path):
    with pytest.raises(logstar.InvalidFrame, match=r"\.png"):
        logstar.read_frames(tmp_path / "x.png")
