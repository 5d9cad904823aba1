"""``istd evaluate`` on saved predictions (``--pred``), the comparison table, per-image rows,
worst-image overlays, batch independence and the one-line errors (CPU, tiny data).

Data come from ``istd synth`` or are written here as small hand-made masks whose scores are
known; weights are freshly initialised tiny models saved as istd checkpoints (no training:
evaluation does not care whether a model is good).
"""

import json

import cv2
import numpy as np
import pytest
import torch
from cli_helpers import assert_one_line_error, cli, tiny_synth

from istd_kernels.cli.networks import FORMAT_VERSION, TINY_MODEL_CONFIG, build_model
from istd_kernels.cli.overlay import draw_overlay
from istd_kernels.metrics.reference import reference_metrics

LCR = ["--model", "lcrnet", "--tiny"]


def save_weights(path, name="lcrnet", seed=0, drop=None):
    torch.manual_seed(seed)
    net = build_model(name, TINY_MODEL_CONFIG[name])
    ckpt = {"format_version": FORMAT_VERSION, "model": name, "model_config": TINY_MODEL_CONFIG[name],
            "model_state": net.state_dict()}
    if drop:
        del ckpt[drop]
    torch.save(ckpt, path)
    return path


def write_set(root, name, masks, images=None):
    """A BasicIRSTD data set whose test split is ``masks`` (dict id -> bool array)."""
    d = root / name
    for sub in ("images", "masks", "img_idx"):
        (d / sub).mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for i, m in masks.items():
        img = images[i] if images else (rng.integers(0, 120, m.shape) + 100 * m).astype(np.uint8)
        cv2.imwrite(str(d / "images" / f"{i}.png"), img)
        cv2.imwrite(str(d / "masks" / f"{i}.png"), m.astype(np.uint8) * 255)
    (d / "img_idx" / f"train_{name}.txt").write_text("\n".join(masks) + "\n")
    (d / "img_idx" / f"test_{name}.txt").write_text("\n".join(masks) + "\n")
    return d


def write_preds(folder, maps, ext=".png"):
    folder.mkdir(parents=True, exist_ok=True)
    for i, m in maps.items():
        if ext == ".npy":
            np.save(folder / f"{i}.npy", m)
        elif ext == ".npz":
            np.savez(folder / f"{i}.npz", pred=m)
        else:
            assert cv2.imwrite(str(folder / f"{i}{ext}"), m)
    return folder


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    return tiny_synth(tmp_path_factory)


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    return save_weights(tmp_path_factory.mktemp("w") / "lcr.pt")


def _known_masks():
    """Ground truth and a prediction with hand-checked scores."""
    t = {k: np.zeros((16, 20), bool) for k in ("a", "b", "c")}
    p = {k: np.zeros((16, 20), bool) for k in ("a", "b", "c")}
    t["a"][2:4, 2:4] = True          # found
    p["a"][2:4, 2:4] = True
    p["a"][10:12, 10:12] = True      # a false alarm of the same area: legacy Fa does not count it
    t["b"][5:7, 15:17] = True        # missed
    return t, p                      # "c": nothing to find, nothing found


# --------------------------------------------------------------------- saved predictions

def test_pred_folder_equals_model_path(synth, weights, tmp_path, capsys):
    """istd predict writes masks; scoring them equals scoring the checkpoint directly."""
    rc, out, _ = cli(capsys, "predict", *LCR, "--weights", weights, "--out", tmp_path / "p", synth / "images")
    assert rc == 0
    rc, _, _ = cli(capsys, "evaluate", *LCR, "--weights", weights, "--data", synth, "--json", tmp_path / "m.json")
    assert rc == 0
    rc, out, _ = cli(capsys, "evaluate", "--pred", tmp_path / "p", "--data", synth, "--json", tmp_path / "p.json")
    assert rc == 0
    assert "8-bit image 0-255 (divided by 255)" in out and "match no id" in out   # train ids reported
    m, p = json.loads((tmp_path / "m.json").read_text()), json.loads((tmp_path / "p.json").read_text())
    assert m["images"] == p["images"] == 4
    assert m["counts"] == p["counts"]
    for k in ("iou", "niou", "pd", "fa"):
        assert m[k] == p[k], k


def test_known_scores_and_conventions(tmp_path, capsys):
    t, p = _known_masks()
    d = write_set(tmp_path, "known", t)
    preds = write_preds(tmp_path / "p", {k: v.astype(np.uint8) * 255 for k, v in p.items()})
    rc, out, _ = cli(capsys, "evaluate", "--pred", preds, "--data", d, "--json", tmp_path / "r.json")
    assert rc == 0
    r = json.loads((tmp_path / "r.json").read_text())
    ref = reference_metrics(np.stack(list(p.values())), np.stack(list(t.values())))
    for k in ("iou", "niou", "pd", "fa"):
        assert r[k] == pytest.approx(ref[k], abs=1e-12), k
    assert (r["pd"], r["counts"]["false_pixels"], r["niou"]) == (0.5, 4, pytest.approx(0.5 / 3))
    assert "50.00" in out                                       # Pd in percent in the table
    for flag, key, want in ((["--legacy-fa"], "false_pixels", 0), (["--niou-empty", "one"], "niou", 1.5 / 3),
                            (["--niou-empty", "skip"], "niou", 0.5 / 2)):
        assert cli(capsys, "evaluate", "--pred", preds, "--data", d, "--json", tmp_path / "f.json", *flag)[0] == 0
        got = json.loads((tmp_path / "f.json").read_text())
        assert (got["counts"][key] if key in got["counts"] else got[key]) == pytest.approx(want), flag


@pytest.mark.parametrize("kind", ["prob8", "png16", "npy01", "npy255", "npz", "bool"])
def test_map_formats_and_threshold(tmp_path, capsys, kind):
    """Every file format reads to the same probabilities; > 0.5 by default, --threshold moves it."""
    t, _ = _known_masks()
    d = write_set(tmp_path, "known", t)
    prob = {k: np.where(v, 0.7, 0.3).astype(np.float32) for k, v in t.items()}   # positive iff target
    maps, ext, said = {
        "prob8": ({k: np.round(v * 255).astype(np.uint8) for k, v in prob.items()}, ".png", "8-bit"),
        "png16": ({k: np.round(v * 65535).astype(np.uint16) for k, v in prob.items()}, ".png", "16-bit"),
        "npy01": (prob, ".npy", "array 0-1"),
        "npy255": ({k: v * 255 for k, v in prob.items()}, ".npy", "array 0-255"),
        "npz": ({k: v[None, None] for k, v in prob.items()}, ".npz", "array 0-1"),
        "bool": (t, ".npy", "binary"),
    }[kind]
    preds = write_preds(tmp_path / "p", maps, ext)
    rc, out, _ = cli(capsys, "evaluate", "--pred", preds, "--data", d, "--json", tmp_path / "r.json")
    assert rc == 0 and out.count(said) == 1, out
    r = json.loads((tmp_path / "r.json").read_text())
    assert (r["iou"], r["pd"], r["fa"]) == (1.0, 1.0, 0.0)
    if kind != "bool":
        rc, _, _ = cli(capsys, "evaluate", "--pred", preds, "--data", d, "--json", tmp_path / "r.json",
                       "--threshold", "0.75")
        r = json.loads((tmp_path / "r.json").read_text())
        assert rc == 0 and (r["iou"], r["pd"]) == (0.0, 0.0)


def test_missing_and_extra_files_and_strict(tmp_path, capsys):
    t, p = _known_masks()
    d = write_set(tmp_path, "known", t)
    maps = {k: v.astype(np.uint8) * 255 for k, v in p.items() if k != "b"}
    maps["zz"] = np.zeros((16, 20), np.uint8)
    preds = write_preds(tmp_path / "p", maps)
    rc, out, _ = cli(capsys, "evaluate", "--pred", preds, "--data", d, "--json", tmp_path / "r.json")
    assert rc == 0 and "1 id(s) of the split have no prediction" in out and ": b" in out and "zz" in out
    assert json.loads((tmp_path / "r.json").read_text())["images"] == 2
    rc, _, err = cli(capsys, "evaluate", "--pred", preds, "--data", d, "--strict")
    assert_one_line_error(rc, err, "--strict", "b", "zz")


def test_compare_table_formats(tmp_path, capsys):
    t, p = _known_masks()
    d = write_set(tmp_path, "known", t)
    a = write_preds(tmp_path / "modelA", {k: v.astype(np.uint8) * 255 for k, v in p.items()})
    b = write_preds(tmp_path / "modelB", {k: v.astype(np.uint8) * 255 for k, v in t.items()})
    rc, out, _ = cli(capsys, "evaluate", "--pred", a, "--pred", b, "--data", d, "--table", tmp_path / "t.md")
    assert rc == 0
    lines = [line for line in out.splitlines() if "modelA" in line or "modelB" in line]
    assert len(lines) >= 2 and "IoU (%)" in out and "Fa (x1e-6)" in out
    md = (tmp_path / "t.md").read_text().splitlines()
    assert md[0].startswith("| predictions |") and md[1].startswith("| --- |") and len(md) == 4
    # modelB is the ground truth; its empty image scores 0 in nIoU (the reference rule)
    assert md[3].endswith("| 3 | 100.00 | 66.67 | 100.00 | 0.00 |")
    rc, out, _ = cli(capsys, "evaluate", "--pred", a, "--pred", b, "--data", d, "--table-format", "latex",
                     "--table", tmp_path / "t.tex")
    tex = (tmp_path / "t.tex").read_text()
    assert rc == 0 and "\\begin{tabular}" in tex and "IoU (\\%)" in tex and "\\begin{tabular}" in out
    rc, _, _ = cli(capsys, "evaluate", "--pred", a, "--pred", b, "--data", d, "--table", tmp_path / "t.csv")
    rows = (tmp_path / "t.csv").read_text().splitlines()
    assert rc == 0 and rows[0].startswith("predictions,images,IoU (%)") and len(rows) == 3


# ------------------------------------------------------------ per image, overlays, ROC

def test_per_image_rows_add_up_and_worst_overlays(synth, weights, tmp_path, capsys):
    rc, out, _ = cli(capsys, "evaluate", *LCR, "--weights", weights, "--data", synth, "--json", tmp_path / "r.json",
                     "--per-image", tmp_path / "rows.csv", "--worst", 2, "--overlay-dir", tmp_path / "worst")
    assert rc == 0 and str((tmp_path / "worst").resolve()) in out
    import csv
    rows = list(csv.DictReader((tmp_path / "rows.csv").open()))
    r = json.loads((tmp_path / "r.json").read_text())
    assert len(rows) == 4
    for key in ("intersection", "union", "detected", "targets", "false_pixels"):
        assert sum(int(x[key]) for x in rows) == r["counts"][key], key
    for x in rows:
        assert int(x["detected"]) + int(x["missed"]) == int(x["targets"])
        assert int(x["pred_components"]) >= int(x["detected"])
    pictures = sorted((tmp_path / "worst").iterdir())
    assert len(pictures) == 2 and pictures[0].name.startswith("001_")
    worst_id = pictures[0].stem.split("_", 1)[1]
    assert min(float(x["iou"] or 1) for x in rows) == float(next(x for x in rows if x["id"] == worst_id)["iou"] or 1)
    img = cv2.imread(str(pictures[0]))
    assert img.shape[1] >= 256 and img.shape[0] > 256      # enlarged, with a legend strip


def test_overlay_legend_colours_and_identical_note():
    grey = np.full((32, 32), 90, np.uint8)
    pred, truth = np.zeros((32, 32), bool), np.zeros((32, 32), bool)
    pred[4:6, 4:6] = True
    truth[20:23, 20:23] = True
    pic, legend = draw_overlay(grey, pred, truth, ["title"])
    body = pic[:256]
    red = (body[..., 2] > 200) & (body[..., 1] < 50)
    green = (body[..., 1] > 150) & (body[..., 2] < 50)
    assert red.any() and green.any()
    assert legend[0] == "title" and any("ground truth, 1 target" in x for x in legend)
    assert not any("identical" in x for x in legend)
    _, legend = draw_overlay(grey, np.zeros((32, 32), bool), np.zeros((32, 32), bool), [])
    assert any("identical to the input" in x for x in legend)
    _, legend = draw_overlay(grey, np.ones((32, 32), bool), None, [])
    assert any("whole frame" in x for x in legend) and not any("ground truth" in x for x in legend)


def test_roc_from_probability_maps(tmp_path, capsys):
    t, _ = _known_masks()
    d = write_set(tmp_path, "known", t)
    preds = write_preds(tmp_path / "p", {k: np.where(v, 0.7, 0.3).astype(np.float32) for k, v in t.items()}, ".npy")
    rc, out, _ = cli(capsys, "evaluate", "--pred", preds, "--data", d, "--roc", tmp_path / "roc.png")
    assert rc == 0 and (tmp_path / "roc.png").stat().st_size > 0
    rows = (tmp_path / "roc.csv").read_text().splitlines()
    pd_at = {float(r.split(",")[0]): float(r.split(",")[3]) for r in rows[1:]}
    assert pd_at[0.5] == 1.0 and pd_at[0.95] == 0.0


# --------------------------------------------------------------------- batch independence

def test_model_path_does_not_depend_on_batch_size(tmp_path, weights, capsys):
    """Mixed image sizes: batches of 1, 2 and 3 give the same counts (padding used to change them)."""
    rng = np.random.default_rng(3)
    masks, images = {}, {}
    for k, (h, w) in enumerate([(32, 32), (24, 40), (32, 32), (40, 24), (24, 40), (32, 32)]):
        m = np.zeros((h, w), bool)
        m[h // 2:h // 2 + 2, w // 3:w // 3 + 2] = True
        masks[f"m{k}"] = m
        images[f"m{k}"] = (rng.integers(0, 200, (h, w)) + 55 * m).astype(np.uint8)
    d = write_set(tmp_path, "mixed", masks, images)
    results = []
    for b in (1, 2, 3):
        rc, _, _ = cli(capsys, "evaluate", *LCR, "--weights", weights, "--data", d, "--batch-size", b,
                       "--json", tmp_path / f"b{b}.json")
        assert rc == 0
        results.append(json.loads((tmp_path / f"b{b}.json").read_text()))
    for r in results[1:]:
        assert r["counts"] == results[0]["counts"]
        assert r["niou"] == pytest.approx(results[0]["niou"], rel=1e-12)


# ------------------------------------------------------------------------------ errors

def _err(capsys, *argv):
    return cli(capsys, "evaluate", *argv)


def test_error_size_mismatch(tmp_path, capsys):
    t, p = _known_masks()
    d = write_set(tmp_path, "known", t)
    preds = write_preds(tmp_path / "p", {k: np.zeros((16, 21), np.uint8) for k in t})
    rc, _, err = _err(capsys, "--pred", preds, "--data", d)
    assert_one_line_error(rc, err, preds / "a.png", "21x16", "20x16")


@pytest.mark.parametrize("case", ["garbage_png", "negative", "nan", "too_large", "npz_two", "shape", "pickle"])
def test_error_unreadable_or_wrong_prediction(tmp_path, capsys, case):
    t, _ = _known_masks()
    d = write_set(tmp_path, "known", t)
    preds = tmp_path / "p"
    preds.mkdir()
    bad = preds / ("a.npz" if case == "npz_two" else "a.png" if case == "garbage_png" else "a.npy")
    if case == "garbage_png":
        bad.write_bytes(b"\x89PNG not really")
    elif case == "npz_two":
        np.savez(bad, x=np.zeros((16, 20)), y=np.zeros((16, 20)))
    elif case == "pickle":
        np.save(bad, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    else:
        value = {"negative": -1.0, "nan": np.nan, "too_large": 300.0, "shape": 0.0}[case]
        np.save(bad, np.full((2, 16, 20) if case == "shape" else (16, 20), value, np.float32))
    rc, _, err = _err(capsys, "--pred", preds, "--data", d)
    assert_one_line_error(rc, err, bad)


def test_error_empty_or_missing_pred_folder(tmp_path, capsys):
    t, _ = _known_masks()
    d = write_set(tmp_path, "known", t)
    (tmp_path / "empty").mkdir()
    rc, _, err = _err(capsys, "--pred", tmp_path / "empty", "--data", d)
    assert_one_line_error(rc, err, tmp_path / "empty", "no prediction")
    assert_one_line_error(*_err(capsys, "--pred", tmp_path / "ghost", "--data", d)[::2], tmp_path / "ghost")
    write_preds(tmp_path / "other", {"x": np.zeros((16, 20), np.uint8)})
    assert_one_line_error(*_err(capsys, "--pred", tmp_path / "other", "--data", d)[::2], "no file is named")


def test_error_outputs_and_arguments(synth, weights, tmp_path, capsys):
    (tmp_path / "afile").write_text("x")
    cases = [
        (["--json", tmp_path], ["--json", "folder"]),
        (["--json", tmp_path / "afile" / "r.json"], ["--json", "afile"]),
        (["--workers", "-1"], ["--workers", ">= 0"]),
        (["--batch-size", "0"], ["--batch-size"]),
        (["--threshold", "1.5"], ["--threshold"]),
        (["--backend", "bogus"], ["--backend", "bogus", "torch"]),
    ]
    for extra, names in cases:
        rc, _, err = _err(capsys, *LCR, "--weights", weights, "--data", synth, *extra)
        assert_one_line_error(rc, err, *names)
    assert not [p for p in tmp_path.rglob("*") if "tmp" in p.name]
    rc, _, err = _err(capsys, "--pred", tmp_path, "--weights", weights, "--data", synth)
    assert_one_line_error(rc, err, "--pred", "--weights")
    rc, _, err = _err(capsys, "--data", synth)
    assert_one_line_error(rc, err, "--pred", "--weights")


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without a CUDA GPU")
def test_error_cuda_backend_on_cpu_machine(synth, weights, tmp_path, capsys):
    rc, _, err = _err(capsys, *LCR, "--weights", weights, "--data", synth, "--backend", "cuda")
    assert_one_line_error(rc, err, "--backend cuda")
    rc, _, err = cli(capsys, "predict", *LCR, "--weights", weights, "--out", tmp_path / "o", "--backend", "cuda",
                     synth / "images" / "00000.png")
    assert_one_line_error(rc, err, "--backend cuda")


def test_error_checkpoint_without_model_state(synth, tmp_path, capsys):
    bad = save_weights(tmp_path / "bad.pt", drop="model_state")
    rc, _, err = _err(capsys, *LCR, "--weights", bad, "--data", synth)
    assert_one_line_error(rc, err, bad, "model_state")
    rc, _, err = cli(capsys, "predict", *LCR, "--weights", bad, "--out", tmp_path / "o", synth / "images")
    assert_one_line_error(rc, err, bad, "model_state")
