"""``istd evaluate``: IoU, nIoU, Pd and Fa (SPEC §5) of trained weights on a data set split.

Images are scored at their own size (a padded batch is cropped back per image before the
metrics see it), so batch size does not change the numbers. images/s counts the forward
passes only (data loading excluded), synchronised on CUDA.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from . import CLIError

ROC_THRESHOLDS = [float(t) for t in np.round(np.concatenate([[0.001, 0.01], np.linspace(0.05, 0.95, 19),
                                                             [0.99, 0.999]]), 6)]


def format_table(rows) -> str:
    """A plain-text table: ``rows`` is a list of equal-length lists of strings, the first the header."""
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.rjust(w) if j else c.ljust(w) for j, (c, w) in enumerate(zip(r, widths)))
                     for r in rows)


def run(args) -> int:
    """The ``istd evaluate`` subcommand."""
    from torch.utils.data import DataLoader

    from .data import ISTDDataset, pad_collate
    from .train import inference_model

    if args.batch_size < 1:
        raise CLIError(f"--batch-size must be >= 1; got {args.batch_size}")
    net, device = inference_model(args)
    ds = ISTDDataset(args.data, args.subset, args.layout, args.split)
    loader = DataLoader(ds, batch_size=args.batch_size, shuffle=False, num_workers=args.workers,
                        collate_fn=pad_collate)
    roc = None
    if args.roc:
        from ..metrics import ROC
        roc = ROC(ROC_THRESHOLDS, logits=True)
    from .train import evaluate_model
    m = evaluate_model(net, loader, device, args.amp, roc)
    result = {"model": args.model, "weights": str(args.weights), "data": str(args.data), "subset": args.subset,
              "images": m["images_seen"], "iou": m["iou"], "niou": m["niou"], "pd": m["pd"], "fa": m["fa"],
              "iou_percent": 100 * m["iou"], "niou_percent": 100 * m["niou"], "pd_percent": 100 * m["pd"],
              "fa_x1e-6": 1e6 * m["fa"], "images_per_s": m["images_per_s"], "device": str(device),
              "counts": {k: v for k, v in m.items() if k not in ("iou", "niou", "pd", "fa", "images_per_s",
                                                                  "images_seen")}}
    header = ["model", "data", "images", "IoU (%)", "nIoU (%)", "Pd (%)", "Fa (x1e-6)", "images/s"]
    row = [args.model, f"{Path(args.data).name} ({args.subset})", str(result["images"]),
           f"{result['iou_percent']:.2f}", f"{result['niou_percent']:.2f}", f"{result['pd_percent']:.2f}",
           f"{result['fa_x1e-6']:.2f}", f"{result['images_per_s']:.1f}"]
    print(format_table([header, row]))
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        tmp = f"{args.json}.tmp{os.getpid()}"
        with open(tmp, "w") as f:
            json.dump(result, f, indent=1)
        os.replace(tmp, args.json)
        print(f"wrote {args.json}")
    if roc is not None:
        png = Path(args.roc)
        png.parent.mkdir(parents=True, exist_ok=True)
        roc.save_csv(png.with_suffix(".csv"))
        try:
            roc.plot(png)
        except ImportError as e:
            raise CLIError(f"--roc {png} needs matplotlib to draw the plot (the CSV "
                           f"{png.with_suffix('.csv')} was written)") from e
        print(f"wrote {png} and {png.with_suffix('.csv')}")
    return 0
