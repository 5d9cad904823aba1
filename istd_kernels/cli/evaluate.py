"""``istd evaluate``: IoU, nIoU, Pd and Fa (docs/metrics.md §2-§4) of a model's weights, or of any model's
saved predictions (``--pred DIR``, several for a comparison table), on a data set split.

Both paths score through one :class:`~.scoring.Scorer`: a pixel is positive when its
probability is > ``--threshold`` (0.5), Pd/Fa match centroids closer than 3 px.

- Weights: images are batched only with images of their own size (no padding), so the
  numbers do not depend on ``--batch-size``. images/s counts the forward passes only (data
  loading excluded), synchronised on CUDA.
- Saved predictions: files matched to the split's ids by stem (see :mod:`.predictions` for
  the formats and how 0-255 maps are detected); ids without a prediction and files without
  an id are reported (``--strict`` makes either an error).

Outputs: the console table, ``--json``, ``--roc`` (PNG + CSV), ``--per-image`` CSV (one row
per image), ``--worst K`` overlays, ``--table`` (the comparison as md/latex/csv). Every file
is written whole or not at all (:mod:`.outputs`).
"""

from __future__ import annotations

import csv
import io
from collections import Counter
from pathlib import Path

import torch

from . import CLIError
from .checks import check_at_least, load_inference_model
from .compare import PAPER_HEADER, paper_row, render_table
from .intervals import check_bootstrap_args, report_intervals
from .outputs import check_output_folder, check_output_path, write_json, write_text, write_via_temp
from .runtime import Progress
from .scoring import ROW_FIELDS, Scorer, score_model, size_grouped
from .suite import parse_metrics, report_suite_intervals, suite_rows


def _check_args(args) -> None:
    if args.pred and (args.weights or args.model):
        raise CLIError("give either --pred (saved predictions) or --model with --weights, not both")
    if not args.pred and not (args.model and args.weights):
        raise CLIError("give --model and --weights to evaluate a model, or --pred DIR to evaluate saved predictions")
    check_at_least("--batch-size", args.batch_size, 1)
    check_at_least("--workers", args.workers, 0)
    check_at_least("--worst", args.worst, 1)
    check_at_least("--thresholds", args.thresholds, 1)
    parse_metrics(args.metrics)
    check_bootstrap_args(args)
    if not 0 < args.threshold < 1:
        raise CLIError(f"--threshold must be a probability strictly between 0 and 1; got {args.threshold}")
    if args.pred and len(args.pred) > 1 and (args.roc or args.worst):
        raise CLIError("--roc and --worst take one --pred folder (or --weights); run them per folder")
    for flag in ("json", "roc", "per_image", "table"):
        if getattr(args, flag):
            check_output_path(getattr(args, flag), "--" + flag.replace("_", "-"))
    if args.worst:
        check_output_folder(args.overlay_dir, "--overlay-dir")


def _scorer(args, logits: bool) -> Scorer:
    return Scorer(args.threshold, logits, args.legacy_fa, args.niou_empty, roc=bool(args.roc),
                  components=bool(args.per_image or args.worst), metrics=parse_metrics(args.metrics),
                  thresholds=args.thresholds)


def _score_predictions(folder: str, ds, args):
    """Score one prediction folder; returns (scorer, {id: prediction file})."""
    from .data import read_mask
    from .predictions import describe_kinds, index_folder, match_ids, read_prediction
    ids = [p[0] for p in ds.pairs]
    matched = match_ids(ids, index_folder(folder), folder, args.strict)
    if matched.missing:
        print(f"{folder}: {len(matched.missing)} id(s) of the split have no prediction and are not scored: "
              f"{', '.join(matched.missing[:10])}{' ...' if len(matched.missing) > 10 else ''}")
    if matched.extra:
        print(f"{folder}: {len(matched.extra)} file(s) match no id of the split and are ignored: "
              f"{', '.join(matched.extra[:10])}{' ...' if len(matched.extra) > 10 else ''}")
    scorer, kinds, progress = _scorer(args, False), Counter(), Progress(f"evaluate {folder}", len(matched.pairs))
    for done, (k, path) in enumerate(matched.pairs, 1):
        ident, _, mask_path = ds.pairs[k]
        prob, kind = read_prediction(path, args.pred_scale)
        mask = read_mask(mask_path)
        if prob.shape != mask.shape:
            raise CLIError(f"prediction {path} is {prob.shape[1]}x{prob.shape[0]} but its mask {mask_path} is "
                           f"{mask.shape[1]}x{mask.shape[0]}; expected equal sizes")
        kinds[kind] += 1
        scorer.update(torch.from_numpy(prob), torch.from_numpy(mask), ident)
        progress.step(done, 1)
    print(f"{folder}: read {describe_kinds(kinds)}; positive where probability > {args.threshold:g}")
    return scorer, {ds.pairs[k][0]: path for k, path in matched.pairs}


def _score_weights(net, device, ds, args):
    """Score ``net`` on ``ds``; returns (scorer, images/s)."""
    from torch.utils.data import DataLoader
    items = DataLoader(ds, batch_size=None, shuffle=False, num_workers=args.workers)
    scorer = _scorer(args, True)
    seconds = score_model(net, size_grouped(items, args.batch_size), device, args.amp, scorer,
                          Progress(f"evaluate {args.model}", len(ds)))
    return scorer, (len(ds) / seconds if seconds > 0 else float("nan"))


def _write_per_image(path: str, named_scorers) -> None:
    """One row per image and folder: the basic counts, then every key of the selected suite."""
    out = io.StringIO()
    w = csv.writer(out, lineterminator="\n")
    suite = [s.extra_columns() if s.extra else ([], [[] for _ in s.rows]) for _, s in named_scorers]
    w.writerow(["predictions", *ROW_FIELDS, *suite[0][0]])
    for (name, scorer), (_, cells) in zip(named_scorers, suite):
        for r, extra in zip(scorer.rows, cells):
            w.writerow([name, *("" if r[f] is None else (f"{r[f]:.6f}" if f == "iou" else r[f]) for f in ROW_FIELDS),
                        *extra])
    write_text(Path(path), out.getvalue(), "--per-image")
    print(f"wrote {path}")


def _write_roc(name: str, scorer: Scorer, png: Path, data: str) -> None:
    write_via_temp(png.with_suffix(".csv"), scorer.roc.save_csv, "--roc")
    try:
        write_via_temp(png, lambda path: scorer.roc.plot(path, model=name, data=data), "--roc")
    except ImportError as e:
        raise CLIError(f"--roc {png} needs matplotlib to draw the plot (the CSV "
                       f"{png.with_suffix('.csv')} was written)") from e
    print(f"wrote {png} and {png.with_suffix('.csv')}")


def _write_worst(scorer: Scorer, ds, args, predicted) -> None:
    """Overlays of the ``--worst`` images; ``predicted(id, grey)`` gives the bool prediction map."""
    from .data import read_grey, read_mask
    from .outputs import write_image
    from .overlay import draw_overlay
    folder = Path(args.overlay_dir)
    by_id = {p[0]: p for p in ds.pairs}
    rows = scorer.worst(args.worst)
    for rank, row in enumerate(rows, 1):
        ident, image_path, mask_path = by_id[row["id"]]
        grey = read_grey(image_path)
        iou = "-" if row["iou"] is None else f"{100 * row['iou']:.1f} %"
        notes = [f"#{rank} {ident}: IoU {iou}",
                 f"{row['detected']}/{row['targets']} detected, {row['false_pixels']} false px"]
        picture = draw_overlay(grey, predicted(ident, grey), read_mask(mask_path), notes)[0]
        name = f"{rank:03d}_{str(ident).replace('/', '_')}.png"
        write_image(folder / name, picture, "--overlay-dir")
    print(f"wrote {len(rows)} overlay(s) of the worst images to {folder.resolve()}")


def _finish(args, result, named_scorers, ds, predicted) -> None:
    """The files every path may write: JSON, ROC, per-image CSV, worst-image overlays; and
    first the table of the metrics beyond the basic four, if any were asked for."""
    for name, scorer in named_scorers:
        if scorer.extra:
            print(f"{name}:\n{render_table(suite_rows(scorer.result()['metrics'], scorer.sweep), 'text')}")
    if args.json:
        write_json(Path(args.json), result, "--json")
        print(f"wrote {args.json}")
    if args.roc:
        _write_roc(*named_scorers[0], Path(args.roc), f"{Path(args.data).name} ({len(ds)} test images)")
    if args.per_image:
        _write_per_image(args.per_image, named_scorers)
    if args.worst:
        _write_worst(named_scorers[0][1], ds, args, predicted)


def _intervals(named_scorers, args) -> list[dict]:
    """``--ci``: print the intervals of each scorer (the suite's too); their JSON blocks."""
    blocks = report_intervals(named_scorers, args)
    report_suite_intervals(named_scorers, args, blocks)
    return blocks


def _dataset(args):
    from .data import ISTDDataset
    from .masks import survey_masks
    ds = ISTDDataset(args.data, args.subset, args.layout, args.split)
    survey_masks([p[2] for p in ds.pairs], args.data)  # warnings before the scores
    return ds


def _run_weights(args) -> int:
    net, device = load_inference_model(args)  # before the data: a wrong --weights is named first
    ds = _dataset(args)
    scorer, images_per_s = _score_weights(net, device, ds, args)
    result = {"model": args.model, "weights": str(args.weights), "data": str(args.data), "subset": args.subset,
              "threshold": args.threshold, "niou_empty": args.niou_empty, "legacy_fa": bool(args.legacy_fa),
              **scorer.result(), "images_per_s": images_per_s, "device": str(device)}
    header = ["model", "data", "images", "IoU (%)", "nIoU (%)", "Pd (%)", "Fa (x1e-6)", "images/s"]
    row = [args.model, f"{Path(args.data).name} ({args.subset})", *paper_row(args.model, result)[1:],
           f"{images_per_s:.1f}"]
    print(render_table([header, row], "text"))
    if args.ci:
        result["intervals"] = _intervals([(args.model, scorer)], args)[0]

    def predicted(ident, grey):
        from .data import image_tensor
        with torch.no_grad():
            logits = net(image_tensor(grey)[None].to(device), return_logits=True).float()
        return (logits[0, 0] > scorer.cut).cpu().numpy()

    _finish(args, result, [(args.model, scorer)], ds, predicted)
    return 0


def _run_predictions(ds, args) -> int:
    from .predictions import read_prediction
    results, named, files = [], [], {}
    for folder in args.pred:
        scorer, files = _score_predictions(folder, ds, args)
        results.append({"predictions": str(folder), "data": str(args.data), "subset": args.subset,
                        "threshold": args.threshold, "niou_empty": args.niou_empty,
                        "legacy_fa": bool(args.legacy_fa), **scorer.result()})
        named.append((str(folder), scorer))
    rows = [PAPER_HEADER, *(paper_row(name, r) for (name, _), r in zip(named, results))]
    print(render_table(rows, args.table_format or "text"))
    if args.table:
        fmt = args.table_format or {".md": "md", ".tex": "latex", ".csv": "csv"}.get(Path(args.table).suffix, "md")
        write_text(Path(args.table), render_table(rows, fmt) + "\n", "--table")
        print(f"wrote {args.table} ({fmt})")
    if args.ci:
        for r, block in zip(results, _intervals(named, args)):
            r["intervals"] = block

    def predicted(ident, grey):
        return read_prediction(files[ident], args.pred_scale)[0] > args.threshold

    result = results[0] if len(results) == 1 else {"data": str(args.data), "subset": args.subset, "results": results}
    _finish(args, result, named, ds, predicted)
    return 0


def run(args) -> int:
    """The ``istd evaluate`` subcommand."""
    _check_args(args)
    return _run_predictions(_dataset(args), args) if args.pred else _run_weights(args)
