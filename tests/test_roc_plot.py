"""The ROC picture: log false-alarm axes, percent, a title naming model and data, no offset
text, tick labels that do not run together. Checked through matplotlib's objects on a
rendered PNG (Agg), on a sweep whose false-alarm rates span several decades and one whose
rates differ only in the sixth digit (what produced the ``1e-6+9.8215e-1`` offset)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from istd_kernels.metrics import ROC

matplotlib = pytest.importorskip("matplotlib")

THRESHOLDS = [0.001, 0.01, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99, 0.999]


def _sweep(noise_scale):
    """A ROC over synthetic maps: targets bright, background noise of the given scale."""
    rng = np.random.default_rng(0)
    target = np.zeros((4, 128, 128), bool)
    for i in range(4):
        for r, c in rng.integers(8, 120, (3, 2)):
            target[i, r - 2:r + 2, c - 2:c + 2] = True
    prob = np.clip(np.where(target, 0.9, 0.0) + rng.exponential(noise_scale, target.shape), 0, 1)
    roc = ROC(THRESHOLDS)
    roc.update(torch.tensor(prob, dtype=torch.float32), torch.from_numpy(target))
    return roc


def _overlapping(labels, renderer):
    boxes = [t.get_window_extent(renderer) for t in labels if t.get_visible() and t.get_text()]
    return [(a, b) for i, a in enumerate(boxes) for b in boxes[i + 1:] if a.overlaps(b)]


@pytest.mark.parametrize("noise_scale", [0.08, 0.6])  # Fa over decades; FPR all near 1 at low thresholds
def test_roc_plot_is_readable(tmp_path, noise_scale):
    roc = _sweep(noise_scale)
    path = tmp_path / "roc.png"
    fig = roc.plot(path, model="LCRNet", data="synthetic-4")
    assert path.stat().st_size > 0
    assert matplotlib.image.imread(path).shape[:2] == (480, 1100)  # an Agg PNG of the figure's size
    title = fig._suptitle.get_text()
    assert "LCRNet" in title and "synthetic-4" in title
    renderer = fig.canvas.get_renderer()
    pixel_ax, object_ax = fig.axes
    for ax in (pixel_ax, object_ax):
        assert ax.get_xscale() == "log"
        low, high = ax.get_xlim()
        assert high / low >= 10 - 1e-9  # at least one decade, so at least two labelled ticks
        for axis in (ax.xaxis, ax.yaxis):
            assert axis.get_major_formatter().get_offset() == ""
            assert axis.get_offset_text().get_text() == ""
        assert "%" in ax.get_ylabel()
        assert ax.get_ylim()[1] > 99  # percent, not fractions
        labels = [t for t in ax.get_xticklabels() if t.get_text()]
        assert len(labels) >= 2
        assert _overlapping(ax.get_xticklabels() + ax.get_xticklabels(minor=True), renderer) == []
        assert _overlapping(ax.get_yticklabels(), renderer) == []
    r = roc.compute()
    line = object_ax.get_lines()[0]
    shown = [100 * pd for pd, fa in zip(r["pd"], r["fa"]) if fa > 0]
    assert list(line.get_ydata()) == pytest.approx(shown)


def test_roc_plot_counts_points_with_no_false_alarm(tmp_path):
    roc = _sweep(0.08)
    r = roc.compute()
    zero = sum(fa == 0 for fa in r["fa"])
    assert zero > 0  # the high thresholds leave no false pixel in this sweep
    fig = roc.plot(tmp_path / "roc.png")
    legend = [t.get_text() for t in fig.axes[1].get_legend().get_texts()]
    assert f"thresholds ({zero} with no false alarm not shown)" in legend
    assert "threshold 0.5" in legend
    assert "model" not in fig._suptitle.get_text()


def test_roc_plot_rejects_a_folder(tmp_path):
    roc = _sweep(0.08)
    with pytest.raises(ValueError, match="path"):
        roc.plot(tmp_path)
