"""Scoring for ``istd evaluate``: one :class:`Scorer` for both paths (a model's outputs and
saved predictions), per-image rows, and batches of equal-sized images.

Numbers come from :class:`~istd_kernels.metrics.ISTDMetrics` and
:class:`~istd_kernels.metrics.ROC` alone; a per-image row is the change in the metric's
counts that one image caused, so the rows and the totals cannot disagree.

Batch independence: :func:`size_grouped` batches only images of one size, so no image is
padded and a network sees every image exactly as it would alone (zero padding changes the
features near the border, and with them the prediction).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Sequence
from typing import TYPE_CHECKING

import numpy as np

from .runtime import Progress, timed_forwards
from .suite import jsonable

if TYPE_CHECKING:  # torch is imported where it is used: `istd --help` builds its parser from this module
    import torch
    from torch import Tensor

ROC_THRESHOLDS = [float(t) for t in np.round(np.concatenate([[0.001, 0.01], np.linspace(0.05, 0.95, 19),
                                                             [0.99, 0.999]]), 6)]
NIOU_EMPTY = ("zero", "one", "skip")
_COUNTS = ("intersection", "union", "detected", "targets", "false_pixels")   # a row's counts, in its order
ROW_FIELDS = ("id", "height", "width", "iou", "intersection", "union", "targets", "detected", "missed",
              "false_pixels", "pred_components", "false_components")


class Scorer:
    """IoU, nIoU, Pd, Fa (and optionally a ROC and per-image rows) over a data set.

    Args:
        threshold: a pixel is positive when its probability is > ``threshold``.
        logits: ``update`` receives logits (compared with ``log(t / (1 - t))``).
        legacy: the older DNANet false-pixel rule (``--legacy-fa``).
        niou_empty: the nIoU score of an image with nothing predicted and nothing to find:
            ``zero`` (the reference), ``one``, or ``skip`` (left out of the mean).
        roc: also sweep :data:`ROC_THRESHOLDS`.
        components: count each image's predicted components for its row.
        metrics, thresholds: the metrics beyond the basic four (``--metrics``, see
            :func:`.suite.parse_metrics`) and their sweep (``--thresholds K``).
    """

    def __init__(self, threshold: float = 0.5, logits: bool = False, legacy: bool = False,
                 niou_empty: str = "zero", roc: bool = False, components: bool = False,
                 metrics: tuple[str, ...] = ("basic",), thresholds: int = 1) -> None:
        from ..metrics import ROC, ISTDMetrics
        from ..metrics.bundle import ExtraMetrics
        from .suite import suite_thresholds
        self.sweep = suite_thresholds(thresholds, threshold)
        self.extra = ExtraMetrics(metrics, logits=logits, distributed=False, thresholds=self.sweep,
                                  pixel_threshold=threshold)
        self.cut = math.log(threshold / (1 - threshold)) if logits else threshold
        self.niou_empty = niou_empty
        # At the default threshold the metrics threshold the raw map themselves (in the C++
        # pass that also counts, on the CPU); another threshold needs a bool map first.
        self.raw = threshold == 0.5
        self.metrics = ISTDMetrics(logits=logits, legacy=legacy, empty_as="one" if niou_empty == "one" else "zero",
                                   distributed=False)
        self.roc = ROC(ROC_THRESHOLDS, logits=logits, legacy=legacy, distributed=False) if roc else None
        self.components = components
        self.rows: list[dict] = []
        # The suite's count tensors of each image (``extra`` is reset after each): the
        # per-image values, the totals and the bootstrap all come from this one table.
        self.extra_rows: list[dict[str, Tensor]] = []

    def update(self, pred: Tensor, target: Tensor, ident: str) -> None:
        """Score one image: ``pred`` float [H, W] (probabilities or logits), ``target`` [H, W] (> 0.5 is target)."""
        from ..ops import measure_components
        positive = None if self.raw and not self.components else (pred > self.cut)[None]
        counts = self.metrics.update(pred[None] if self.raw else positive, target[None])
        if self.roc is not None:
            self.roc.update(pred[None], target[None])
        if self.extra:
            self.extra.update(pred[None], target[None])
            self.extra_rows.append(self.extra.sync())
            self.extra.reset()
        comps = [int(measure_components(positive).counts[0])] if self.components else None
        self._add_rows(counts, [ident], pred.shape, comps)

    def update_batch(self, preds: Tensor, targets: Tensor, idents: Sequence[str]) -> None:
        """Score images of one size at once, with the rows of one :meth:`update` per image:
        ``preds`` [N, H, W] (probabilities, logits or bool maps), ``targets`` [N, H, W]. The
        basic metrics only: a Scorer with a ROC, suite metrics or component counts raises
        ValueError (those score image by image), as does ``idents`` not of length N."""
        if self.roc is not None or self.extra or self.components:
            raise ValueError("update_batch scores the basic metrics only; this Scorer has a ROC, suite metrics or "
                             "component counts: call update for each image")
        if preds.dim() != 3 or len(idents) != preds.shape[0]:
            raise ValueError(f"update_batch takes preds [N, H, W] and N idents; got preds {tuple(preds.shape)} and "
                             f"{len(idents)} idents")
        counts = self.metrics.update(preds if self.raw else preds > self.cut, targets)
        self._add_rows(counts, idents, preds.shape[1:], None)

    def _add_rows(self, counts: dict[str, Tensor], idents: Sequence[str], size, comps: list[int] | None) -> None:
        """One row per image from the per-image counts that ``metrics.update`` returned (so the
        rows and the totals cannot disagree)."""
        columns = [counts[k].tolist() for k in _COUNTS]
        for i, ident in enumerate(idents):
            d = {k: column[i] for k, column in zip(_COUNTS, columns)}
            c = None if comps is None else comps[i]
            self.rows.append({"id": ident, "height": int(size[0]), "width": int(size[1]),
                              "iou": d["intersection"] / d["union"] if d["union"] else None, **d,
                              "missed": d["targets"] - d["detected"], "pred_components": c,
                              "false_components": None if c is None else c - d["detected"]})

    def result(self) -> dict:
        """The totals: fractions, the paper-table units, and the raw counts."""
        m = self.metrics.compute()
        if self.niou_empty == "skip":
            scored = sum(1 for r in self.rows if r["iou"] is not None)
            m["niou"] = m["niou"] * m["images"] / scored if scored else 0.0
            m["niou_images"] = scored
        head = {k: m.pop(k) for k in ("iou", "niou", "pd", "fa")}
        extra = {}
        if self.extra:
            totals = {k: v.sum(0) for k, v in self.extra_table().items()}
            extra = {"thresholds": self.sweep, "metrics": jsonable(self.extra.compute(totals))}
        return {**head, "iou_percent": 100 * head["iou"], "niou_percent": 100 * head["niou"],
                "pd_percent": 100 * head["pd"], "fa_x1e-6": 1e6 * head["fa"], "images": m["images"], "counts": m,
                **extra}

    def extra_table(self) -> dict[str, Tensor]:
        """The suite's count tensors per image: ``{"member.count": [n, ...]}`` in the order
        of :attr:`rows` (n = 0 before any image)."""
        import torch
        zero = self.extra.sync()
        if not self.extra_rows:
            return {k: v[None][:0] for k, v in zero.items()}
        return {k: torch.stack([r[k] for r in self.extra_rows]).cpu() for k in zero}

    def extra_per_image(self) -> dict[str, Tensor]:
        """Every key of the suite per image (``[n, ...]``, in the order of :attr:`rows`); NaN
        where an image leaves a ratio undefined (no targets for its Pd, ...)."""
        return self.extra.values(self.extra_table(), empty=float("nan"))

    def extra_columns(self) -> tuple[list[str], list[list]]:
        """The suite's ``--per-image`` header and cells, one row per image of :attr:`rows`."""
        from .suite import per_image_columns
        pixel = self.extra.members.get("pixel")
        edges = list(reversed(pixel.edges)) if pixel is not None else []
        return per_image_columns(self.extra_per_image(), self.sweep, edges)

    def worst(self, k: int) -> list[dict]:
        """The ``k`` worst rows: lowest IoU first (an image with nothing to find and nothing
        found counts as perfect), then most missed targets, then most false pixels."""
        def badness(r):
            return (1.0 if r["iou"] is None else r["iou"], -r["missed"], -r["false_pixels"])
        return sorted(self.rows, key=badness)[:k]


def size_grouped(items: Iterable, batch_size: int) -> Iterator[tuple]:
    """Batches of ``(images, masks, ids, sizes)`` from ``(image [1,H,W], mask [1,H,W], id)``
    items, each batch of one image size (see the module note). A batch is emitted as soon as
    ``batch_size`` images of its size have come; the rest at the end."""
    from .data import pad_collate
    buckets: dict[tuple, list] = {}
    for item in items:
        size = tuple(item[0].shape[-2:])
        bucket = buckets.setdefault(size, [])
        bucket.append(item)
        if len(bucket) == batch_size:
            yield pad_collate(buckets.pop(size))
    for bucket in buckets.values():
        yield pad_collate(bucket)


def score_model(net, batches: Iterable, device: torch.device, amp: bool, scorer: Scorer,
                progress: Progress | None = None) -> float:
    """Run ``net`` over ``batches`` (from :func:`size_grouped`) into ``scorer``; returns the
    seconds spent in forward passes (synchronised on CUDA; data loading excluded)."""
    clock, done = [0.0], 0
    for logits, y, ids, sizes in timed_forwards(net, batches, device, amp, clock):
        for i, (h, w) in enumerate(sizes):
            scorer.update(logits[i, 0, :h, :w], y[i, 0, :h, :w], ids[i])
        done += len(ids)
        if progress is not None:
            progress.step(done, len(ids))
    return clock[0]
