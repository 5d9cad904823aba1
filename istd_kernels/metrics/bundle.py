"""The metric set the ISTD papers report (IoU, nIoU, Pd, Fa), updated together, and on
request every other metric of the package over the same predictions."""

from __future__ import annotations

from torch import Tensor

from . import rules
from ._base import ValueCheck, binarize_pred, binarize_target, check_pair, check_values
from ._fused import measure_pair
from .hiou import HIoU
from .pdfa import PdFa
from .pixel import IoU, NIoU, intersection_union
from .pixel_curves import PixelMetrics
from .sweep import cut_maps, levels

BASIC = ("iou", "niou", "pdfa")
# The metrics beyond the basic four, by the name ``metrics=`` takes; ``pdfa_shooting`` and
# ``pdfa_opdc`` report under the prefixes ``shooting_`` and ``opdc_``.
EXTRA = ("pdfa_shooting", "pdfa_opdc", "hiou", "pixel")
METRIC_NAMES = BASIC + EXTRA


def check_metric_names(metrics: object) -> tuple[str, ...]:
    """``metrics`` (names of :data:`METRIC_NAMES`, "basic" or "all") as the extra names chosen."""
    names = (metrics,) if isinstance(metrics, str) else metrics
    if not isinstance(names, (tuple, list)) or not names or not all(isinstance(n, str) for n in names):
        raise ValueError(f'metrics must be "basic", "all" or a sequence of names from {METRIC_NAMES}; got {metrics!r}')
    chosen: list[str] = []
    for n in names:
        if n not in METRIC_NAMES + ("basic", "all"):
            raise ValueError(f"metrics: unknown name {n!r}; expected basic, all or one of {', '.join(METRIC_NAMES)}")
        chosen += EXTRA if n == "all" else [n] if n in EXTRA else []
    return tuple(dict.fromkeys(chosen))


class ExtraMetrics:
    """The metrics of ``metrics`` beyond the basic three (see :class:`ISTDMetrics`), updated
    together from probability (or logit) maps; empty for ``("basic",)``."""

    def __init__(self, metrics=("basic",), distance: float = 3.0, connectivity: int = 8, logits: bool = False,
                 backend: str | None = None, distributed: bool = True, thresholds=None, pixel_threshold: float = 0.5,
                 pyirstd: bool = False) -> None:
        common = {"thresholds": thresholds, "connectivity": connectivity, "logits": logits, "backend": backend,
                  "distributed": distributed, "pyirstd": pyirstd}
        make = {"pdfa_shooting": lambda: PdFa(distance, matching="shooting", **common),
                "pdfa_opdc": lambda: PdFa(distance, matching="opdc", **common),
                "hiou": lambda: HIoU(distance=distance, **common),
                "pixel": lambda: PixelMetrics(threshold=pixel_threshold, logits=logits, distributed=distributed,
                                              pyirstd=pyirstd)}
        self.members = {name: make[name]() for name in check_metric_names(metrics)}

    def __bool__(self) -> bool:
        return bool(self.members)

    def update(self, pred: Tensor, target: Tensor) -> None:
        """Each cut is thresholded and labelled once for every member, and OPDC runs once
        for both its members."""
        p, t = check_pair(pred, target)
        sweeping = [m for m in self.members.values() if not isinstance(m, PixelMetrics)]
        for m in self.members.values():
            if isinstance(m, PixelMetrics):
                m.update(p, t)  # its checks come first: a bad map raises before any count
        if not sweeping or p.shape[0] == 0:
            return
        first = sweeping[0]
        if len(sweeping) == len(self.members):  # else PixelMetrics has checked the map
            check_values(p, first.logits)
        target_bin = binarize_target(t)
        values, cuts = levels(p, first.thresholds, first.logits)
        target_lab = rules.label(target_bin, first.connectivity, first.backend, index=True)
        adds = [m.sweep(target_bin, values, cuts, target_lab) for m in sweeping]
        for k, pred_bin in enumerate(cut_maps(values, cuts)):
            pred_lab, shared = rules.label(pred_bin, first.connectivity, first.backend), {}
            for add in adds:
                add(k, pred_bin, pred_lab, shared)

    def compute(self, counts: dict[str, Tensor] | None = None) -> dict:
        """The members' ``compute()`` keys (prefixed), of their state or of ``counts`` (in the
        form of :meth:`sync`, e.g. a per-image table summed)."""
        counts = self.sync() if counts is None else counts
        out: dict = {}
        for name, m in self.members.items():
            out.update({_prefix(name) + k: v for k, v in m.present(m.values(_member(counts, name))).items()})
        return out

    def values(self, counts: dict[str, Tensor], empty: float = 0.0) -> dict[str, Tensor]:
        """Every key of :meth:`compute` as tensors, from count tensors in the form of
        :meth:`sync` with any leading dims ([n, ...] per image, [R, ...] per resample: the
        members' ``values``); ``empty`` (0, or NaN) for ratios with an empty denominator."""
        out: dict = {}
        for name, m in self.members.items():
            out.update({_prefix(name) + k: v for k, v in m.values(_member(counts, name), empty).items()})
        return out

    def sync(self) -> dict:
        """The members' count tensors as ``{"member.count": tensor}``."""
        return {f"{name}.{k}": v for name, m in self.members.items() for k, v in m.sync().items()}

    def reset(self) -> None:
        for m in self.members.values():
            m.reset()


def _member(counts: dict[str, Tensor], name: str) -> dict[str, Tensor]:
    """Member ``name``'s count tensors (on the CPU) from ``{"member.count": tensor}``."""
    head = name + "."
    return {k[len(head):]: v.cpu() for k, v in counts.items() if k.startswith(head)}


def _prefix(name: str) -> str:
    """The key prefix of member ``name``: ``shooting_`` and ``opdc_`` for the extra PdFa rules."""
    return name.split("_", 1)[1] + "_" if name.startswith("pdfa_") else ""


class ISTDMetrics:
    """IoU, nIoU and Pd/Fa over the same predictions, and with ``metrics`` the others.

    ``metrics``: ``("basic",)`` (the default: IoU, nIoU, Pd/Fa), ``("all",)``, or names of
    :data:`METRIC_NAMES` (the basic three always come): ``pdfa_shooting`` and ``pdfa_opdc``
    (:class:`.PdFa` under those rules, keys prefixed ``shooting_`` / ``opdc_``), ``hiou``
    (:class:`.HIoU`), ``pixel`` (:class:`.PixelMetrics`). ``thresholds`` (probabilities)
    sweeps the shooting, OPDC and hIoU members; the basic members stay at the one cut.
    ``pyirstd=True`` gives the OPDC, hIoU and pixel members PyIRSTDMetrics 1.0.2's rules.
    Mismatched shapes, a non-finite ``pred`` or one outside [0, 1] (without ``logits``)
    raise ValueError (basic metrics only, on a GPU: at ``compute``, see
    :class:`._base.ValueCheck`).

    ``compute()`` -> ``{"iou", "niou", "pd", "fa"}`` and the raw counts
    (``intersection, union, images, detected, targets, false_pixels, pixels``). Values are
    fractions; the paper tables print IoU, nIoU and Pd in percent and Fa x 1e-6.

    On the CPU with the C++ extension, ``update`` reads each batch once: thresholding,
    overlap counts and the components of both maps come from one pass that builds no label
    images (``backend="torch"`` takes the separate ops instead).
    """

    def __init__(self, distance: float = 3.0, logits: bool = False, legacy: bool = False,
                 empty_as: str = "zero", connectivity: int = 8, backend: str | None = None,
                 distributed: bool = True, metrics=("basic",), thresholds=None, pyirstd: bool = False) -> None:
        self.iou = IoU(logits=logits, distributed=distributed)
        self.niou = NIoU(empty_as=empty_as, logits=logits, distributed=distributed)
        self.pdfa = PdFa(distance=distance, connectivity=connectivity, legacy=legacy, logits=logits,
                         backend=backend, distributed=distributed)
        self.logits = self.iou.logits
        self.value_check = ValueCheck()
        self.extra = ExtraMetrics(metrics, distance=distance, connectivity=connectivity, logits=logits,
                                  backend=backend, distributed=distributed, thresholds=thresholds, pyirstd=pyirstd)

    def _metrics(self):
        return (self.iou, self.niou, self.pdfa, *self.extra.members.values())

    def update(self, pred: Tensor, target: Tensor) -> dict[str, Tensor]:
        """Add a batch ([N, H, W] or [N, 1, H, W]); returns the counts it added per image:
        ``{"intersection", "union", "targets", "detected", "false_pixels"}``, int64 [N]."""
        # Checked, thresholded and counted once for all members; a bad batch raises before
        # any member changes.
        p, t = check_pair(pred, target)
        if self.extra:
            check_values(p, self.logits)
        else:
            self.value_check.see(p, self.logits)
        fused = measure_pair(p, t, 0.0 if self.logits else 0.5, self.pdfa.connectivity, self.pdfa.backend)
        if fused is not None:
            inter, union = fused.inter, fused.union
            found = self.pdfa._add_measured(fused.target_counts, fused.target_centroid, fused.pred_counts,
                                            fused.pred_area, fused.pred_centroid, p.numel())
        else:
            pred_bin, target_bin = binarize_pred(p, self.logits), binarize_target(t)
            inter, union = intersection_union(pred_bin, target_bin)
            found = self.pdfa._add(pred_bin, target_bin)
        self.iou._add(inter, union, p.device)
        self.niou._add(inter, union, p.device)
        self.extra.update(p, t)
        return dict(zip(("intersection", "union", "targets", "detected", "false_pixels"), (inter, union, *found)))

    __call__ = update

    def compute(self) -> dict:
        self.value_check.flush()
        out: dict = {}
        for m in (self.iou, self.niou, self.pdfa):
            out.update(m.compute())
        head = {k: out.pop(k) for k in ("iou", "niou", "pd", "fa")}
        return {**head, **out, **self.extra.compute()}

    def sync(self) -> dict:
        """The members' count tensors, summed over processes when running distributed."""
        self.value_check.flush()
        out: dict = {}
        for m in (self.iou, self.niou, self.pdfa):
            out.update(m.sync())
        return {**out, **self.extra.sync()}

    def reset(self) -> None:
        for m in self._metrics():
            m.reset()
