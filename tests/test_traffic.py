"""The memory-traffic model against hand counts, and the benchmark report table."""

import pytest

from istd_kernels.tools import report, traffic


def test_fused_forward_reads_x_once_and_writes_y_once():
    t = traffic.hlk_conv(8, 16, 512, 512, 7, dtype_bytes=4, fused=True)
    plane = 8 * 512 * 512 * 4
    weights = (16 * (9 + 1) + 16 * (9 + 1) + 16 * (32 + 1)) * 4
    assert t.kernels == 1
    assert t.read == 16 * plane + weights and t.written == 16 * plane


def test_unfused_forward_hand_count():
    # conv0 x->a, conv_spatial a->d, cat (a,d)->cat, conv1 cat->y: 6C read, 5C written (C = Cout).
    c, plane = 4, 2 * 10 * 10 * 2
    t = traffic.hlk_conv(2, c, 10, 10, 7, dtype_bytes=2, fused=False)
    assert t.kernels == 4
    weights = (c * 9 + c) * 2 + (c * 9 + c) * 2 + (c * 2 * c + c) * 2
    assert t.read == 6 * c * plane + weights
    assert t.written == 5 * c * plane


@pytest.mark.parametrize("c,side", traffic.LCRNET_LEVELS)
def test_lcrnet_ratios(c, side):
    rows = {r[2]: r for r in traffic.lcrnet_table() if r[:2] == (c, side)}
    assert rows["forward"][5] == pytest.approx(2 / 11, rel=0.01)  # (C + C) / (6C + 5C)
    assert rows["saved"][5] == pytest.approx(0.25)
    assert rows["backward"][5] < 0.35


def test_bad_direction():
    with pytest.raises(ValueError, match="direction must be"):
        traffic.hlk_conv(1, 1, 1, 1, direction="sideways")


def test_report_table_has_bandwidth_column():
    data = {"datetime": "2026-11-21T00:00:00", "benchmarks": [
        {"name": "a", "group": "g", "stats": {"median": 0.002},
         "extra_info": {"impl": "cpp", "images_per_s": 4000.0, "speedup": 1.5, "device": "cpu",
                        "modeled_GBps": 12.5, "fraction_of_peak_bw": 0.25}},
        {"name": "b", "group": "g", "stats": {"median": 0.003}, "extra_info": {"impl": "torch", "device": "cpu"}},
    ]}
    text = report.markdown(data)
    assert "| g | cpp | 2.00 | 4000.0 | 1.50x | 12.5 (25 % of peak) |" in text
    assert "| g | torch | 3.00 |  |  |  |" in text


def test_dlc_attention_model():
    un = traffic.dlc_attention(8, 16, 512, 512, fused=False)
    fu = traffic.dlc_attention(8, 16, 512, 512, fused=True)
    # v, transform, score HLK, one pooling kernel, four branch HLKs, one split attention.
    assert fu.kernels == 9
    assert fu.total < 0.25 * un.total


def test_fused_dlc_attention_dispatches_far_fewer_ops():
    import torch

    from istd_kernels import use_backend
    from istd_kernels.nn import DLCAttention
    from istd_kernels.tools.launches import count_launches

    torch.manual_seed(0)
    module = DLCAttention(16)
    x = torch.randn(1, 16, 16, 16)
    counts = {}
    for backend in ("torch", "triton"):
        with use_backend(backend), torch.no_grad():
            counts[backend] = count_launches(lambda: module(x))
    fused = counts["triton"]
    assert fused["istd::hlk_conv"] == 5 and fused["istd::multiscale_maxpool"] == 1
    assert fused["istd::split_attention"] == 1
    assert sum(fused.values()) <= 12 < 40 <= sum(counts["torch"].values())
