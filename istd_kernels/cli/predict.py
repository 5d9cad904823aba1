"""``istd predict``: binary target masks, target lists and optional overlays for image files.

For each input ``<stem>.<ext>`` it writes ``OUT/<stem>.png`` (0/255 mask: probability > 0.5,
docs/networks.md §1) and, with ``--overlay``, ``OUT/overlay/<stem>.png`` (the image with each detected
target outlined and ringed in red, and a legend; see :mod:`.overlay`). ``OUT/targets.json``
maps each input file to its size and its targets (8-connected components of the mask, in
raster order of their first pixel): centroid ``[row, col]``, area in pixels, bounding box
``[min_row, min_col, max_row + 1, max_col + 1]`` and the peak probability. Images are run
one at a time, each at its own size, so the masks do not depend on any batch size; frames
above the size limit need ``--tile`` (:mod:`.tiling`). ``OUT`` may not be, contain or lie
inside an input folder or a data set's ``images/``/``masks/``, and existing files are replaced
only with ``--overwrite`` (:mod:`.outputs`).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from . import CLIError
from .data import IMAGE_EXTS


def expand_inputs(items: list[str]) -> list[Path]:
    """Files as given, folders as their image files (sorted); a missing path is an error."""
    out: list[Path] = []
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


def _planned(out: Path, inputs: list[Path], overlay: bool) -> list[Path]:
    """Every file ``istd predict`` writes for ``inputs`` (checked before the first is written)."""
    names = [f"{p.stem}.png" for p in inputs]
    return [*(out / n for n in names), *((out / "overlay" / n for n in names) if overlay else ()), out / "targets.json"]


def _targets(prob, mask) -> list[dict]:
    """The components of ``mask`` [H, W] as target records (see the module note)."""
    from ..ops import component_stats, connected_components
    labels, counts = connected_components(mask[None])
    stats = component_stats(labels, counts)
    targets = []
    for k in range(int(counts[0])):
        sel = labels[0] == k + 1
        targets.append({"centroid": [round(float(v), 3) for v in stats.centroid[0, k].tolist()],
                        "area": int(stats.area[0, k]), "bbox": [int(v) for v in stats.bbox[0, k].tolist()],
                        "score": round(float(prob[sel].max()), 4)})
    return targets


def run(args) -> int:
    """The ``istd predict`` subcommand."""
    import torch

    from .checks import load_inference_model
    from .data import image_tensor, read_grey
    from .outputs import check_new_files, check_not_inputs, check_output_folder, write_image, write_text
    from .overlay import draw_overlay

    if not 0 < args.threshold < 1:
        raise CLIError(f"--threshold must be a probability strictly between 0 and 1; got {args.threshold}")
    out = check_output_folder(args.out, "--out")
    inputs = expand_inputs(args.images)
    check_not_inputs(out, "--out", [p for p in args.images if Path(p).is_dir()],
                     [p for p in args.images if not Path(p).is_dir()])
    check_new_files(_planned(out, inputs, args.overlay), "--out", args.overwrite)
    net, device = load_inference_model(args)
    report = {}
    with torch.no_grad():
        for path in inputs:
            grey = read_grey(path)
            logits = net(image_tensor(grey)[None].to(device), return_logits=True)[0, 0].float()
            # the rule of istd evaluate (Scorer): logit > log(t / (1 - t)), so that scoring these
            # masks gives the numbers of scoring the model directly
            mask = logits > math.log(args.threshold / (1 - args.threshold))
            prob = torch.sigmoid(logits)
            targets = _targets(prob, mask)
            mask_np = mask.cpu().numpy()
            write_image(out / f"{path.stem}.png", mask_np.astype("uint8") * 255, "--out")
            if args.overlay:
                notes = [f"{path.name}: {len(targets)} target(s)", f"probability > {args.threshold:g}"]
                write_image(out / "overlay" / f"{path.stem}.png", draw_overlay(grey, mask_np, None, notes)[0], "--out")
            report[str(path)] = {"mask": f"{path.stem}.png", "size": [int(grey.shape[0]), int(grey.shape[1])],
                                 "targets": targets}
            print(f"{path}: {len(targets)} target(s)")
    write_text(out / "targets.json", json.dumps({"model": args.model, "weights": str(args.weights),
                                                 "threshold": args.threshold, "images": report}, indent=1), "--out")
    print(f"wrote {len(inputs)} mask(s) and {out / 'targets.json'}")
    if args.overlay:
        print(f"wrote {len(inputs)} overlay(s) to {(out / 'overlay').resolve()}")
    return 0
