"""istd train under faults: kills between checkpoint writes, stale temporaries, a second run, a
full disk, bad flags; damaged images; losses given 0/255 targets. Each case failed before its fix."""

import errno
import os

import cv2
import numpy as np
import pytest
import torch
from cli_helpers import assert_one_line_error, cli, tiny_synth

from istd_kernels.cli import CLIError
from istd_kernels.cli import checkpoints as ck
from istd_kernels.cli.checkpoints import RunLock, atomic_write, read_checkpoint
from istd_kernels.cli.data import read_grey
from istd_kernels.cli.runtime import Progress
from istd_kernels.losses import DiceLoss, DpTkLoss, PolyLoss, SoftIoULoss

LCR = ["--model", "lcrnet", "--tiny"]
TRAIN = ["--batch-size", "4", "--workers", "0", "--deterministic", "--seed", "3", "--log-every", "1"]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return tiny_synth(tmp_path_factory, n=6)


def train(capsys, data, out, *extra):
    return cli(capsys, "train", *LCR, "--data", data, "--out", out, "--epochs", "1", *TRAIN, *extra)


class Killed(BaseException):
    """Stands for SIGKILL: nothing after it runs, no except clause catches it."""


def kill_at_write(monkeypatch, n):
    calls = {"n": 0}
    real = os.replace

    def replace(src, dst):
        calls["n"] += 1
        if calls["n"] == n:
            raise Killed(dst)
        return real(src, dst)

    monkeypatch.setattr(ck.os, "replace", replace)


@pytest.mark.parametrize("point", [1, 2, 3])  # before last.pt, between last.pt and best.pt, before the logs
def test_kill_at_each_write_then_resume_leaves_a_consistent_pair(point, data, tmp_path, capsys, monkeypatch):
    run = tmp_path / "run"
    kill_at_write(monkeypatch, point)
    with pytest.raises(Killed):
        train(capsys, data, run)
    monkeypatch.undo()
    assert list(run.glob(".*.tmp*")), "the kill should leave the temporary file behind"
    rc, out, _ = cli(capsys, "train", *LCR, "--data", data, "--out", run, "--epochs", "1", *TRAIN, "--resume")
    assert rc == 0
    assert not list(run.glob(".*.tmp*")) and "removed 1 temporary file" in out
    last, best = torch.load(run / "last.pt", weights_only=True), torch.load(run / "best.pt", weights_only=True)
    assert best["epoch"] == last["best_epoch"] == 1
    if point == 2:
        assert "rewrote it from last.pt" in out
    if point == 1:
        assert "starting afresh" in out


def test_second_training_into_the_same_folder_is_refused(data, tmp_path, capsys):
    run = tmp_path / "run"
    with RunLock(run):
        rc, _, err = train(capsys, data, run)
    assert_one_line_error(rc, err, "another istd train", str(os.getpid()), str(run))


@pytest.mark.parametrize("flags,names", [
    (["--backend", "bogus"], ["--backend", "bogus"]),
    (["--crop", "100000"], ["--crop 100000", "32"]),
])
def test_bad_flags_are_one_line(flags, names, data, tmp_path, capsys):
    assert_one_line_error(*train(capsys, data, tmp_path / "run", *flags)[::2], *names)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU-only refusal")
def test_backend_cuda_without_a_gpu_is_one_line(data, tmp_path, capsys):
    assert_one_line_error(*train(capsys, data, tmp_path / "run", "--backend", "cuda")[::2], "--backend cuda")


def test_out_pointing_at_a_file(data, tmp_path, capsys):
    f = tmp_path / "file"
    f.write_text("x")
    assert_one_line_error(*train(capsys, data, f)[::2], "--out", "is a file")


def test_resume_checkpoint_missing_entries(data, tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    torch.save({"format_version": 1, "model": "lcrnet", "epoch": 1}, run / "last.pt")
    assert_one_line_error(*cli(capsys, "train", *LCR, "--data", data, "--out", run, *TRAIN, "--resume")[::2],
                   "not a training checkpoint", "model_state")


def test_full_disk_is_reported_and_the_partial_file_removed(tmp_path, monkeypatch):
    target = tmp_path / "last.pt"
    target.write_bytes(b"old")

    def no_space(obj, f):
        f.write(b"partial")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(ck.torch, "save", no_space)
    with pytest.raises(CLIError, match="no space left"):
        ck.save_checkpoint({}, target)
    assert target.read_bytes() == b"old" and os.listdir(tmp_path) == ["last.pt"]


def test_writes_fsync_the_file_and_its_folder(tmp_path, monkeypatch):
    synced = []
    real = os.fsync
    monkeypatch.setattr(ck.os, "fsync", lambda fd: (synced.append(os.path.realpath(f"/proc/self/fd/{fd}")),
                                                   real(fd)))
    atomic_write(tmp_path / "log.json", lambda f: f.write("{}"), mode="w")
    assert any(p.endswith(".log.json.tmp" + str(os.getpid())) for p in synced), synced
    assert str(tmp_path) in synced


def test_text_file_as_weights_says_plainly_it_is_not_a_checkpoint(tmp_path):
    p = tmp_path / "notes.txt"
    p.write_text("these are not weights\n")
    with pytest.raises(CLIError, match="is not a checkpoint") as e:
        read_checkpoint(str(p))
    assert "weights_only" not in str(e.value)


def test_progress_prints_within_an_epoch_in_logs(capsys, monkeypatch):
    monkeypatch.setattr("sys.stdout.isatty", lambda: False)
    every_step = Progress("epoch 1/1", 3, every_s=0.0)
    for step in (1, 2, 3):
        every_step.step(step, 4, "loss 0.5")
    quiet = Progress("epoch 1/1", 3, every_s=1e9)
    for step in (1, 2, 3):
        quiet.step(step, 4, "loss 0.5")
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 4 and all("img/s" in ln and " left" in ln for ln in lines), lines


@pytest.mark.parametrize("suffix,cut", [(".jpg", 0.5), (".png", 0.6)])
def test_truncated_image_is_an_error_naming_the_file(suffix, cut, tmp_path):
    path = tmp_path / f"img{suffix}"
    cv2.imwrite(str(path), (np.random.default_rng(0).random((64, 64)) * 255).astype(np.uint8))
    assert read_grey(path).shape == (64, 64)
    data = path.read_bytes()
    path.write_bytes(data[:int(len(data) * cut)])
    with pytest.raises(CLIError, match="truncated") as e:
        read_grey(path)
    assert str(path) in str(e.value)


@pytest.mark.parametrize("loss", [SoftIoULoss(), DiceLoss(), PolyLoss(), DpTkLoss()])
def test_losses_read_0_255_masks_as_0_1_and_refuse_other_ranges(loss):
    x = torch.randn(2, 1, 8, 8, requires_grad=True)
    mask = (torch.rand(2, 1, 8, 8) > 0.8).float()
    torch.testing.assert_close(loss(x, mask * 255), loss(x, mask))
    loss(x, mask * 255).backward()
    assert torch.isfinite(x.grad).all()
    with pytest.raises(ValueError, match="target"):
        loss(x, mask * 3)
    with pytest.raises(ValueError, match="target"):
        loss(x, mask - 0.5)


def test_scoring_the_test_split_needs_no_train_list(data, tmp_path):
    import shutil

    from istd_kernels.cli.data import ISTDDataset
    copy = tmp_path / "tiny"
    shutil.copytree(data, copy)
    train_list = next(copy.rglob("train*.txt"))
    train_list.unlink()
    assert len(ISTDDataset(str(copy), "test")) > 0
    with pytest.raises(CLIError, match="does not exist"):
        ISTDDataset(str(copy), "train")


@pytest.mark.parametrize("command", ["synth", "evaluate"])
def test_help_shows_every_default(command):
    import argparse

    from istd_kernels.cli.main import build_parser
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction)).choices[command]
    text = " ".join(sub.format_help().split())
    for action in sub._actions:
        if action.default not in (None, argparse.SUPPRESS, False) and action.option_strings:
            assert f"(default: {action.default})" in text, (command, action.option_strings)
