"""Bootstrap confidence intervals for the CLI: the ``--ci/--bootstrap/--seed`` flags, the
per-image count table of a :class:`~.scoring.Scorer`, and how an interval is printed and
written to JSON.

The interval is over test images only (:mod:`istd_kernels.metrics.bootstrap`): it says how
much the figure depends on which images happen to be in the test set, not how much it
varies between training runs.
"""

from __future__ import annotations

import argparse

import numpy as np

from . import CLIError

MIN_RESAMPLES = 100
# name in tables, and the factor from a fraction to the paper-table unit
UNITS = {"iou": ("IoU", 100.0), "niou": ("nIoU", 100.0), "pd": ("Pd", 100.0), "fa": ("Fa", 1e6)}
UNIT_NAMES = {"iou": "IoU (%)", "niou": "nIoU (%)", "pd": "Pd (%)", "fa": "Fa (x1e-6)"}


def bootstrap_flags(p: argparse.ArgumentParser, ci_default: float | None) -> None:
    """Add ``--ci``, ``--bootstrap`` and ``--seed`` to a subcommand's parser."""
    p.add_argument("--ci", type=float, default=ci_default, metavar="LEVEL",
                   help="bootstrap confidence intervals over the test images at this level, e.g. 0.95")
    p.add_argument("--bootstrap", type=int, default=2000, metavar="R", help="bootstrap resamples (>= 100)")
    p.add_argument("--seed", type=int, default=0, help="seed of the resampling: the same seed gives the same intervals")


def check_bootstrap_args(args) -> None:
    """A ``--ci`` outside (0, 1) or ``--bootstrap`` below :data:`MIN_RESAMPLES` is a CLIError."""
    if args.ci is not None and not 0 < args.ci < 1:
        raise CLIError(f"--ci must be a confidence level strictly between 0 and 1, e.g. --ci 0.95; got {args.ci:g}")
    if args.bootstrap < MIN_RESAMPLES:
        raise CLIError(f"--bootstrap must be at least {MIN_RESAMPLES} resamples (2000 is the usual choice); "
                       f"got {args.bootstrap}")


def count_table(rows: list[dict], niou_empty: str) -> dict[str, np.ndarray]:
    """The columns of :data:`~istd_kernels.metrics.BASIC_METRICS` from a Scorer's per-image
    rows; nIoU scores an image with nothing to find and nothing found by ``niou_empty``."""
    def column(key):
        return np.array([r[key] for r in rows], dtype=np.float64)
    empty = np.array([r["iou"] is None for r in rows])
    iou = np.array([0.0 if r["iou"] is None else r["iou"] for r in rows], dtype=np.float64)
    return {"intersection": column("intersection"), "union": column("union"),
            "niou_score": np.where(empty, 1.0 if niou_empty == "one" else 0.0, iou),
            "niou_images": np.where(empty & (niou_empty == "skip"), 0.0, 1.0),
            "detected": column("detected"), "targets": column("targets"),
            "false_pixels": column("false_pixels"),
            "pixels": np.array([r["height"] * r["width"] for r in rows], dtype=np.float64)}


def scale(key: str) -> float:
    """The factor from a fraction to the paper-table unit of metric ``key``: the basic four's
    :data:`UNITS`; for the suite's keys x 1e6 for Fa (``*_fa``), percent for the rest."""
    return UNITS[key][1] if key in UNITS else 1e6 if key.endswith("_fa") else 100.0


def fmt(value: float | None, key: str) -> str:
    """A fraction in the paper-table unit of metric ``key`` (2 decimals), or ``undefined``."""
    return "undefined" if value is None else f"{value * scale(key):.2f}"


def fmt_interval(value: float | None, low: float | None, high: float | None, key: str) -> str:
    """``74.31 [71.02, 77.40]`` in the unit of metric ``key``; ``undefined`` without a value
    (no targets, nothing predicted and nothing to find, ...)."""
    if value is None:
        return "undefined"
    if low is None:
        return f"{fmt(value, key)} [undefined]"
    return f"{fmt(value, key)} [{fmt(low, key)}, {fmt(high, key)}]"


def intervals(scorer, args) -> dict:
    """``{metric: Interval}`` of a scored set, from ``args.ci``, ``args.bootstrap``, ``args.seed``."""
    from ..metrics import bootstrap
    return bootstrap(count_table(scorer.rows, args.niou_empty), n_resamples=args.bootstrap, ci=args.ci,
                     seed=args.seed)


def suite_intervals(scorer, args) -> dict:
    """``{key: Interval}`` of every ratio of a scorer's suite (its raw counts are not
    metrics), from its per-image count table with the resamples of :func:`intervals`: each
    key is recomputed from the resampled counts as on the whole set (sample-based means
    included: a sum of per-image values over a count of images)."""
    import torch

    from ..metrics import bootstrap_arrays
    table = scorer.extra_table()
    keys = [k for k, v in scorer.extra_per_image().items() if v.dtype.is_floating_point]

    def values(sums: dict) -> dict:
        got = scorer.extra.values({k: torch.from_numpy(v) for k, v in sums.items()}, empty=float("nan"))
        return {k: got[k].numpy() for k in keys}
    return bootstrap_arrays({k: v.double().numpy() for k, v in table.items()}, values, n_resamples=args.bootstrap,
                            ci=args.ci, seed=args.seed)


def interval_line(name: str, found: dict) -> str:
    """One console line: ``NAME: IoU 74.31 [71.02, 77.40]  nIoU ...``."""
    return f"{name}: " + "  ".join(f"{UNITS[k][0]} {fmt_interval(*found[k][:3], k)}" for k in found)


def intervals_json(found: dict, args) -> dict:
    """The JSON block: fractions (None where undefined), level, resamples and seed."""
    return {"ci": args.ci, "resamples": args.bootstrap, "seed": args.seed,
            **{k: iv._asdict() for k, iv in found.items()}}


def report_intervals(named_scorers, args) -> list[dict]:
    """Print the ``--ci`` lines of each ``(name, scorer)``; return their JSON blocks."""
    blocks = []
    print(f"{100 * args.ci:g} % bootstrap intervals over the test images ({args.bootstrap} resamples, "
          f"seed {args.seed}; IoU, nIoU, Pd in %, Fa x 1e-6):")
    for name, scorer in named_scorers:
        found = intervals(scorer, args)
        print(interval_line(name, found))
        blocks.append(intervals_json(found, args))
    return blocks
