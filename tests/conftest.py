"""Test setup: Triton runs in its interpreter on CPU tensors when there is no GPU.

TRITON_INTERPRET must be set before any Triton kernel is defined, hence here, before the
test modules import istd_kernels.
"""

import os

# Under pytest-xdist each worker gets an equal share of the cores: torch's intra-op pool and
# the extension's OpenMP loops would otherwise each start one thread per core in every
# worker, and 2 workers x 2 threads on 2 cores spend their time preempting each other.
# OpenMP reads OMP_NUM_THREADS once, at its first use, hence before torch is imported.
if os.environ.get("PYTEST_XDIST_WORKER_COUNT"):
    _share = max(1, (os.cpu_count() or 1) // int(os.environ["PYTEST_XDIST_WORKER_COUNT"]))
    os.environ.setdefault("OMP_NUM_THREADS", str(_share))

import torch  # noqa: E402

if os.environ.get("PYTEST_XDIST_WORKER_COUNT"):
    torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

import re  # noqa: E402

import pytest  # noqa: E402

# The slow tier (docs/testing.md): cases left out of the quick tier, `file::test[params]` with
# `*` for any text, each with why. Seconds are from `pytest tests --durations=0` (2-core
# machine, loaded, 2026-12-04): the quick tier keeps for every op and backend the borders, odd
# sizes, dilation, each dtype once, gradcheck of every reference, one interpreter run per
# Triton kernel and path, the CLI loop and the oracles. Whole test functions that are slow by
# nature carry `pytest.mark.slow` in their own file instead (hypothesis at full counts,
# planted bugs).
SLOW = {
    # whole networks and layers under the Triton interpreter (the ops' kernels run in the quick tier)
    "test_lcrnet.py::test_backends_give_the_same_model[triton]": "LCRNet under the interpreter, 282 s",
    "test_dlc.py::test_blocks_match_torch_backend[triton]": "DLC blocks under the interpreter, 46 s",
    "test_accelerate.py::test_outputs_and_gradients_match[*-triton]": "whole models under the interpreter, 90 s",
    "test_nn_depthwise.py::test_drop_in_for_conv2d[kwargs[123]-triton]": "more layer configs, interpreter",
    # opcheck and gradcheck drive a kernel through hundreds of calls; the interpreter makes each slow
    "test_hlk_conv.py::test_opcheck[triton]": "opcheck under the interpreter, 143 s",
    "test_depthwise.py::test_opcheck[triton]": "opcheck under the interpreter, 42 s",
    "test_multiscale_maxpool.py::test_opcheck[triton]": "opcheck under the interpreter, 15 s",
    "test_depthwise.py::test_kernel_gradcheck[triton]": "float64 gradcheck under the interpreter, 93 s",
    "test_hlk_conv.py::test_kernel_gradcheck[triton]": "float64 gradcheck under the interpreter, 60 s",
    # determinism reruns
    "test_hlk_conv.py::test_weight_grads_are_deterministic[triton]": "reruns under the interpreter, 70 s",
    "test_depthwise.py::test_weight_grad_is_deterministic[triton]": "reruns under the interpreter, 28 s",
    "test_cli.py::test_resume_continues_exactly": "two training runs compared, 75 s",
    "test_cli_evaluate.py::test_model_path_does_not_depend_on_batch_size": "reruns at two batch sizes, 23 s",
    "test_cli_train_faults.py::test_kill_at_each_write_then_resume_leaves_a_consistent_pair[[13]]":
        "more kill points (one stays quick), 77 s",
    # the largest shapes and the dtype products under the interpreter: each dtype runs once quick
    "test_hlk_conv.py::test_matches_unfused_module[triton-float32-1x16x17x15-k23-co16-g1]": "largest case, 113 s",
    "test_hlk_conv.py::test_matches_unfused_module[triton-float16-*]": "fp16 product (one case stays quick)",
    "test_depthwise.py::test_matches_conv2d[triton-float64-*]": "fp64 product (one case stays quick)",
    "test_depthwise.py::test_matches_conv2d[triton-float16-*]": "fp16 product (one case stays quick)",
    "test_multiscale_maxpool.py::test_matches_reference[triton-float16-*]": "fp16 product (one case stays quick)",
    "test_nan_propagation.py::test_*[triton-dtype3-*]": "NaN patterns in float64 under the interpreter",
    "test_nan_propagation.py::test_hlk_conv[triton-dtype2-*-k23-*]": "NaN patterns at k23 (k7 stays quick)",
    # whole-network compiles and precisions (each op's compile and dtypes stay quick)
    "test_lcrnet.py::test_torch_compile": "inductor compile of LCRNet, 65 s",
    "test_rrcanet.py::test_torch_compile_matches_eager": "inductor compile of RRCA-Net, 20 s",
    "test_lcrnet.py::test_autocast_bf16_on_cpu": "LCRNet in bf16 on the CPU, 29 s",
    # waits for a hang to time out
    "test_gpu_check.py::test_sharded_pytest_run_is_counted_and_judged[one_fails_one_hangs]": "a hang's budget, 40 s",
}
# The one case of each product above that stays in the quick tier.
QUICK = (
    "test_hlk_conv.py::test_matches_unfused_module[triton-float16-1x16x9x11-k7-co16-g1]",
    "test_depthwise.py::test_matches_conv2d[triton-float64-2x3x11x13-k3x3-s1-p1-d1]",
    "test_depthwise.py::test_matches_conv2d[triton-float16-2x3x11x13-k3x3-s1-p1-d1]",
    "test_multiscale_maxpool.py::test_matches_reference[triton-float16-n1g2r4c2_9x13]",
)


def _pattern(glob: str) -> re.Pattern:
    # Only `*` is a wildcard; `[...]` inside a pattern is a character class (kwargs[123]),
    # while the brackets of the parameter list are literal.
    head, sep, params = glob.partition("[")
    body = ".*".join(map(re.escape, head.split("*")))
    if sep:
        body += r"\[" + ".*".join(_class_or_escape(p) for p in params[:-1].split("*")) + r"\]"
    return re.compile(body + r"\Z")


def _class_or_escape(text: str) -> str:
    return "".join(f"[{m}]" if m else re.escape(t) for t, m in re.findall(r"([^\[]+)|\[([^\]]*)\]", text))


_SLOW = [_pattern(g) for g in SLOW]
_QUICK = set(QUICK)


@pytest.hookimpl(tryfirst=True)  # before `-m` deselects by marker
def pytest_collection_modifyitems(config, items):
    for item in items:
        key = f"{item.path.name}::{item.nodeid.split('::', 1)[-1]}"
        if key not in _QUICK and any(p.match(key) for p in _SLOW):
            item.add_marker(pytest.mark.slow)
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU; torch.cuda.is_available() is False")
    for item in items:
        if "cuda" in item.keywords:
            item.add_marker(skip)
