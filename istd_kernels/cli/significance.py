"""``istd compare``: does one model really beat another on this test set?

Every model, a ``--pred`` folder of saved predictions or a ``--model/--weights`` pair, is
scored on the same images (a folder lacking an image another one has, or with weights any
image of the split, is an error), then for each pair of models:

- a paired bootstrap of each metric's difference (both models resampled with the same
  image indices, :func:`~istd_kernels.metrics.paired_bootstrap`): interval and two-sided
  p-value, and a verdict: ``A > B`` (A scores better: higher IoU, nIoU, Pd; lower Fa) when
  the interval of the difference excludes 0 on A's side, ``B > A`` on B's side, else no
  significant difference at the ``--ci`` level;
- per-image win/loss/tie counts on IoU and on detected targets;
- the images where the two disagree most (largest IoU difference, then detected targets,
  then false pixels) and, with ``--out``, overlays of the worst few side by side.

Scoring is the one of ``istd evaluate`` (:class:`~.scoring.Scorer`); prediction files are
decoded in a thread pool (cv2 releases the GIL) while the main thread scores, and each mask
is read once for all folders.
"""

from __future__ import annotations

import argparse
import itertools
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from . import CLIError
from .compare import render_table
from .intervals import UNIT_NAMES, UNITS, bootstrap_flags, check_bootstrap_args, count_table, fmt, fmt_interval
from .outputs import overwrite_flag

# The thread pool decodes this many images ahead of the scorer at most (bounded memory).
_AHEAD = 16
# Images of one size scored at once: the matching's per-call overhead dominates on the few
# targets of an image (0.76 ms of CPU per 512x512 image alone, 0.31 ms in batches of 16).
_BATCH = 16


def compare_parser(sub, data_flags, models: tuple[str, ...]) -> None:
    """Register ``istd compare`` on the subparsers ``sub``; ``data_flags`` adds --data/--layout/--split,
    ``models`` are the ``--model`` choices."""
    from .scoring import NIOU_EMPTY
    p = sub.add_parser("compare", help="paired bootstrap comparison of several models on one test set",
                       description="Score each --pred folder and each --model/--weights pair on the same test "
                       "images, then for each pair of models: the difference of every metric with its bootstrap "
                       "interval and p-value, per-image wins, the images where they disagree most, and a verdict.",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    data_flags(p)
    p.add_argument("--pred", action="append", default=[], metavar="DIR",
                   help="folder of predictions named by image id (the formats of istd evaluate --pred); repeat")
    p.add_argument("--model", action="append", default=[], choices=models,
                   help="network of the --weights of the same rank; repeat with --weights")
    p.add_argument("--weights", action="append", default=[], help="checkpoint (RUN/best.pt) or bare state_dict")
    p.add_argument("--names", nargs="+", default=None, help="one name per model, --pred folders first, then "
                   "--weights (default: folder names, MODEL:RUN for weights)")
    p.add_argument("--subset", default="test", choices=("train", "test"), help="which split to score")
    p.add_argument("--pred-scale", default="auto", choices=("auto", "1", "255", "65535"),
                   help="divide --pred maps by this (auto: by file type and value range)")
    p.add_argument("--threshold", type=float, default=0.5, help="positive where probability > this")
    p.add_argument("--legacy-fa", action="store_true", help="count false pixels with the older DNANet rule")
    p.add_argument("--niou-empty", default="zero", choices=NIOU_EMPTY,
                   help="nIoU score of an image with nothing to find and nothing found")
    bootstrap_flags(p, 0.95)
    p.add_argument("--top", type=int, default=5, help="list this many most-disagreeing images per pair")
    p.add_argument("--overlays", type=int, default=3, help="overlay PNGs of this many of them per pair (with --out)")
    p.add_argument("--out", default=None, help="folder for the overlays (one subfolder per pair)")
    overwrite_flag(p)
    p.add_argument("--json", default=None, help="write the results to this JSON file")
    p.add_argument("--workers", type=int, default=4, help="threads decoding the files")
    p.add_argument("--device", default=None, choices=("auto", "cpu", "cuda"), help="for --weights; default: "
                   "cuda if available")
    p.add_argument("--backend", default=None, help="istd_kernels backend for LCRNet's layers (--weights)")
    p.add_argument("--batch-size", type=int, default=1, help="images per forward pass (--weights)")
    p.add_argument("--amp", action="store_true", help="mixed precision for --weights")


def _check_args(args) -> list[str]:
    from .checks import check_at_least
    from .outputs import check_not_inputs, check_output_folder, check_output_path
    if len(args.model) != len(args.weights):
        raise CLIError(f"give one --model per --weights (in the same order); got {len(args.model)} --model and "
                       f"{len(args.weights)} --weights")
    count = len(args.pred) + len(args.weights)
    if count < 2:
        raise CLIError("istd compare needs at least two models: --pred folders and/or --model/--weights pairs "
                       "(to score one, use istd evaluate)")
    names = args.names or [Path(f).name or str(f) for f in args.pred] + [
        f"{m}:{Path(w).parent.name or Path(w).stem}" for m, w in zip(args.model, args.weights)]
    if len(names) != count:
        raise CLIError(f"--names gives {len(names)} name(s) for {count} model(s); give one per --pred folder, "
                       f"then one per --weights")
    if len(set(names)) != len(names):
        raise CLIError(f"the models' names must differ; got {', '.join(names)} (give --names A B ...)")
    check_bootstrap_args(args)
    if not 0 < args.threshold < 1:
        raise CLIError(f"--threshold must be a probability strictly between 0 and 1; got {args.threshold}")
    for flag in ("top", "workers", "batch_size"):
        check_at_least("--" + flag.replace("_", "-"), getattr(args, flag), 1)
    check_at_least("--overlays", args.overlays, 0)
    if args.json:
        check_output_path(args.json, "--json")
    if args.out:
        check_output_folder(args.out, "--out")
        check_not_inputs(args.out, "--out", args.pred)
    return names


def _matched_files(ds, folders: list[str], every: bool) -> tuple[list[int], list[dict[int, Path]]]:
    """(indices into ``ds.pairs`` to score, per folder ``{index: file}``); folders holding
    different image sets (or, with ``every``, not every image of the split) are an error
    naming the images and the fix."""
    from .predictions import index_folder, match_ids
    ids = [p[0] for p in ds.pairs]
    files = [dict(match_ids(ids, index_folder(f), f, False).pairs) for f in folders]
    union = set(range(len(ids))) if every else set().union(*files)
    for folder, got in zip(folders, files):
        lacking = sorted(union - set(got))
        if lacking:
            other = next((f"--pred {f}" for f, g in zip(folders, files) if set(lacking) & set(g)),
                         "--weights (which scores every image of the split)")
            raise CLIError(f"--pred {folder} lacks {len(lacking)} image(s) that {other} has "
                           f"({', '.join(ids[k] for k in lacking[:5])}{' ...' if len(lacking) > 5 else ''}): "
                           f"every model must be scored on the same images; write the missing predictions "
                           f"or remove the extra ones")
    unscored = len(ids) - len(union)
    if unscored:
        print(f"{unscored} image(s) of the split have no prediction in any folder and are not scored")
    return sorted(union), files


def _ahead(pool: ThreadPoolExecutor, fn, items: list):
    """``fn(item)`` for each item, in order, computed in ``pool`` at most :data:`_AHEAD` ahead."""
    pending = [pool.submit(fn, x) for x in items[:_AHEAD]]
    for i in range(len(items)):
        if i + _AHEAD < len(items):
            pending.append(pool.submit(fn, items[i + _AHEAD]))
        yield pending[i].result()
        pending[i] = None


def _same_size_runs(items, limit: int):
    """Lists of up to ``limit`` consecutive ``(k, target, preds)`` items whose targets have one shape."""
    run: list = []
    for item in items:
        if run and (len(run) == limit or item[1].shape != run[0][1].shape):
            yield run
            run = []
        run.append(item)
    if run:
        yield run


def _score(ds, keep: list[int], files: list[dict[int, Path]], args) -> list:
    """One Scorer per folder over the images ``keep``; each mask is read once for all folders."""
    if not files:
        return []
    import torch

    from .data import read_mask
    from .predictions import describe_kinds, read_positive
    from .scoring import Scorer

    def load(k):
        mask = read_mask(ds.pairs[k][2])
        # the scorers need only the thresholded maps: a bool map is cheaper to make and to score
        preds = [read_positive(f[k], args.pred_scale, args.threshold) for f in files]
        for f, (positive, _) in zip(files, preds):
            if positive.shape != mask.shape:
                raise CLIError(f"prediction {f[k]} is {positive.shape[1]}x{positive.shape[0]} but its mask "
                               f"{ds.pairs[k][2]} is {mask.shape[1]}x{mask.shape[0]}; expected equal sizes")
        return k, torch.from_numpy(mask), preds

    scorers = [Scorer(args.threshold, False, args.legacy_fa, args.niou_empty) for _ in files]
    kinds = [Counter() for _ in files]
    # One image is too small a job for torch's intra-op threads: their wake-up cost more than
    # the work (aminmax of a 512x512 map took 1.3 ms on 2 threads, 0.2 ms on one).
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with ThreadPoolExecutor(args.workers) as pool:
            # a folder's first file settles its folder-wide scale rule (predictions.py caches it)
            # once, before several threads would each work it out
            list(pool.map(lambda f: read_positive(f[keep[0]], args.pred_scale, args.threshold), files))
            for run in _same_size_runs(_ahead(pool, load, keep), _BATCH):
                ids, targets = [ds.pairs[k][0] for k, _, _ in run], torch.stack([t for _, t, _ in run])
                for m, (scorer, kind) in enumerate(zip(scorers, kinds)):
                    scorer.update_batch(torch.stack([torch.from_numpy(p[m][0]) for _, _, p in run]), targets, ids)
                    kind.update(p[m][1] for _, _, p in run)
    finally:
        torch.set_num_threads(threads)
    for folder, kind in zip(args.pred, kinds):
        print(f"{folder}: read {describe_kinds(kind)}; positive where probability > {args.threshold:g}")
    return scorers


def _folder_predicted(files: dict[int, Path], args):
    """``predicted(k, grey)``: the bool prediction map of image ``k`` read from a folder."""
    from .predictions import read_positive

    def predicted(k, grey):
        return read_positive(files[k], args.pred_scale, args.threshold)[0]
    return predicted


def _score_weights(ds, keep: list[int], model: str, weights: str, args):
    """``(Scorer, predicted(k, grey))`` of a ``--model/--weights`` pair over the images ``keep``."""
    import torch
    from torch.utils.data import DataLoader, Subset

    from .checks import load_inference_model
    from .data import image_tensor
    from .runtime import Progress
    from .scoring import Scorer, score_model, size_grouped
    net, device = load_inference_model(argparse.Namespace(model=model, weights=weights, device=args.device,
                                                          backend=args.backend))
    scorer = Scorer(args.threshold, True, args.legacy_fa, args.niou_empty)
    items = DataLoader(Subset(ds, keep), batch_size=None, shuffle=False, num_workers=0)
    score_model(net, size_grouped(items, args.batch_size), device, args.amp, scorer,
                Progress(f"compare {model} {weights}", len(keep)))
    # size_grouped may reorder images of mixed sizes; the paired bootstrap needs split order
    rank = {ds.pairs[k][0]: i for i, k in enumerate(keep)}
    scorer.rows.sort(key=lambda r: rank[r["id"]])

    def predicted(k, grey):
        with torch.no_grad():
            logits = net(image_tensor(grey)[None].to(device), return_logits=True).float()
        return (logits[0, 0] > scorer.cut).cpu().numpy()
    return scorer, predicted


def _verdict(diff, key: str, a: str, b: str, ci: float) -> str:
    from ..metrics import BASIC_METRICS
    if diff.low is None:
        return "undefined"
    a_above = diff.low > 0
    if not a_above and not diff.high < 0:
        return f"no significant difference at {100 * ci:g} %"
    a_better = a_above == BASIC_METRICS[key].higher_is_better
    return f"{a} > {b}" if a_better else f"{b} > {a}"


def _tally(a: np.ndarray, b: np.ndarray) -> dict[str, int]:
    return {"a_better": int((a > b).sum()), "b_better": int((a < b).sum()), "equal": int((a == b).sum())}


def _per_image(rows_a: list[dict], rows_b: list[dict], top: int) -> dict:
    """Win/loss/tie counts on IoU (an image with nothing to find and nothing found scores 1)
    and on detected targets, and the ``top`` images where the two differ most."""
    def col(rows, key):
        return np.array([(1.0 if r[key] is None else r[key]) for r in rows], dtype=np.float64)
    iou_a, iou_b = col(rows_a, "iou"), col(rows_b, "iou")
    det_a, det_b = col(rows_a, "detected"), col(rows_b, "detected")
    fp_a, fp_b = col(rows_a, "false_pixels"), col(rows_b, "false_pixels")
    # lexsort: last key first; most different first
    order = np.lexsort((-np.abs(fp_a - fp_b), -np.abs(det_a - det_b), -np.abs(iou_a - iou_b)))[:top]
    different = [{"id": rows_a[i]["id"], "iou_a": rows_a[i]["iou"], "iou_b": rows_b[i]["iou"],
                  "detected_a": rows_a[i]["detected"], "detected_b": rows_b[i]["detected"],
                  "targets": rows_a[i]["targets"], "false_pixels_a": rows_a[i]["false_pixels"],
                  "false_pixels_b": rows_b[i]["false_pixels"]} for i in order]
    return {"iou": _tally(iou_a, iou_b), "detected": _tally(det_a, det_b), "most_different": different}


def _pair(a: tuple, b: tuple, args) -> dict:
    """The comparison of models ``a`` and ``b``, each ``(name, scorer)``."""
    from ..metrics import paired_bootstrap
    diffs = paired_bootstrap(count_table(a[1].rows, args.niou_empty), count_table(b[1].rows, args.niou_empty),
                             n_resamples=args.bootstrap, ci=args.ci, seed=args.seed)
    metrics = {k: {**d._asdict(), "verdict": _verdict(d, k, a[0], b[0], args.ci)} for k, d in diffs.items()}
    return {"a": a[0], "b": b[0], "metrics": metrics, **_per_image(a[1].rows, b[1].rows, args.top)}


def _print_pair(pair: dict, args) -> None:
    a, b = pair["a"], pair["b"]
    rows = [["metric", a, b, f"{a} - {b} [{100 * args.ci:g} % interval]", "p", "verdict"]]
    for k, m in pair["metrics"].items():
        diff = fmt_interval(m["diff"], m["low"], m["high"], k)
        p = "-" if m["p_value"] is None else f"{m['p_value']:.3f}"
        rows.append([UNIT_NAMES[k], fmt(m["a"], k), fmt(m["b"], k), diff, p, m["verdict"]])
    print(f"\n{a} vs {b}")
    print(render_table(rows, "text"))
    iou, det = pair["iou"], pair["detected"]
    print(f"per image: IoU higher for {a} on {iou['a_better']}, for {b} on {iou['b_better']}, equal on "
          f"{iou['equal']}; detected targets more for {a} on {det['a_better']}, for {b} on {det['b_better']}, "
          f"equal on {det['equal']}")

    def iou(v):
        return "-" if v is None else f"{100 * v:.1f}"
    print("most different: " + "; ".join(
        f"{d['id']} (IoU {iou(d['iou_a'])} vs {iou(d['iou_b'])}, detected {d['detected_a']} vs "
        f"{d['detected_b']} of {d['targets']})" for d in pair["most_different"]))


def _overlay_names(pair: dict, args) -> list[str]:
    """The file names of the pair's overlays, most different image first."""
    return [f"{rank:03d}_{str(d['id']).replace('/', '_')}.png"
            for rank, d in enumerate(pair["most_different"][:args.overlays], 1)]


def _overlay(pair: dict, d: dict, k: int, ds, predicted: dict, path: Path) -> str:
    """The side-by-side overlay (``a`` left, ``b`` right) of ``d``, one of the pair's most
    different images (``ds.pairs[k]``), written to ``path``."""
    import cv2

    from .data import read_grey, read_mask
    from .outputs import write_image
    from .overlay import draw_overlay
    ident, image_path, mask_path = ds.pairs[k]
    grey, truth = read_grey(image_path), read_mask(mask_path)
    sides = []
    for side in ("a", "b"):
        iou = "-" if d["iou_" + side] is None else f"{100 * d['iou_' + side]:.1f} %"
        pred = predicted[pair[side]](k, grey)
        notes = [f"{pair[side]}: {ident}", f"IoU {iou}, {d['detected_' + side]}/{d['targets']} detected, "
                 f"{d['false_pixels_' + side]} false px"]
        sides.append(draw_overlay(grey, pred, truth, notes)[0])
    height = max(s.shape[0] for s in sides)
    sides = [cv2.copyMakeBorder(s, 0, height - s.shape[0], 0, 4, cv2.BORDER_CONSTANT) for s in sides]
    write_image(path, np.concatenate(sides, axis=1), "--out")
    return str(path)


def _write_overlays(pairs: list[dict], ds, predicted: dict, folders: list[Path], args) -> None:
    """Each pair's overlays (``pair["overlays"]``, most different image first), drawn and
    written in a thread pool: OpenCV releases the GIL, and the PNG encoding of one took 30 ms.
    A --weights model runs its forward passes in one thread, as when it scored."""
    index = {p[0]: k for k, p in enumerate(ds.pairs)}
    with ThreadPoolExecutor(1 if args.weights else args.workers) as pool:
        written = [[pool.submit(_overlay, pair, d, index[d["id"]], ds, predicted, folder / name)
                    for name, d in zip(_overlay_names(pair, args), pair["most_different"])]
                   for pair, folder in zip(pairs, folders)]
    for pair, files in zip(pairs, written):
        pair["overlays"] = [f.result() for f in files]


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)


def _models_table(named, found, n: int, args) -> None:
    rows = [["model", "images", *UNIT_NAMES.values()]]
    for (name, _), iv in zip(named, found):
        rows.append([name, str(n), *(fmt_interval(*iv[k][:3], k) for k in UNIT_NAMES)])
    print(f"{len(named)} models on {Path(args.data).name} ({args.subset}, {n} images); {100 * args.ci:g} % "
          f"intervals from {args.bootstrap} bootstrap resamples of the images (seed {args.seed})")
    print(render_table(rows, "text"))


def _score_all(ds, names: list[str], args) -> tuple[list[int], list, dict]:
    """(scored image indices, one Scorer per model in ``names`` order, ``{name: predicted(k, grey)}``)."""
    keep, files = _matched_files(ds, args.pred, bool(args.weights))
    scorers = _score(ds, keep, files, args)
    predicted = [_folder_predicted(f, args) for f in files]
    for model, weights in zip(args.model, args.weights):
        scorer, fn = _score_weights(ds, keep, model, weights, args)
        scorers.append(scorer)
        predicted.append(fn)
    return keep, scorers, dict(zip(names, predicted))


def _result(args, names, keep, scorers, found, pairs) -> dict:
    sources = [{"predictions": str(f)} for f in args.pred] + [
        {"model": m, "weights": str(w)} for m, w in zip(args.model, args.weights)]
    return {"data": str(args.data), "subset": args.subset, "images": len(keep), "threshold": args.threshold,
            "niou_empty": args.niou_empty, "legacy_fa": bool(args.legacy_fa), "ci": args.ci,
            "resamples": args.bootstrap, "seed": args.seed,
            "models": [{"name": n, **src, **s.result(), "intervals": {k: iv._asdict() for k, iv in fd.items()}}
                       for n, src, s, fd in zip(names, sources, scorers, found)],
            "pairs": pairs}


def run(args) -> int:
    """The ``istd compare`` subcommand."""
    from ..metrics import bootstrap
    from .data import ISTDDataset
    from .outputs import check_new_files, write_json
    names = _check_args(args)
    ds = ISTDDataset(args.data, args.subset, args.layout, args.split)
    keep, scorers, predicted = _score_all(ds, names, args)
    named = list(zip(names, scorers))
    found = [bootstrap(count_table(s.rows, args.niou_empty), n_resamples=args.bootstrap, ci=args.ci, seed=args.seed)
             for s in scorers]
    _models_table(named, found, len(keep), args)
    pairs = [_pair(a, b, args) for a, b in itertools.combinations(named, 2)]
    for pair in pairs:
        _print_pair(pair, args)
    print(f"verdicts: A > B when A scores better (higher {', '.join(UNITS[k][0] for k in ('iou', 'niou', 'pd'))}, "
          f"lower Fa) and the {100 * args.ci:g} % interval of the difference excludes 0")
    if args.out and args.overlays:
        folders = [Path(args.out) / f"{_safe(p['a'])}_vs_{_safe(p['b'])}" for p in pairs]
        check_new_files([f / name for p, f in zip(pairs, folders) for name in _overlay_names(p, args)], "--out",
                        args.overwrite)
        _write_overlays(pairs, ds, predicted, folders, args)
        print(f"wrote {sum(len(p['overlays']) for p in pairs)} overlay(s) to {Path(args.out).resolve()}")
    if args.json:
        write_json(Path(args.json), _result(args, names, keep, scorers, found, pairs), "--json")
        print(f"wrote {args.json}")
    return 0
