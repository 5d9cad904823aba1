"""``istd evaluate --metrics ... --thresholds K``: the extra metrics' table and JSON equal
the metrics computed directly, and bad flags are one-line errors."""

import json

import numpy as np
import pytest
import torch
from cli_helpers import assert_one_line_error, cli
from test_cli_evaluate import write_preds, write_set

from istd_kernels.metrics.bundle import ExtraMetrics


def _scene(tmp_path):
    rng = np.random.default_rng(0)
    masks, maps = {}, {}
    for i in range(3):
        m = np.zeros((24, 24), bool)
        for _ in range(3):
            r, c = rng.integers(2, 22, 2)
            m[r - 1:r + 2, c - 1:c + 1] = True
        masks[f"im{i}"] = m
        maps[f"im{i}"] = np.clip(m * rng.uniform(0.3, 1, m.shape) + (rng.random(m.shape) < 0.05) * 0.4, 0, 1
                                 ).astype(np.float32)
    return write_set(tmp_path, "s", masks), write_preds(tmp_path / "p", maps, ".npy"), masks, maps


def test_all_metrics_table_and_json(tmp_path, capsys):
    d, preds, masks, maps = _scene(tmp_path)
    rc, out, _ = cli(capsys, "evaluate", "--pred", preds, "--data", d, "--metrics", "all", "--thresholds", "4",
                     "--json", tmp_path / "r.json")
    assert rc == 0
    r = json.loads((tmp_path / "r.json").read_text())
    assert r["thresholds"] == [0.0, 0.25, 0.5, 0.75]
    direct = ExtraMetrics(("all",), thresholds=r["thresholds"])
    for k in sorted(masks):
        direct.update(torch.from_numpy(maps[k])[None], torch.from_numpy(masks[k])[None])
    want = direct.compute()
    assert set(r["metrics"]) == set(want)
    for k, v in want.items():
        assert r["metrics"][k] == pytest.approx(v.tolist() if hasattr(v, "tolist") else v, abs=1e-12), k
    for row in ("opdc_pd (%)", "shooting_fa (x1e-6)", "hiou (%)", "loc_pcp_err (%)", "ap (%)"):
        assert row in out, row
    assert "> 0.75" in out


def test_one_metric_at_the_threshold(tmp_path, capsys):
    d, preds, _, _ = _scene(tmp_path)
    rc, out, _ = cli(capsys, "evaluate", "--pred", preds, "--data", d, "--metrics", "hiou", "--threshold", "0.3",
                     "--json", tmp_path / "r.json")
    assert rc == 0
    r = json.loads((tmp_path / "r.json").read_text())
    assert r["thresholds"] == [0.3] and len(r["metrics"]["hiou"]) == 1
    assert "opdc_pd" not in out and "> 0.3" in out


@pytest.mark.parametrize("flags, name", [(["--metrics", "iou,bogus"], "--metrics"), (["--thresholds", "0"],
                                                                                      "--thresholds")])
def test_bad_flags(tmp_path, capsys, flags, name):
    d, preds, _, _ = _scene(tmp_path)
    assert_one_line_error(*cli(capsys, "evaluate", "--pred", preds, "--data", d, *flags)[::2], name)
