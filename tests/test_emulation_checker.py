"""The emulation's own guarantees (docs/emulation.md): it catches a missing barrier, an
out-of-bounds shared index, hanging barriers, bad warp masks and launches beyond sm_86's
limits; warp intrinsics give the device's results; the race-checked build runs the real
kernels clean; and every __global__ kernel of csrc/cuda runs under emulation."""
from __future__ import annotations

import re

import emulation_build
import emulation_nvcc
import pytest
import torch

pytestmark = [pytest.mark.emulation,
              pytest.mark.skipif(emulation_build.compiler() is None, reason="no host C++ compiler (g++)")]

emu = pytest.importorskip("emulation_kernels")


@pytest.mark.parametrize("name,message", [
    ("missing_barrier", r"race|no thread of the block has written"),
    ("oob_shared", r"out-of-bounds shared-memory write .* byte 256 of s"),
    ("uninit_shared", r"no thread of the block has written"),
])
def test_race_checker_catches(name, message):
    with pytest.raises(emu.EmulationError, match=message):
        emu.fixture(name, "race")
    emu.fixture(name, "plain")  # the plain build does not check: the error is the checker's


def test_race_checker_passes_a_correct_kernel():
    out = emu.fixture("with_barrier", "race")
    assert out[:64] == [3 * ((t + 1) % 64) for t in range(64)]


@pytest.mark.parametrize("variant", ["plain", "race"])
@pytest.mark.parametrize("name,message", [
    ("exit_before_barrier", r"deadlock: 32 thread\(s\) exited while 32 wait at __syncthreads\(\)"),
    ("split_barrier", r"deadlock: thread \(0,0,0\) waits at __syncthreads\(\) .*fixtures.cu:\d+ but thread "
                      r"\(32,0,0\) at .*fixtures.cu:\d+"),
    ("half_warp_shfl", r"thread \(16,0,0\) is named in mask 0xffffffff of __shfl_down_sync .* has exited"),
    ("foreign_mask", r"__ballot_sync: the calling lane 1 is not in its mask"),
    ("launch_bounds", r"exceeds __launch_bounds__\(64\)"),
])
def test_hangs_and_bad_masks_fail(name, message, variant):
    with pytest.raises(emu.EmulationError, match=message):
        emu.fixture(name, variant)


@pytest.mark.parametrize("name,code", [
    ("too_many_threads", 9),     # cudaErrorInvalidConfiguration
    ("grid_y", 9),
    ("smem_48k_plus_1", 1),      # cudaErrorInvalidValue: above 48 KiB without opt-in
    ("smem_optin_too_big", 1),   # above sm_86's 99 KiB opt-in
])
def test_launch_limits(name, code):
    with pytest.raises(emu.EmulationError, match=f"cudaError_t {code}$"):
        emu.fixture(name)


def test_optin_shared_memory_launches():
    out = emu.fixture("smem_99k_optin", "race")
    assert sum(out[:64]) == sum(i % 256 for i in range(99 * 1024))


def test_warp_intrinsics():
    out = emu.fixture("warp_ops")
    for t in range(64):
        lane = t % 32
        o = out[8 * t:8 * t + 8]
        key = lane // 5
        group = sum(1 << i for i in range(32) if i // 5 == key)
        assert o[0] == 70
        assert o[1] == (lane - 3 if lane >= 3 else lane)
        assert o[2] == (lane + 3 if lane + 3 < 32 else lane)
        assert o[3] == lane ^ 5
        assert o[4] & 0xffffffff == sum(1 << i for i in range(32) if i % 3 == 0)
        assert o[5] & 0xffffffff == group
        assert o[6] == sum(i for i in range(32) if i // 5 == key)
        assert o[7] & 0xffffffff == (0x55555555 if lane % 2 == 0 else 0)


def _run_every_kernel(variant):
    """One small call of each launcher; returns the launch log."""
    emu.clear_log(variant)
    f = torch.float32
    x = torch.randn(1, 3, 9, 10, dtype=f)
    w = torch.randn(3, 1, 3, 3, dtype=f)
    y = emu.dw_fwd(x, w, None, (1, 1), (1, 1), (1, 1), variant)
    emu.dw_bwd_input(y, w, (9, 10), (1, 1), (1, 1), (1, 1), variant)
    emu.dw_bwd_weight(y, x, (3, 3), (1, 1), (1, 1), (1, 1), variant)
    emu.hlk_fwd(torch.randn(1, 2, 6, 7), torch.randn(2, 1, 3, 3), None, torch.randn(2, 1, 3, 3), None,
                torch.randn(2, 4, 1, 1), None, 2, 1, variant)
    u = torch.randn(1, 4, 6, 7)
    ys, idx = emu.mmp_fwd(u, 1, 2, (1, 2), variant)
    emu.mmp_bwd(ys, idx, u.shape, 1, 2, (1, 2), False, variant)
    branches = [torch.randn(1, 2, 6, 7), torch.randn(1, 2, 3, 4)]
    args = (branches, torch.randn(1, 2, 6, 7), torch.tensor(1.3), torch.randn(1, 2, 6, 7), torch.randn(1, 2, 6, 7))
    emu.sa_fwd(*args, 1, (1, 2), variant)
    emu.sa_bwd(torch.randn(1, 2, 6, 7), *args, 1, (1, 2), variant)
    labels, counts = emu.connected_components(torch.rand(2, 9, 11) < 0.5, 8, variant)
    emu.component_stats(labels, int(counts.max()), False, variant)
    return emu.log(variant)


def _expected_kernels():
    source = "".join(p.read_text() for p in sorted(emulation_build.CUDA_DIR.glob("*.cu")))
    names = emulation_build.global_kernels(source)
    # The rewrite's pattern must see every __global__ in the sources, or coverage is moot.
    assert len(names) == len(re.findall(r"\b__global__\b", source))
    return sorted(set(names))


@pytest.fixture(scope="module")
def ran_plain():
    """Base names of the kernels one call of every launcher ran (plain build)."""
    return sorted({sig.split(" :: ")[0] for _, sig, _, _, _ in _run_every_kernel("plain") if sig})


def test_every_global_kernel_runs_under_emulation(ran_plain):
    expected, ran = _expected_kernels(), ran_plain
    print(f"\n__global__ kernels in csrc/cuda: {len(expected)}; run under emulation: {len(ran)}")
    for k in expected:
        print(f"  {'ran ' if k in ran else 'MISSING'} {k}")
    assert ran == expected


def test_race_checked_build_runs_the_kernels_clean():
    """Every kernel once more with the shared-memory checker on; a race, an out-of-bounds
    shared access or an uninitialised shared read would raise."""
    log = _run_every_kernel("race")
    assert sorted({sig.split(" :: ")[0] for _, sig, _, _, _ in log if sig}) == _expected_kernels()


def test_emulated_kernels_are_nvccs_kernels(ran_plain):
    """The kernels run under emulation are exactly the __global__ functions nvcc emits
    (instantiations of one template count once)."""
    tool = emulation_nvcc.nvcc()
    if tool is None:
        pytest.skip("no nvcc: the emulated kernels are compared with the sources' __global__ list only")
    per_file = emulation_nvcc.entries(tool)
    demangled = [e for es in per_file.values() for e in es]
    if any(e.startswith("_Z") for e in demangled):
        pytest.skip("no c++filt to demangle nvcc's entry names")
    from_nvcc = sorted({emulation_nvcc.base_name(e) for e in demangled})
    print(f"\nnvcc ({emulation_nvcc.ARCH}): {len(demangled)} entry functions of {len(from_nvcc)} __global__ "
          f"kernels; run under emulation: {len(ran_plain)}")
    for f, es in per_file.items():
        for k in sorted({emulation_nvcc.base_name(e) for e in es}):
            n = sum(emulation_nvcc.base_name(e) == k for e in es)
            print(f"  {'ran ' if k in ran_plain else 'MISSING'} {f}: {k} ({n} instantiation(s))")
    assert ran_plain == from_nvcc
