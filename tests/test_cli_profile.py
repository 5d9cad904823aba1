"""``istd profile`` on the CPU with tiny models and inputs: the counts must be the models'
own, the timing fields consistent, the per-layer table present, and each mistake one line."""

import json

import pytest
import torch
from cli_helpers import assert_one_line_error, cli

from istd_kernels.cli.networks import TINY_MODEL_CONFIG, build_model

FAST = ["--input", "1x1x32x32", "--warmup", "1", "--repeats", "3", "--device", "cpu"]


@pytest.mark.parametrize("name", ["lcrnet", "rrcanet"])
def test_profile_counts_are_the_models_own(name, tmp_path, capsys):
    from models import lcrnet, rrcanet
    rc, out, _ = cli(capsys, "profile", "--model", name, "--tiny", *FAST, "--batch", "2", "--layers", "4",
                     "--json", tmp_path / "p.json")
    assert rc == 0
    r = json.loads((tmp_path / "p.json").read_text())
    net = build_model(name, TINY_MODEL_CONFIG[name])
    counter = lcrnet.count_flops if name == "lcrnet" else rrcanet.count_flops
    assert r["macs_per_image"] == counter(net, 32, 32) > 0
    assert r["flops_per_image"] == 2 * r["macs_per_image"]
    assert r["parameters"] == sum(p.numel() for p in net.parameters())
    t = r["latency"]
    assert t["repeats"] == 3 and t["min_ms"] <= t["q1_ms"] <= t["median_ms"] <= t["q3_ms"] <= t["max_ms"]
    assert t["images_per_s"] == pytest.approx(2 / t["median_ms"] * 1e3)
    assert "peak_memory_mib" not in t and t["timer"] == "time.perf_counter"
    assert len(r["layers"]) == 4 and all(x["ms"] >= 0 and x["calls"] >= 1 for x in r["layers"])
    assert r["layers"] == sorted(r["layers"], key=lambda x: -x["ms"])
    assert "MACs per image" in out and "FLOPs per image" in out and "2 x MACs" in out and "images/s" in out


def test_profile_any_module_factory(tmp_path, capsys, monkeypatch):
    (tmp_path / "mynet.py").write_text(
        "import torch.nn as nn\n"
        "def make():\n"
        "    return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 2, 1))\n"
        "def not_a_module():\n"
        "    return 'hello'\n")
    want = 32 * 32 * (4 * 9 + 2 * 4)
    for spec in (f"{tmp_path / 'mynet.py'}:make", "mynet:make"):
        monkeypatch.syspath_prepend(str(tmp_path))
        rc, _, _ = cli(capsys, "profile", "--model", spec, *FAST, "--json", tmp_path / "p.json")
        r = json.loads((tmp_path / "p.json").read_text())
        assert rc == 0 and r["macs_per_image"] == want and r["model_class"] == "Sequential"
        assert {x["layer"] for x in r["layers"]} == {"0", "1", "2"}
    rc, _, err = cli(capsys, "profile", "--model", "mynet:not_a_module", *FAST)
    assert_one_line_error(rc, err, "mynet:not_a_module", "str", "nn.Module")


@pytest.mark.parametrize("extra,names", [
    (["--model", "lcrnet", "--input", "1x1x0x32"], ["--input"]),
    (["--model", "lcrnet", "--input", "big"], ["--input", "big"]),
    (["--model", "unet"], ["--model", "unet"]),
    (["--model", "no_such_module_xyz:f"], ["no_such_module_xyz"]),
    (["--model", "os:no_such_function"], ["no_such_function"]),
    (["--model", "lcrnet", "--batch", "0"], ["--batch"]),
    (["--model", "lcrnet", "--backend", "bogus"], ["--backend", "bogus"]),
])
def test_profile_errors(extra, names, capsys):
    rc, _, err = cli(capsys, "profile", *extra)
    assert_one_line_error(rc, err, *names)


def test_profile_json_at_a_folder(tmp_path, capsys):
    rc, _, err = cli(capsys, "profile", "--model", "lcrnet", "--tiny", *FAST, "--json", tmp_path)
    assert_one_line_error(rc, err, "--json", tmp_path)


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without a CUDA GPU")
def test_profile_cuda_on_a_cpu_machine(capsys):
    rc, _, err = cli(capsys, "profile", "--model", "lcrnet", "--tiny", "--device", "cuda")
    assert_one_line_error(rc, err, "--device cuda")
    rc, _, err = cli(capsys, "profile", "--model", "lcrnet", "--tiny", "--backend", "cuda")
    assert_one_line_error(rc, err, "--backend cuda")


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_profile_on_gpu_uses_events_and_reports_memory(tmp_path, capsys):
    rc, _, _ = cli(capsys, "profile", "--model", "lcrnet", "--input", "1x1x64x64", "--device", "cuda",
                   "--repeats", "5", "--json", tmp_path / "p.json")
    t = json.loads((tmp_path / "p.json").read_text())["latency"]
    assert rc == 0 and t["timer"] == "CUDA events" and t["peak_memory_mib"] > 0
