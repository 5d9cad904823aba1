"""``istd evaluate --pred`` on 400 saved 512x512 predictions against BasicIRSTD's per-image loop.

The data set is written by ``istd synth`` (400 test images of 512x512); the predictions are
8-bit probability PNGs made from its masks (targets shifted by up to 2 px, one in ten
missed, 0-2 false blobs per image, background noise below 0.5). Both cases read the same
files from disk and compute IoU, nIoU, Pd and Fa:

- baseline: the loop of BasicIRSTD's ``evaluate.py`` + ``metrics.py`` as published: per
  image, read the prediction and the mask, threshold, count intersection and union, label
  both with scikit-image, ``regionprops``, match centroids closer than 3 px greedily (our
  re-implementation, :mod:`istd_kernels.metrics.reference`);
- ``istd evaluate --pred DIR --data DATA`` in this process (split file, id matching, scale
  detection, the C++ metrics), with a JSON result that must equal the baseline's numbers.

It is CPU heavy (two passes over 400 images per round, three rounds): run it on its own,
``pytest benchmarks/test_evaluate_bench.py --benchmark-only``.
"""

import json

import cv2
import pytest
from bench_utils import measure, write_noisy_predictions

from istd_kernels.cli.main import main
from istd_kernels.cli.synth import write_dataset
from istd_kernels.metrics.reference import oracle_pdfa, oracle_pixels

N, SIZE = 400, 512
GROUP = f"evaluate: saved predictions cpu {N}x{SIZE}x{SIZE} read + IoU+nIoU+Pd+Fa"


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("evaluate_bench")
    data = write_dataset(str(root), "synth", N + 1, SIZE, seed=0, test_fraction=N / (N + 1))
    ids = (data / "img_idx" / "test_synth.txt").read_text().split()
    assert len(ids) == N
    pred_dir = root / "pred"
    write_noisy_predictions(pred_dir, data, ids, 0.1, 0, SIZE)
    return data, pred_dir, ids


def basicirstd_loop(data, pred_dir, ids) -> dict:
    """Per image: read both files, threshold, pixel counts and skimage Pd/Fa matching."""
    inter = union = detected = targets = false_pixels = pixels = 0
    niou = 0.0
    for i in ids:
        pred = cv2.imread(str(pred_dir / f"{i}.png"), cv2.IMREAD_GRAYSCALE)[None] / 255.0 > 0.5
        mask = cv2.imread(str(data / "masks" / f"{i}.png"), cv2.IMREAD_GRAYSCALE)[None] > 127
        a, b, n = oracle_pixels(pred, mask)
        c = oracle_pdfa(pred, mask)
        inter, union, niou = inter + a, union + b, niou + n
        detected, targets = detected + c["detected"], targets + c["targets"]
        false_pixels, pixels = false_pixels + c["false_pixels"], pixels + c["pixels"]
    return {"iou": inter / union, "niou": niou / len(ids), "pd": detected / targets, "fa": false_pixels / pixels}


def istd_evaluate(data, pred_dir, out) -> dict:
    assert main(["evaluate", "--pred", str(pred_dir), "--data", str(data), "--json", str(out)]) == 0
    return json.loads(out.read_text())


@pytest.mark.benchmark(min_rounds=3, max_time=1.0, warmup=False)
def test_evaluate_pred_basicirstd_loop(benchmark, files):
    benchmark.group = GROUP
    measure(benchmark, lambda: basicirstd_loop(*files), "cpu", GROUP, N)
    benchmark.extra_info["impl"] = "BasicIRSTD per-image loop (cv2 read + skimage)"


@pytest.mark.benchmark(min_rounds=3, max_time=1.0, warmup=False)
def test_evaluate_pred_istd(benchmark, files, tmp_path, capsys):
    data, pred_dir, ids = files
    ours, ref = istd_evaluate(data, pred_dir, tmp_path / "r.json"), basicirstd_loop(*files)
    assert ours["images"] == N
    for k in ref:
        assert ours[k] == pytest.approx(ref[k], abs=1e-12), k
    benchmark.group = GROUP
    measure(benchmark, lambda: istd_evaluate(data, pred_dir, tmp_path / "r.json"), "cpu", GROUP, N,
            baseline=lambda: basicirstd_loop(*files))
    benchmark.extra_info["impl"] = "istd evaluate --pred"
    capsys.readouterr()
