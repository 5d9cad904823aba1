"""The ``istd`` command-line tool end to end on tiny synthetic data (CPU, seconds).

LCRNet runs on the default backend (the cpp kernels on this CPU), so the loop also exercises
the compiled extension.
"""

import json

import cv2
import numpy as np
import pytest
import torch
from cli_helpers import assert_one_line_error, cli, tiny_synth

from istd_kernels.cli.data import ISTDDataset, resolve_layout
from istd_kernels.cli.main import main

LCR = ["--model", "lcrnet", "--tiny"]
TRAIN = ["--batch-size", "4", "--workers", "0", "--deterministic", "--seed", "3", "--log-every", "1"]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return tiny_synth(tmp_path_factory)


@pytest.fixture(scope="module")
def run1(data, tmp_path_factory):
    """A 2-epoch LCRNet run interrupted after its first epoch."""
    run = tmp_path_factory.mktemp("run")
    assert main(["train", *LCR, "--data", str(data), "--out", str(run), "--epochs", "2", "--stop-after", "1",
                 *TRAIN]) == 0
    return run


# ------------------------------------------------------------------------------ synth

def test_synth_layout_and_determinism(data, tmp_path):
    ids = [f"{i:05d}" for i in range(8)]
    train = (data / "img_idx" / "train_tiny.txt").read_text().split()
    test = (data / "img_idx" / "test_tiny.txt").read_text().split()
    assert sorted(train + test) == ids and train and test
    for i in ids:
        img = cv2.imread(str(data / "images" / f"{i}.png"), cv2.IMREAD_UNCHANGED)
        mask = cv2.imread(str(data / "masks" / f"{i}.png"), cv2.IMREAD_UNCHANGED)
        assert img.shape == mask.shape == (32, 32) and img.dtype == np.uint8
        assert set(np.unique(mask)) <= {0, 255} and 1 <= (mask > 0).sum() <= 300
        assert img.std() > 1.0  # textured, not flat
    assert main(["synth", "--out", str(tmp_path), "--name", "tiny", "--n", "8", "--size", "32", "--seed", "1"]) == 0
    for i in ids:
        for sub in ("images", "masks"):
            assert (tmp_path / "tiny" / sub / f"{i}.png").read_bytes() == (data / sub / f"{i}.png").read_bytes()
    assert main(["synth", "--out", str(tmp_path), "--name", "other", "--n", "2", "--size", "32", "--seed", "2"]) == 0
    assert (tmp_path / "other" / "images" / "00000.png").read_bytes() != (data / "images" / "00000.png").read_bytes()


# --------------------------------------------------------------------- the whole loop

def test_train_writes_checkpoints_and_logs(run1):
    ckpt = torch.load(run1 / "last.pt", weights_only=True)
    assert ckpt["format_version"] == 1 and ckpt["model"] == "lcrnet" and ckpt["epoch"] == 1
    assert ckpt["model_config"] == {"channels": [16, 16], "depths": [1, 1]}
    assert ckpt["config"]["optimizer"] == "adan" and ckpt["config"]["loss"] == "softiou"
    for key in ("model_state", "optimizer_state", "scheduler_state", "rng"):
        assert key in ckpt
    assert (run1 / "best.pt").is_file()
    assert not list(run1.glob(".*tmp*"))
    assert len((run1 / "log.csv").read_text().strip().splitlines()) == 2
    log = json.loads((run1 / "log.json").read_text())
    assert [r["epoch"] for r in log["epochs"]] == [1]
    assert {"iou", "niou", "pd", "fa", "train_loss"} <= set(log["epochs"][0])


def test_evaluate_writes_json_and_roc(run1, data, tmp_path, capsys):
    out = tmp_path / "eval.json"
    rc, stdout, _ = cli(capsys, "evaluate", *LCR, "--weights", run1 / "best.pt", "--data", data,
                        "--json", out, "--roc", tmp_path / "roc.png")
    assert rc == 0
    assert "IoU (%)" in stdout and "Fa (x1e-6)" in stdout and "images/s" in stdout
    r = json.loads(out.read_text())
    for key in ("iou", "niou", "pd", "fa", "iou_percent", "fa_x1e-6", "images_per_s", "images"):
        assert key in r
    assert r["images"] == 4 and 0 <= r["iou"] <= 1
    assert (tmp_path / "roc.png").stat().st_size > 0 and (tmp_path / "roc.csv").is_file()


def test_predict_writes_masks_overlays_and_targets(run1, data, tmp_path, capsys):
    images = [data / "images" / "00000.png", data / "images" / "00001.png"]
    rc, _, _ = cli(capsys, "predict", *LCR, "--weights", run1 / "last.pt", "--out", tmp_path, "--overlay", *images)
    assert rc == 0
    for p in images:
        m = cv2.imread(str(tmp_path / p.name), cv2.IMREAD_UNCHANGED)
        assert m.shape == (32, 32) and set(np.unique(m)) <= {0, 255}
        overlay = cv2.imread(str(tmp_path / "overlay" / p.name))
        assert overlay.shape[1] == 256 and overlay.shape[0] > 256 and overlay.shape[2] == 3   # enlarged + legend
    report = json.loads((tmp_path / "targets.json").read_text())["images"]
    entry = report[str(images[0])]
    assert entry["size"] == [32, 32]
    m = cv2.imread(str(tmp_path / "00000.png"), cv2.IMREAD_UNCHANGED)
    assert sum(t["area"] for t in entry["targets"]) == int((m > 0).sum())
    for t in entry["targets"]:
        assert len(t["centroid"]) == 2 and t["area"] >= 1


def test_resume_continues_exactly(run1, data, tmp_path, capsys):
    import shutil
    resumed = tmp_path / "resumed"
    shutil.copytree(run1, resumed)
    rc, stdout, _ = cli(capsys, "train", *LCR, "--data", data, "--out", resumed, "--resume", "--workers", "0")
    assert rc == 0 and "epoch 2/2" in stdout and "epoch 1/2" not in stdout
    ckpt = torch.load(resumed / "last.pt", weights_only=True)
    assert ckpt["epoch"] == 2
    assert [r["epoch"] for r in json.loads((resumed / "log.json").read_text())["epochs"]] == [1, 2]
    assert len((resumed / "log.csv").read_text().strip().splitlines()) == 3

    straight = tmp_path / "straight"
    assert main(["train", *LCR, "--data", str(data), "--out", str(straight), "--epochs", "2", *TRAIN]) == 0
    capsys.readouterr()
    ref = torch.load(straight / "last.pt", weights_only=True)
    assert ref["epoch"] == 2
    for k, v in ref["model_state"].items():
        assert torch.equal(v, ckpt["model_state"][k]), k
    # a finished run says so and does nothing
    rc, stdout, _ = cli(capsys, "train", *LCR, "--data", data, "--out", resumed, "--resume")
    assert rc == 0 and "already finished" in stdout


def test_rrcanet_recipe_crop_and_flip(data, tmp_path, capsys):
    run = tmp_path / "r"
    rc, _, _ = cli(capsys, "train", "--model", "rrcanet", "--tiny", "--data", data, "--out", run, "--epochs", "1",
                   "--crop", "16", "--batch-size", "4", "--workers", "0")
    assert rc == 0
    cfg = torch.load(run / "last.pt", weights_only=True)["config"]
    assert (cfg["optimizer"], cfg["loss"], cfg["scheduler"], cfg["lr"], cfg["min_lr"]) == \
        ("adagrad", "dptk", "cosine", 0.05, 1e-3)
    assert cfg["crop"] == 16 and cfg["flip"] is True and cfg["init"] == "xavier"
    rc, _, _ = cli(capsys, "evaluate", "--model", "rrcanet", "--weights", run / "best.pt", "--data", data,
                   "--batch-size", "3")
    assert rc == 0


# ---------------------------------------------------------------------------- loader

def _dnanet_set(root, name="set", split="50_50"):
    d = root / name
    (d / "images").mkdir(parents=True)
    (d / "masks").mkdir()
    (d / split).mkdir()
    rgb = np.zeros((20, 24, 3), np.uint8)
    rgb[..., 0], rgb[..., 1], rgb[..., 2] = 10, 100, 200         # BGR
    cv2.imwrite(str(d / "images" / "a.png"), rgb)
    cv2.imwrite(str(d / "images" / "b.png"), np.full((20, 24), 77, np.uint8))
    soft = np.zeros((20, 24), np.uint8)
    soft[2:4, 2:4] = 200    # target
    soft[10, 10] = 100      # a target too: any nonzero pixel is (docs/cli.md)
    cv2.imwrite(str(d / "masks" / "a.png"), soft)
    cv2.imwrite(str(d / "masks" / "b.png"), np.zeros((20, 24), np.uint8))
    (d / split / "train.txt").write_text("a\nb\n")
    (d / split / "test.txt").write_text("b\n")
    return d


def test_loader_dnanet_layout_rgb_and_soft_mask(tmp_path):
    d = _dnanet_set(tmp_path)
    lay = resolve_layout(str(d))
    assert lay.kind == "dnanet" and lay.train_list.name == "train.txt"
    ds = ISTDDataset(str(d), "train")
    x, y, ident = ds[0]
    assert ident == "a" and x.shape == y.shape == (1, 20, 24)
    grey = cv2.cvtColor(np.full((1, 1, 3), (10, 100, 200), np.uint8), cv2.COLOR_BGR2GRAY)[0, 0]
    assert torch.allclose(x, torch.full_like(x, grey / 255.0))
    assert y.sum() == 5 and set(y.unique().tolist()) == {0.0, 1.0}
    assert len(ISTDDataset(str(d), "test")) == 1


def test_loader_basicirstd_layout_and_crop(data):
    assert resolve_layout(str(data)).kind == "basicirstd"
    ds = ISTDDataset(str(data), "train", crop=40, flip=True, seed=5)
    x, y, _ = ds[0]
    assert x.shape == y.shape == (1, 40, 40)    # padded up to the crop
    ds.set_epoch(1)
    a = ds[1][0]
    assert torch.equal(a, ds[1][0])             # same epoch, same crop


def test_loader_several_dnanet_splits_need_choice(tmp_path, capsys):
    d = _dnanet_set(tmp_path)
    (d / "80_20").mkdir()
    (d / "80_20" / "train.txt").write_text("a\n")
    (d / "80_20" / "test.txt").write_text("b\n")
    rc, _, err = cli(capsys, "evaluate", "--model", "rrcanet", "--weights", d / "none.pt", "--data", d)
    assert_one_line_error(rc, err, "none.pt")   # the weights are checked first
    assert ISTDDataset(str(d), "train", split="80_20").pairs[0][0] == "a"
    with pytest.raises(Exception, match="--split"):
        resolve_layout(str(d))


# ---------------------------------------------------------------------------- errors

def test_error_wrong_data_path(tmp_path, capsys):
    missing = tmp_path / "nope" / "NAME"
    rc, _, err = cli(capsys, "train", *LCR, "--data", missing, "--out", tmp_path / "r", "--epochs", "1")
    assert_one_line_error(rc, err, missing)


def test_error_empty_split_file(tmp_path, capsys):
    d = _dnanet_set(tmp_path)
    (d / "50_50" / "train.txt").write_text("\n")
    rc, _, err = cli(capsys, "train", *LCR, "--data", d, "--out", tmp_path / "r", "--epochs", "1")
    assert_one_line_error(rc, err, d / "50_50" / "train.txt", "empty")


def test_error_mask_without_image(tmp_path, capsys):
    d = _dnanet_set(tmp_path)
    (d / "images" / "b.png").unlink()
    rc, _, err = cli(capsys, "train", *LCR, "--data", d, "--out", tmp_path / "r", "--epochs", "1")
    assert_one_line_error(rc, err, "'b'", d / "images" / "b", d / "masks" / "b.png")


def test_error_unreadable_image_in_worker(tmp_path, capsys):
    d = _dnanet_set(tmp_path)
    (d / "images" / "b.png").write_bytes(b"not a png")
    rc, _, err = cli(capsys, "train", "--model", "rrcanet", "--tiny", "--data", d, "--out", tmp_path / "r",
                     "--epochs", "1", "--workers", "1", "--crop", "16")
    assert_one_line_error(rc, err, d / "images" / "b.png")


def test_error_checkpoint_of_the_other_model(run1, data, capsys):
    rc, _, err = cli(capsys, "evaluate", "--model", "rrcanet", "--weights", run1 / "best.pt", "--data", data)
    assert_one_line_error(rc, err, run1 / "best.pt", "lcrnet", "rrcanet")


def test_error_newer_checkpoint_format(run1, data, tmp_path, capsys):
    ckpt = torch.load(run1 / "best.pt", weights_only=True)
    ckpt["format_version"] = 99
    torch.save(ckpt, tmp_path / "future.pt")
    rc, _, err = cli(capsys, "predict", *LCR, "--weights", tmp_path / "future.pt", "--out", tmp_path / "p",
                     data / "images" / "00000.png")
    assert_one_line_error(rc, err, tmp_path / "future.pt", "99", "format")


def test_error_not_a_checkpoint(data, tmp_path, capsys):
    bad = tmp_path / "bad.pt"
    bad.write_text("hello")
    rc, _, err = cli(capsys, "evaluate", *LCR, "--weights", bad, "--data", data)
    assert_one_line_error(rc, err, bad)


def test_error_unknown_model(data, tmp_path, capsys):
    rc, _, err = cli(capsys, "train", "--model", "unet", "--data", data, "--out", tmp_path / "r")
    assert_one_line_error(rc, err, "--model", "unet", "lcrnet")


def test_error_missing_predict_input(run1, tmp_path, capsys):
    rc, _, err = cli(capsys, "predict", *LCR, "--weights", run1 / "best.pt", "--out", tmp_path,
                     tmp_path / "ghost.png")
    assert_one_line_error(rc, err, tmp_path / "ghost.png")


def test_help_exits_zero(capsys):
    assert main(["--help"]) == 0
    assert "train" in capsys.readouterr().out
