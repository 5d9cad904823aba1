"""``istd compare`` (paired bootstrap of saved predictions) and ``istd evaluate --ci`` on
small synthetic sets: identical folders, a planted difference, undefined metrics, the JSON,
the overlays and the one-line errors."""

import json
import re

import cv2
import numpy as np
import pytest
from cli_helpers import assert_one_line_error, cli, tiny_synth

NAN = re.compile(r"\bnan\b", re.IGNORECASE)   # a NaN printed as a figure (not "DNANet" in a warning)


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    return tiny_synth(tmp_path_factory, n=80)      # 40 test images of 32x32


def split_ids(synth):
    return (synth / "img_idx" / "test_tiny.txt").read_text().split()


def masks_as_predictions(synth, folder, spoil=()):
    """The ground truth as 0/255 PNGs (a perfect model); the ids in ``spoil`` get an empty map."""
    folder.mkdir()
    for i in split_ids(synth):
        mask = cv2.imread(str(synth / "masks" / f"{i}.png"), cv2.IMREAD_GRAYSCALE)
        assert cv2.imwrite(str(folder / f"{i}.png"), np.zeros_like(mask) if i in spoil else mask)
    return folder


@pytest.fixture(scope="module")
def folders(synth, tmp_path_factory):
    root = tmp_path_factory.mktemp("preds")
    ids = split_ids(synth)
    spoiled = ids[::3]                                  # 14 of 40 images: 35 %
    return {"good": masks_as_predictions(synth, root / "good"),
            "same": masks_as_predictions(synth, root / "same"),
            "bad": masks_as_predictions(synth, root / "bad", spoiled)}


def compare(capsys, synth, *argv):
    return cli(capsys, "compare", "--data", synth, "--bootstrap", "500", *argv)


def test_identical_folders_differ_by_nothing(capsys, synth, folders, tmp_path):
    rc, out, err = compare(capsys, synth, "--pred", folders["good"], "--pred", folders["same"],
                           "--json", tmp_path / "r.json")
    assert rc == 0, err
    pair = json.loads((tmp_path / "r.json").read_text())["pairs"][0]
    for name, m in pair["metrics"].items():
        assert m["diff"] == 0 and m["low"] <= 0 <= m["high"] and m["p_value"] == 1.0, name
        assert m["verdict"] == "no significant difference at 95 %"
    assert pair["iou"] == {"a_better": 0, "b_better": 0, "equal": 40}
    assert out.count("no significant difference at 95 %") == 4


def test_a_planted_difference_is_significant(capsys, synth, folders, tmp_path):
    out_dir = tmp_path / "ov"
    rc, out, err = compare(capsys, synth, "--pred", folders["bad"], "--pred", folders["good"], "--names", "B", "A",
                           "--json", tmp_path / "r.json", "--out", out_dir, "--overlays", "2", "--top", "4")
    assert rc == 0, err
    result = json.loads((tmp_path / "r.json").read_text())
    pair = result["pairs"][0]
    for name in ("iou", "niou", "pd"):
        m = pair["metrics"][name]
        assert m["high"] < 0 and m["p_value"] < 0.05 and m["verdict"] == "A > B", name
    assert pair["metrics"]["fa"]["verdict"] == "no significant difference at 95 %"
    assert pair["iou"]["b_better"] == 14 and pair["iou"]["a_better"] == 0
    assert pair["detected"]["b_better"] == 14
    spoiled = set(split_ids(synth)[::3])
    assert len(pair["most_different"]) == 4 and {d["id"] for d in pair["most_different"]} <= spoiled
    assert [m["name"] for m in result["models"]] == ["B", "A"]
    assert result["models"][1]["iou"] == 1.0 and result["models"][1]["intervals"]["iou"]["low"] == 1.0
    pngs = sorted((out_dir / "B_vs_A").glob("*.png"))
    assert len(pngs) == 2 and pair["overlays"] == [str(p) for p in pngs]
    picture = cv2.imread(str(pngs[0]))
    assert picture.shape[1] >= 2 * 256      # both models side by side
    assert "IoU (%)" in out and "A > B" in out and "wrote 2 overlay(s)" in out


def test_three_folders_give_three_pairs(capsys, synth, folders, tmp_path):
    rc, out, err = compare(capsys, synth, *(x for f in folders.values() for x in ("--pred", f)),
                           "--json", tmp_path / "r.json")
    assert rc == 0, err
    pairs = json.loads((tmp_path / "r.json").read_text())["pairs"]
    assert [(p["a"], p["b"]) for p in pairs] == [("good", "same"), ("good", "bad"), ("same", "bad")]


def test_evaluate_ci_prints_and_writes_intervals(capsys, synth, folders, tmp_path):
    rc, out, err = cli(capsys, "evaluate", "--data", synth, "--pred", folders["bad"], "--ci", "0.9",
                       "--bootstrap", "300", "--seed", "3", "--json", tmp_path / "r.json")
    assert rc == 0, err
    block = json.loads((tmp_path / "r.json").read_text())["intervals"]
    assert (block["ci"], block["resamples"], block["seed"]) == (0.9, 300, 3)
    iou = block["iou"]
    assert iou["low"] < iou["value"] < iou["high"]
    assert f"IoU {100 * iou['value']:.2f} [{100 * iou['low']:.2f}, {100 * iou['high']:.2f}]" in out


def empty_set(root):
    """A BasicIRSTD set of 4 images without targets, and a folder of empty predictions."""
    d = root / "empty"
    for sub in ("images", "masks", "img_idx", "pred"):
        (d / sub).mkdir(parents=True)
    ids = [f"e{i}" for i in range(4)]
    for i in ids:
        for sub in ("images", "masks", "pred"):
            cv2.imwrite(str(d / sub / f"{i}.png"), np.zeros((16, 16), np.uint8))
    for split in ("train", "test"):
        (d / "img_idx" / f"{split}_empty.txt").write_text("\n".join(ids) + "\n")
    return d


def test_no_targets_and_no_positives_are_undefined(capsys, tmp_path):
    d = empty_set(tmp_path)
    rc, out, err = cli(capsys, "evaluate", "--data", d, "--pred", d / "pred", "--ci", "0.95", "--bootstrap", "100",
                       "--niou-empty", "skip", "--json", tmp_path / "r.json")
    assert rc == 0, err
    block = json.loads((tmp_path / "r.json").read_text())["intervals"]
    for name in ("iou", "niou", "pd"):      # nIoU: every image is skipped as empty
        assert (block[name]["value"], block[name]["low"], block[name]["high"]) == (None, None, None), name
    assert "IoU undefined" in out and "Pd undefined" in out and not NAN.search(out)
    rc, out, err = cli(capsys, "compare", "--data", d, "--pred", d / "pred", "--pred", d / "pred", "--names", "x", "y",
                       "--bootstrap", "100")
    assert rc == 0, err
    assert "undefined" in out and not NAN.search(out)


def test_out_never_replaces_what_it_did_not_write(capsys, synth, folders, tmp_path):
    # An --out inside an input folder, or the data set's masks/, is refused before scoring.
    for out in (folders["bad"] / "cmp", synth / "masks"):
        rc, _, err = compare(capsys, synth, "--pred", folders["good"], "--pred", folders["bad"], "--out", out)
        assert_one_line_error(rc, err, "--out", "choose another --out")
    argv = ("--pred", folders["good"], "--pred", folders["bad"], "--out", tmp_path / "cmp")
    assert compare(capsys, synth, *argv)[0] == 0
    written = sorted((tmp_path / "cmp" / "good_vs_bad").iterdir())
    assert len(written) == 3
    # A second run would replace the first run's overlays: refused unless --overwrite.
    rc, _, err = compare(capsys, synth, *argv)
    assert_one_line_error(rc, err, "--out", "--overwrite")
    assert compare(capsys, synth, *argv, "--overwrite")[0] == 0


def test_folders_with_different_images(capsys, synth, folders, tmp_path):
    partial = masks_as_predictions(synth, tmp_path / "partial")
    gone = split_ids(synth)[5]
    (partial / f"{gone}.png").unlink()
    rc, _, err = compare(capsys, synth, "--pred", folders["good"], "--pred", partial)
    assert_one_line_error(rc, err, "--pred", partial, gone, "same images")


@pytest.mark.parametrize("argv, names", [
    (["--ci", "1.5"], ["--ci", "between 0 and 1"]),
    (["--ci", "0"], ["--ci"]),
    (["--bootstrap", "50"], ["--bootstrap", "100"]),
    (["--names", "one"], ["--names", "one per --pred folder"]),
])
def test_bad_options(capsys, synth, folders, argv, names):
    rc, _, err = cli(capsys, "compare", "--data", synth, "--pred", folders["good"], "--pred", folders["bad"], *argv)
    assert_one_line_error(rc, err, *names)


def test_one_folder_is_not_a_comparison(capsys, synth, folders):
    rc, _, err = cli(capsys, "compare", "--data", synth, "--pred", folders["good"])
    assert_one_line_error(rc, err, "two models", "istd evaluate")


@pytest.mark.parametrize("argv, name", [(["--ci", "2"], "--ci"), (["--ci", "0.9", "--bootstrap", "10"], "--bootstrap")])
def test_evaluate_bad_bootstrap_options(capsys, synth, folders, argv, name):
    rc, _, err = cli(capsys, "evaluate", "--data", synth, "--pred", folders["good"], *argv)
    assert_one_line_error(rc, err, name)


def save_weights(path, seed=0):
    """A freshly initialised tiny LCRNet as an istd checkpoint (evaluation does not need a good model)."""
    import torch

    from istd_kernels.cli.networks import FORMAT_VERSION, TINY_MODEL_CONFIG, build_model
    torch.manual_seed(seed)
    net = build_model("lcrnet", TINY_MODEL_CONFIG["lcrnet"])
    torch.save({"format_version": FORMAT_VERSION, "model": "lcrnet", "model_config": TINY_MODEL_CONFIG["lcrnet"],
                "model_state": net.state_dict()}, path)
    return path


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    return tiny_synth(tmp_path_factory, n=4)       # 2 test images: the network runs on each


@pytest.mark.slow   # 5 forward passes of the tiny LCRNet: about a minute on the shared CPU
def test_weights_against_their_own_saved_predictions(capsys, small, tmp_path):
    weights = save_weights(tmp_path / "w.pt")
    test_images = [small / "images" / f"{i}.png" for i in split_ids(small)]
    rc, _, err = cli(capsys, "predict", "--model", "lcrnet", "--weights", weights, "--out", tmp_path / "p",
                     *test_images)
    assert rc == 0, err
    rc, out, err = cli(capsys, "compare", "--data", small, "--pred", tmp_path / "p", "--model", "lcrnet",
                       "--weights", weights, "--names", "saved", "live", "--bootstrap", "100",
                       "--json", tmp_path / "r.json", "--out", tmp_path / "ov", "--overlays", "1")
    assert rc == 0, err
    result = json.loads((tmp_path / "r.json").read_text())
    assert result["models"][1]["weights"] == str(weights) and result["models"][0]["predictions"] == str(tmp_path / "p")
    assert result["models"][0]["counts"] == result["models"][1]["counts"]
    for m in result["pairs"][0]["metrics"].values():
        assert m["diff"] in (0, None) and m["p_value"] in (1.0, None)
    assert len(list((tmp_path / "ov" / "saved_vs_live").glob("*.png"))) == 1


def test_weights_need_every_image_and_one_model_each(capsys, small, synth, folders, tmp_path):
    weights = save_weights(tmp_path / "w.pt")
    rc, _, err = cli(capsys, "compare", "--data", small, "--weights", weights, "--weights", weights,
                     "--model", "lcrnet")
    assert_one_line_error(rc, err, "one --model per --weights")
    partial = masks_as_predictions(synth, tmp_path / "partial")
    gone = split_ids(synth)[0]
    (partial / f"{gone}.png").unlink()
    rc, _, err = cli(capsys, "compare", "--data", synth, "--pred", partial, "--model", "lcrnet", "--weights", weights)
    assert_one_line_error(rc, err, partial, gone, "--weights")
