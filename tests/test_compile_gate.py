"""The compile gate's verdicts, on canned compiler output (CI also runs the real gate)."""

import pytest

from istd_kernels.tools import compile_check, nvcc_gate, triton_gate
from istd_kernels.tools.gate_report import failures, make_row

PTXAS = """\
ptxas info    : 0 bytes gmem
ptxas info    : Compiling entry function '_Z9good_kernPf' for 'sm_86'
ptxas info    : Function properties for _Z9good_kernPf
    0 bytes stack frame, 0 bytes spill stores, 0 bytes spill loads
ptxas info    : Used 40 registers, 384 bytes smem, 360 bytes cmem[0]
ptxas info    : Function properties for _Z6helperv
    16 bytes stack frame, 8 bytes spill stores, 8 bytes spill loads
ptxas info    : Compiling entry function '_Z8bad_kernPf' for 'sm_90'
ptxas info    : Function properties for _Z8bad_kernPf
    24 bytes stack frame, 20 bytes spill stores, 12 bytes spill loads
ptxas info    : Used 255 registers, 360 bytes cmem[0]
"""


def test_parse_ptxas_reads_each_kernel():
    stats = {s["mangled"]: s for s in nvcc_gate.parse_ptxas(PTXAS)}
    assert set(stats) == {"_Z9good_kernPf", "_Z8bad_kernPf"}  # the device function is not a kernel
    good, bad = stats["_Z9good_kernPf"], stats["_Z8bad_kernPf"]
    assert (good["arch"], good["registers"], good["smem_bytes"], good["spill_stores"]) == ("sm_86", 40, 384, 0)
    assert (bad["arch"], bad["registers"], bad["spill_stores"], bad["spill_loads"]) == ("sm_90", 255, 20, 12)


def test_failures_flag_spills_and_errors_only():
    ok = make_row("cuda", "a.cu", "k", "", "sm_86", 40, 0, 0, 0)
    spill = make_row("triton", "b.py", "k2", "BH=16", "sm_90", 255, 0, 4, 0)
    broken = make_row("cuda", "c.cu", arch="sm_86", error="nvcc exit 1: syntax error")
    assert failures([ok]) == []
    assert failures([ok, spill, broken]) == [
        "triton k2 BH=16 sm_90: spills 4 B stores / 0 B loads",
        "cuda sm_86: nvcc exit 1: syntax error",
    ]


def test_failures_flag_blocks_beyond_the_register_file():
    fits = make_row("triton", "b.py", "k", "BH=16 w8", "sm_90", 255, 0, 0, 0)      # 255 x 256 threads
    too_many = make_row("triton", "b.py", "k", "BH=16 w16", "sm_90", 251, 0, 0, 0)  # 251 x 512 threads
    assert failures([fits]) == []
    assert failures([too_many]) == [
        "triton k BH=16 w16 sm_90: 251 registers x 512 threads > the 65536-register file: every launch would fail"]


def test_main_exit_status(monkeypatch, capsys):
    rows = {"cuda": [make_row("cuda", "a.cu", "k", "", "sm_86", 40, 0, 0, 0)], "triton": []}
    monkeypatch.setattr(nvcc_gate, "check", lambda archs: rows["cuda"])
    monkeypatch.setattr(triton_gate, "check", lambda archs, **kw: rows["triton"])
    assert compile_check.main([]) == 0
    rows["triton"] = [make_row("triton", "b.py", "k2", "BH=16", "sm_90", 255, 0, 0, 8)]
    assert compile_check.main([]) == 1
    assert "FAIL triton k2 BH=16 sm_90: spills" in capsys.readouterr().out
    rows["cuda"], rows["triton"] = [], []
    assert compile_check.main([]) == 1  # compiling nothing is a failure, not a pass


def test_triton_version_check_compares_numbers():
    from istd_kernels.triton._launch import _major_minor
    assert _major_minor("3.6.0") == (3, 6)
    assert _major_minor("3.7.1+git4f2a") < (3, 8) < _major_minor("3.10.0")  # not a string comparison
    with pytest.raises(ValueError, match="MAJOR.MINOR"):
        _major_minor("main")


@pytest.mark.parametrize("before_3_7", [True, False])
def test_depthwise_configs_per_triton_version(before_3_7):
    from istd_kernels.triton import depthwise
    configs = depthwise._tile_configs(before_3_7)
    # The interpreter and ISTD_TRITON_AUTOTUNE=0 launch the first config under any Triton.
    assert configs[0].kwargs == {"BLOCK_H": 8, "BLOCK_W": 32}
    for cfg in configs:
        # A program whose threads x register cap exceed an SM's 64K registers cannot launch.
        assert cfg.num_warps * 32 * cfg.maxnreg <= 65536
        # At most 4 elements per thread (8 spill under 3.7.1 / 3.9), at most 2 under 3.6.
        per_thread = cfg.kwargs["BLOCK_H"] * cfg.kwargs["BLOCK_W"] // (cfg.num_warps * 32)
        assert per_thread <= (2 if before_3_7 else 4)
