"""Issue 28, the third fault probe: the CLI never overwrites what it did not write, reads every
mask format by one rule, refuses hostile checkpoint configs, runs large frames in tiles, keeps
split-file ids inside the data root and ends on SIGTERM like on Ctrl-C. Each test failed before
its fix (CPU, tiny models, 32x32 images; weights are freshly initialised, not trained)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from cli_helpers import assert_one_line_error, cli, tiny_synth
from torch import nn

from istd_kernels.cli import CLIError
from istd_kernels.cli.networks import FORMAT_VERSION, TINY_MODEL_CONFIG, build_model

LCR = ["--model", "lcrnet", "--tiny"]
REPO = Path(__file__).resolve().parents[1]


def save_weights(path, name="lcrnet", config=None, state=True):
    torch.manual_seed(0)
    ckpt = {"format_version": FORMAT_VERSION, "model": name, "model_config": config or TINY_MODEL_CONFIG[name],
            "model_state": build_model(name, TINY_MODEL_CONFIG[name]).state_dict() if state else {}}
    torch.save(ckpt, path)
    return path


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return tiny_synth(tmp_path_factory, n=4)


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    return save_weights(tmp_path_factory.mktemp("w") / "lcr.pt")


def snapshot(folder):
    return {p: p.read_bytes() for p in sorted(Path(folder).rglob("*")) if p.is_file()}


# ------------------------------------------------------------- 1. nothing overwritten

def test_predict_into_its_input_folder_is_refused_and_the_inputs_survive(data, weights, tmp_path, capsys):
    import shutil
    folder = tmp_path / "in"
    shutil.copytree(data / "images", folder)
    before = snapshot(folder)
    rc, _, err = cli(capsys, "predict", *LCR, "--weights", weights, "--out", folder, folder)
    assert_one_line_error(rc, err, "--out", "input folder")
    rc, _, err = cli(capsys, "predict", *LCR, "--weights", weights, "--out", folder / "sub", folder)
    assert_one_line_error(rc, err, "--out", "lies inside", "input folder")
    rc, _, err = cli(capsys, "predict", *LCR, "--weights", weights, "--out", folder, folder / "00000.png")
    assert_one_line_error(rc, err, "--out", "00000.png")
    assert snapshot(folder) == before


@pytest.mark.parametrize("sub", ["masks", "images", "masks/deeper", "."])
def test_predict_into_a_data_set_folder_is_refused(sub, data, weights, tmp_path, capsys):
    before = snapshot(data)
    rc, _, err = cli(capsys, "predict", *LCR, "--weights", weights, "--out", data / sub, tmp_path / "x.png")
    assert rc == 2  # the missing input is named first: nothing is read or written
    cv2.imwrite(str(tmp_path / "x.png"), np.zeros((32, 32), np.uint8))
    rc, _, err = cli(capsys, "predict", *LCR, "--weights", weights, "--out", data / sub, tmp_path / "x.png")
    assert_one_line_error(rc, err, "--out", "data set folder")
    assert snapshot(data) == before


def test_predict_replaces_existing_files_only_with_overwrite(data, weights, tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "00000.png").write_bytes(b"someone else's file")
    image = data / "images" / "00000.png"
    rc, _, err = cli(capsys, "predict", *LCR, "--weights", weights, "--out", out, image)
    assert_one_line_error(rc, err, "00000.png", "already exists", "--overwrite")
    assert (out / "00000.png").read_bytes() == b"someone else's file" and not (out / "targets.json").exists()
    rc, _, _ = cli(capsys, "predict", *LCR, "--weights", weights, "--out", out, "--overwrite", image)
    assert rc == 0 and cv2.imread(str(out / "00000.png"), cv2.IMREAD_UNCHANGED).shape == (32, 32)


def test_train_refuses_a_data_folder_and_another_runs_checkpoints(data, tmp_path, capsys):
    rc, _, err = cli(capsys, "train", *LCR, "--data", data, "--out", data / "masks", "--epochs", "1")
    assert_one_line_error(rc, err, "--out", "masks")
    run = tmp_path / "run"
    run.mkdir()
    (run / "last.pt").write_bytes(b"another run")
    rc, _, err = cli(capsys, "train", *LCR, "--data", data, "--out", run, "--epochs", "1")
    assert_one_line_error(rc, err, "last.pt", "already exists", "--overwrite")
    assert (run / "last.pt").read_bytes() == b"another run"


def test_synth_refuses_to_replace_a_data_set_without_overwrite(data, capsys):
    before = snapshot(data)
    rc, _, err = cli(capsys, "synth", "--out", data.parent, "--name", data.name, "--n", "4", "--size", "32",
                     "--seed", "7")
    assert_one_line_error(rc, err, "already exists", "--overwrite")
    assert snapshot(data) == before


# ------------------------------------------------------------------- 2. mask rule

def _palette_png(path, indices, palette):
    from PIL import Image
    im = Image.fromarray(indices.astype(np.uint8), mode="P")
    im.putpalette([v for colour in palette for v in colour] + [0] * (768 - 3 * len(palette)))
    im.save(path)


def _mask_files(folder, m):
    """The same binary mask ``m`` in every format of the issue; returns their paths."""
    files = {}
    for name, arr in {"u8_01": m.astype(np.uint8), "u8_0255": m.astype(np.uint8) * 255,
                      "u8_0128": m.astype(np.uint8) * 128, "u16_01": m.astype(np.uint16),
                      "u16_065535": m.astype(np.uint16) * 65535}.items():
        files[name] = folder / f"{name}.png"
        assert cv2.imwrite(str(files[name]), arr)
    red = np.zeros((*m.shape, 3), np.uint8)
    red[m] = (0, 0, 255)  # BGR: pure red
    files["rgb_red"] = folder / "rgb_red.png"
    cv2.imwrite(str(files["rgb_red"]), red)
    files["palette_red"] = folder / "palette_red.png"
    _palette_png(files["palette_red"], m, [(0, 0, 0), (255, 0, 0)])
    # index 0 white, index 1 black: the index, not the colour, says what is target
    files["palette_inverted"] = folder / "palette_inverted.png"
    _palette_png(files["palette_inverted"], m, [(255, 255, 255), (0, 0, 0)])
    return files


def test_every_mask_format_gives_the_same_binary_mask(tmp_path):
    from istd_kernels.cli.masks import read_mask
    m = np.zeros((12, 16), bool)
    m[2:4, 3:6] = True
    m[9, 14] = True
    for name, path in _mask_files(tmp_path, m).items():
        assert np.array_equal(read_mask(path), m), name


def _set_with_masks(root, masks: dict):
    """A BasicIRSTD set whose test split holds ``masks`` (id -> uint8/uint16 array as stored)."""
    d = root / "set"
    for sub in ("images", "masks", "img_idx"):
        (d / sub).mkdir(parents=True)
    for i, m in masks.items():
        cv2.imwrite(str(d / "images" / f"{i}.png"), np.full(m.shape, 90, np.uint8))
        cv2.imwrite(str(d / "masks" / f"{i}.png"), m)
    for split in ("train", "test"):
        (d / "img_idx" / f"{split}_set.txt").write_text("\n".join(masks) + "\n")
    return d


def test_evaluate_reads_0_1_masks_and_scores_the_truth_perfectly(tmp_path, capsys):
    m = np.zeros((16, 16), np.uint8)
    m[4:6, 4:6] = 1
    d = _set_with_masks(tmp_path, {"a": m, "b": np.roll(m, 5, axis=1).astype(np.uint16)})
    rc, out, _ = cli(capsys, "evaluate", "--data", d, "--pred", d / "masks", "--json", tmp_path / "r.json")
    assert rc == 0, out
    r = json.loads((tmp_path / "r.json").read_text())
    assert r["iou"] == 1.0 and r["pd"] == 1.0 and r["fa"] == 0.0
    assert "warning" not in out


def test_multi_valued_masks_warn_once_per_data_set(tmp_path, capsys):
    soft = np.zeros((16, 16), np.uint8)
    soft[4:6, 4:6], soft[3, 3] = 255, 100
    d = _set_with_masks(tmp_path, {"a": soft, "b": soft.copy()})
    rc, out, _ = cli(capsys, "evaluate", "--data", d, "--pred", d / "masks")
    assert rc == 0
    warnings = [ln for ln in out.splitlines() if ln.startswith("istd: warning:")]
    assert len(warnings) == 1 and "more than two distinct values" in warnings[0], out
    assert "any nonzero pixel is target" in warnings[0]


def test_all_empty_masks_warn_before_scoring_and_training(tmp_path, capsys):
    d = _set_with_masks(tmp_path, {"a": np.zeros((16, 16), np.uint8), "b": np.zeros((16, 16), np.uint8)})
    rc, out, _ = cli(capsys, "evaluate", "--data", d, "--pred", d / "masks")
    assert rc == 0
    assert "istd: warning: all 2 masks" in out and out.index("are empty") < out.index("IoU")
    rc, out, _ = cli(capsys, "train", *LCR, "--data", d, "--out", tmp_path / "run", "--epochs", "1",
                     "--workers", "0", "--batch-size", "2")
    assert rc == 0 and out.index("are empty") < out.index("epoch 1/1")


# -------------------------------------------------------- 3. hostile checkpoint configs

@pytest.fixture
def refuse_big_models(monkeypatch):
    """Building a model (with real weights: the meta device allocates nothing) from an unchecked
    config fails the test at once (it would hang or exhaust memory), so the tests fail fast
    where the check is missing."""
    import models

    real_lcr, real_rrca = models.LCRNet.__init__, models.RRCANet.__init__

    def real():
        return torch.get_default_device().type != "meta"

    def lcr(self, *a, channels=(16,), depths=(1,), **k):
        big = sum(c * c * (2 * d + 1) for c, d in zip(channels, depths)) >= 10 ** 8
        assert not (big and real()), "LCRNet built from an unchecked config"
        real_lcr(self, *a, channels=channels, depths=depths, **k)

    def rrca(self, *a, iterations=2, **k):
        assert not (iterations > 16 and real()), "RRCANet built from an unchecked config"
        real_rrca(self, *a, iterations=iterations, **k)

    monkeypatch.setattr(models.LCRNet, "__init__", lcr)
    monkeypatch.setattr(models.RRCANet, "__init__", rrca)


@pytest.mark.parametrize("name,config,names", [
    ("rrcanet", {"backbone": "resnet18", "iterations": 10 ** 7}, ["iterations", "10000000", "16"]),
    ("lcrnet", {"channels": [200000] * 4, "depths": [1] * 4}, ["channels", "200000", "1024"]),
    ("lcrnet", {"channels": "16,16", "depths": [1, 1]}, ["channels", "'16,16'"]),
    ("rrcanet", {"backbone": "resnet18", "iterations": True}, ["iterations", "True"]),
    ("rrcanet", {"backbone": ["resnet18"], "iterations": 1}, ["backbone"]),
    ("lcrnet", {"channels": [16] * 40, "depths": [1] * 40}, ["channels", "6 entries"]),
    ("lcrnet", {"channels": [1024] * 6, "depths": [16] * 6}, ["parameters"]),
])
def test_checkpoint_configs_are_checked_before_anything_is_built(name, config, names, data, tmp_path, capsys,
                                                                 refuse_big_models):
    f = save_weights(tmp_path / "hostile.pt", name, config, state=False)
    rc, _, err = cli(capsys, "evaluate", "--model", name, "--weights", f, "--data", data)
    assert_one_line_error(rc, err, f"invalid {name} configuration", *names)


def test_allocation_failure_is_one_line_naming_the_size_and_the_way_out(data, weights, tmp_path, capsys,
                                                                         monkeypatch):
    import models

    def no_memory(self, x, return_logits=False):
        raise RuntimeError("[enforce fail at alloc_cpu.cpp:117] data. DefaultCPUAllocator: can't allocate memory: "
                           "you tried to allocate 160000000000 bytes. Error code 12 (Cannot allocate memory)")

    monkeypatch.setattr(models.LCRNet, "forward", no_memory)
    rc, _, err = cli(capsys, "predict", *LCR, "--weights", weights, "--out", tmp_path / "p", data / "images")
    assert_one_line_error(rc, err, "out of memory", "160,000,000,000 bytes", "--tile", "--batch-size")
    rc, _, err = cli(capsys, "evaluate", *LCR, "--weights", weights, "--data", data)
    assert_one_line_error(rc, err, "out of memory", "--tile")


# ------------------------------------------------------------------------ 4. tiles

class ConvStack(nn.Module):
    """A small fully convolutional network with the networks' shape: stride-4 U-turn, zero
    padding to its multiple; receptive field radius 1 + 2 + 4 + 4 + 2 + 1 < 16 px."""

    multiple = 4

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.body = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 8, 2, stride=2),
                                  nn.Conv2d(8, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 2, stride=2),
                                  nn.Conv2d(8, 8, 3, padding=1), nn.ConvTranspose2d(8, 8, 2, stride=2), nn.ReLU(),
                                  nn.ConvTranspose2d(8, 4, 2, stride=2), nn.Conv2d(4, 1, 3, padding=1))

    def forward(self, x, return_logits=False):
        from models._input import check_and_pad
        x, h, w = check_and_pad(x, 1, self.multiple)
        logits = self.body(x)[:, :, :h, :w]
        return logits if return_logits else torch.sigmoid(logits)


def test_tiled_output_equals_the_whole_frame_when_the_receptive_field_fits():
    from istd_kernels.cli.tiling import FrameRunner
    net = ConvStack().eval()
    x = torch.rand(2, 1, 40, 53)
    with torch.no_grad():
        whole = net(x, return_logits=True)
        tiled = FrameRunner(net, tile=48, overlap=16)(x, return_logits=True)
        torch.testing.assert_close(tiled, whole, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(FrameRunner(net, tile=48, overlap=16)(x), torch.sigmoid(whole))
        # without context the seams differ: the comparison above can fail
        assert not torch.allclose(FrameRunner(net, tile=16, overlap=0)(x, return_logits=True), whole, atol=1e-3)


@pytest.mark.parametrize("tile,overlap,names", [(30, None, ["--tile", "multiple of 4"]),
                                                (16, 6, ["--tile-overlap", "multiple of 4"]),
                                                (16, 8, ["--tile-overlap", "[0, 4]"])])
def test_bad_tile_flags_name_the_stride_multiple(tile, overlap, names):
    from istd_kernels.cli.tiling import FrameRunner
    with pytest.raises(CLIError) as e:
        FrameRunner(ConvStack(), tile, overlap)
    for n in names:
        assert n in str(e.value)


def test_predict_and_evaluate_run_in_tiles(data, weights, tmp_path, capsys):
    image = data / "images" / "00000.png"
    assert cli(capsys, "predict", *LCR, "--weights", weights, "--out", tmp_path / "whole", image)[0] == 0
    # a tile as large as the frame is the whole frame
    assert cli(capsys, "predict", *LCR, "--weights", weights, "--out", tmp_path / "big", "--tile", "64", image)[0] == 0
    assert (tmp_path / "big" / "00000.png").read_bytes() == (tmp_path / "whole" / "00000.png").read_bytes()
    rc, _, _ = cli(capsys, "predict", *LCR, "--weights", weights, "--out", tmp_path / "t", "--tile", "24",
                   "--tile-overlap", "4", image)  # 2 x 2 windows
    assert rc == 0 and cv2.imread(str(tmp_path / "t" / "00000.png"), cv2.IMREAD_UNCHANGED).shape == (32, 32)
    rc, out, _ = cli(capsys, "evaluate", *LCR, "--weights", weights, "--data", data, "--tile", "24",
                     "--tile-overlap", "4")
    assert rc == 0 and "IoU (%)" in out


def test_a_frame_above_the_limit_asks_for_tiles(data, weights, tmp_path, capsys, monkeypatch):
    from istd_kernels.cli import tiling
    monkeypatch.setattr(tiling, "MAX_FRAME_PIXELS", 24 * 24)
    rc, _, err = cli(capsys, "predict", *LCR, "--weights", weights, "--out", tmp_path / "p", data / "images")
    assert_one_line_error(rc, err, "32x32", "--tile")
    rc, _, err = cli(capsys, "evaluate", *LCR, "--weights", weights, "--data", data)
    assert_one_line_error(rc, err, "32x32", "--tile")
    assert cli(capsys, "predict", *LCR, "--weights", weights, "--out", tmp_path / "t", "--tile", "24",
               "--tile-overlap", "4", data / "images" / "00000.png")[0] == 0


# ------------------------------------------------------------- 5. ids stay inside

@pytest.fixture
def escaping_set(data, tmp_path):
    """A copy of the data set next to an ``outside`` folder holding a secret image and mask."""
    import shutil
    d = tmp_path / "sets" / "tiny"
    shutil.copytree(data, d)
    outside = tmp_path / "outside"
    outside.mkdir()
    for name in ("secret.png", "secret_link_target.png"):
        shutil.copy(data / "masks" / "00000.png", outside / name)
    return d, outside


@pytest.mark.parametrize("kind", ["dotdot", "absolute", "symlink"])
def test_split_ids_that_leave_the_data_root_are_errors(kind, escaping_set, capsys):
    d, outside = escaping_set
    if kind == "dotdot":
        ident = "../../../outside/secret"
    elif kind == "absolute":
        ident = str(outside / "secret")
    else:
        ident = "evil"
        for sub in ("images", "masks"):
            os.symlink(outside / "secret_link_target.png", d / sub / "evil.png")
    (d / "img_idx" / "test_tiny.txt").write_text(f"00000\n{ident}\n")
    rc, _, err = cli(capsys, "evaluate", "--data", d, "--pred", d / "masks")
    assert_one_line_error(rc, err, repr(ident), "outside" if kind == "symlink" else "leaves the data set")


# ------------------------------------------------------------------------ 7. SIGTERM

_TERM_AFTER_FIRST_EPOCH = """
import os, signal, sys
from istd_kernels.cli import train
real = train._finish_epoch
def finish(*a, **k):
    row = real(*a, **k)
    os.kill(os.getpid(), signal.SIGTERM)
    return row
train._finish_epoch = finish
from istd_kernels.cli.main import main
sys.exit(main(sys.argv[1:]))
"""


def test_sigterm_during_train_prints_a_message_exits_143_and_keeps_the_checkpoints(data, tmp_path):
    run = tmp_path / "run"
    proc = subprocess.run([sys.executable, "-c", _TERM_AFTER_FIRST_EPOCH, "train", *LCR, "--data", str(data),
                           "--out", str(run), "--epochs", "3", "--workers", "0", "--batch-size", "2"],
                          cwd=REPO, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 143, (proc.returncode, proc.stderr[-2000:])
    assert proc.stderr.strip().splitlines()[-1] == "istd: terminated (SIGTERM)"
    last = torch.load(run / "last.pt", weights_only=True)
    assert last["epoch"] == 1 and torch.load(run / "best.pt", weights_only=True)["epoch"] == 1
    assert [r["epoch"] for r in json.loads((run / "log.json").read_text())["epochs"]] == [1]
