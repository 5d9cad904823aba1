"""The one timing helper and peak-bandwidth table (istd_kernels/tools/timing.py) and their users."""

import pytest

from istd_kernels.tools import timing
from istd_kernels.tools.gpu_check import env
from istd_kernels.tools.gpu_check import timing as gpu_timing


def test_gpu_check_uses_the_one_timing_helper_and_table():
    assert gpu_timing.time_call is timing.time_call
    assert env.peak_bandwidth is timing.peak_bandwidth


def test_benchmarks_use_the_one_timing_helper_and_table():
    import pathlib
    bench = pathlib.Path(__file__).resolve().parents[1] / "benchmarks"
    utils, hlk = (bench / "bench_utils.py").read_text(), (bench / "test_hlk_bench.py").read_text()
    assert "from istd_kernels.tools.timing import time_call" in utils and "perf_counter" not in utils
    assert "peak_bandwidth" in hlk and "PEAK_BW" not in hlk


def test_time_call_on_the_cpu_without_a_deadline():
    out = timing.time_call(lambda: sum(range(100)), "cpu", repeats=3, warmup=1)
    assert out["samples"] == 3 and out["min_ms"] <= out["median_ms"] and out["timer"] == "time.perf_counter"


@pytest.mark.parametrize("kwargs,match", [(dict(device="gpu"), "device"), (dict(repeats=0), "repeats"),
                                          (dict(repeats=True), "repeats")])
def test_time_call_rejects_bad_arguments(kwargs, match):
    args = dict(device="cpu", repeats=2, warmup=0) | kwargs
    with pytest.raises(ValueError, match=match):
        timing.time_call(lambda: None, **args)


def test_peak_bandwidth_table_puts_specific_names_first():
    names = [key for key, _ in timing.PEAK_BW_TABLE]
    for i, key in enumerate(names):
        assert not any(key in later for later in names[i + 1:]), f"{key!r} would shadow a later, longer name"
