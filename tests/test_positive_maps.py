"""The shortcuts ``istd compare`` reads its files through give what the full readers give:
``predictions.read_positive`` equals ``read_prediction(...) > threshold`` (8- and 16-bit
images through their table of levels, arrays through the float map), errors included, and
``masks.read_mask`` equals the mask of ``load_mask``."""

import cv2
import numpy as np
import pytest

from istd_kernels.cli import CLIError
from istd_kernels.cli.masks import load_mask, read_mask
from istd_kernels.cli.predictions import read_positive, read_prediction

# 0.5 and the levels next to it (127/255, 128/255), thresholds that fall between float32
# quotients, and the extremes
THRESHOLDS = (0.5, 127 / 255, 128 / 255, 0.37, 1 / 65535, 0.999, 1e-9, 1 - 1e-9)


def _write(folder, name, arr):
    folder.mkdir(exist_ok=True)
    path = folder / name
    if name.endswith(".npy"):
        np.save(path, arr)
    else:
        assert cv2.imwrite(str(path), arr)
    return path


def _cases(tmp_path):
    rng = np.random.default_rng(0)
    full8 = np.arange(256, dtype=np.uint8).reshape(16, 16)          # every 8-bit level
    return [
        (_write(tmp_path / "u8", "a.png", full8), ("auto", "255", "65535")),
        (_write(tmp_path / "u16", "a.png", rng.integers(0, 65536, (64, 64), dtype=np.uint16)), ("auto", "65535")),
        (_write(tmp_path / "binary", "a.png", (full8 % 2).astype(np.uint8)), ("auto", "1", "255")),
        (_write(tmp_path / "f32", "a.npy", rng.random((16, 16), dtype=np.float32)), ("auto", "1")),
        (_write(tmp_path / "u8npy", "a.npy", full8), ("auto", "255")),
    ]


def test_read_positive_is_read_prediction_thresholded(tmp_path):
    for path, scales in _cases(tmp_path):
        for scale in scales:
            for t in THRESHOLDS:
                want, kind = read_prediction(path, scale)
                got, got_kind = read_positive(path, scale, t)
                assert got.dtype == np.bool_ and got_kind == kind
                np.testing.assert_array_equal(got, want > t, err_msg=f"{path} scale {scale} threshold {t}")


@pytest.mark.parametrize("arr, scale", [(np.full((8, 8), 200, np.uint8), "1"),
                                        (np.full((8, 8), 300, np.uint16), "255")])
def test_read_positive_refuses_what_read_prediction_refuses(tmp_path, arr, scale):
    path = _write(tmp_path, "a.png", arr)
    with pytest.raises(CLIError) as full:
        read_prediction(path, scale)
    with pytest.raises(CLIError) as short:
        read_positive(path, scale, 0.5)
    assert str(short.value) == str(full.value)


@pytest.mark.parametrize("arr", [np.array([[0, 1], [128, 255]], np.uint8),
                                 np.array([[0, 7], [0, 65535]], np.uint16),
                                 np.array([[[0, 0, 0], [0, 0, 9]], [[5, 0, 0], [0, 0, 0]]], np.uint8),
                                 np.array([[[0, 0, 0, 255], [0, 3, 0, 0]]], np.uint8)])   # alpha is not target
def test_read_mask_is_the_mask_of_load_mask(tmp_path, arr):
    path = _write(tmp_path, "m.png", arr)
    np.testing.assert_array_equal(read_mask(path), load_mask(path)[0])
    assert read_mask(path).tolist() == (arr != 0 if arr.ndim == 2 else (arr[..., :3] != 0).any(2)).tolist()
