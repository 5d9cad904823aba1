"""``istd predict``: binary target masks, target lists and optional overlays for image files.

For each input ``<stem>.<ext>`` it writes ``OUT/<stem>.png`` (0/255 mask: probability > 0.5,
SPEC §1) and, with ``--overlay``, ``OUT/overlay/<stem>.png`` (the image in colour with each
detected target circled in red). ``OUT/targets.json`` maps each input file to its size and its
targets (8-connected components of the mask, in raster order of their first pixel): centroid
``[row, col]``, area in pixels, bounding box ``[min_row, min_col, max_row + 1, max_col + 1]``
and the peak probability. Images are run one at a time, each at its own size.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import List

from . import CLIError
from .data import IMAGE_EXTS


def expand_inputs(items: List[str]) -> List[Path]:
    """Files as given, folders as their image files (sorted); a missing path is an error."""
    out: List[Path] = []
    for item in items:
        p = Path(item)
        if p.is_dir():
            found = sorted(f for f in p.iterdir() if f.suffix.lower() in IMAGE_EXTS and f.is_file())
            if not found:
                raise CLIError(f"folder {p} holds no images (expected {', '.join(IMAGE_EXTS)} files)")
            out.extend(found)
        elif p.is_file():
            out.append(p)
        else:
            raise CLIError(f"input image {p} does not exist")
    seen = {}
    for p in out:
        if p.stem in seen:
            raise CLIError(f"inputs {seen[p.stem]} and {p} would both write {p.stem}.png; rename one")
        seen[p.stem] = p
    return out


def run(args) -> int:
    """The ``istd predict`` subcommand."""
    import cv2
    import numpy as np
    import torch

    from ..ops import component_stats, connected_components
    from .data import image_tensor, read_grey
    from .train import inference_model

    inputs = expand_inputs(args.images)
    net, device = inference_model(args)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.overlay:
        (out / "overlay").mkdir(exist_ok=True)
    report = {}
    with torch.no_grad():
        for path in inputs:
            grey = read_grey(path)
            prob = net(image_tensor(grey)[None].to(device))[0, 0]
            mask = prob > args.threshold
            labels, counts = connected_components(mask[None])
            stats = component_stats(labels, counts)
            targets = []
            for k in range(int(counts[0])):
                sel = labels[0] == k + 1
                targets.append({"centroid": [round(float(v), 3) for v in stats.centroid[0, k].tolist()],
                                "area": int(stats.area[0, k]), "bbox": [int(v) for v in stats.bbox[0, k].tolist()],
                                "score": round(float(prob[sel].max()), 4)})
            mask_np = mask.to(torch.uint8).mul_(255).cpu().numpy()
            if not cv2.imwrite(str(out / f"{path.stem}.png"), mask_np):
                raise CLIError(f"could not write {out / f'{path.stem}.png'}")
            if args.overlay:
                vis = cv2.cvtColor(grey, cv2.COLOR_GRAY2BGR)
                for t in targets:
                    r, c = t["centroid"]
                    radius = int(max(4, np.sqrt(t["area"]) + 3))
                    cv2.circle(vis, (int(round(c)), int(round(r))), radius, (0, 0, 255), 1, cv2.LINE_AA)
                cv2.imwrite(str(out / "overlay" / f"{path.stem}.png"), vis)
            report[str(path)] = {"mask": f"{path.stem}.png", "size": [int(grey.shape[0]), int(grey.shape[1])],
                                 "targets": targets}
            print(f"{path}: {len(targets)} target(s)")
    tmp = out / f".targets.json.tmp{os.getpid()}"
    tmp.write_text(json.dumps({"model": args.model, "weights": str(args.weights), "threshold": args.threshold,
                               "images": report}, indent=1))
    os.replace(tmp, out / "targets.json")
    print(f"wrote {len(inputs)} mask(s) and {out / 'targets.json'}")
    return 0
