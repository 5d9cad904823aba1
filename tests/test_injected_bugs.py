"""The quick tier still catches real bugs: each case plants one bug in a copy of the tree and
asserts that the quick-tier tests of that code fail there (docs/testing.md, "What the quick
tier must catch").

Each copy is the checkout's tree (``git ls-files``) plus its built extension; a
C++ bug rebuilds the CPU extension in the copy, a ``.cu`` bug rebuilds the CUDA emulation
there. Slow (a rebuild, and a pytest run per case), so these run in CI's ``slow`` stage.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import istd_kernels

# Slow, and one worker for the module under `pytest -n --dist loadgroup` (CI's slow stage), so
# that the C++ copy is built once.
pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("planted-bugs")]

ROOT = Path(__file__).resolve().parents[1]
PKG = Path(istd_kernels.__file__).resolve().parent

# (id, file, the exact text to replace, its replacement, the quick-tier tests that must fail,
#  whether the CPU extension must be rebuilt)
BUGS = [
    ("triton-depthwise-padding-off-by-one", "istd_kernels/triton/depthwise.py",
     "    ow = tw * BLOCK_W + tl.arange(0, BLOCK_W)\n    ih0 = oh * SH - PH\n",
     "    ow = tw * BLOCK_W + tl.arange(0, BLOCK_W)\n    ih0 = oh * SH - PH + 1\n",
     ["tests/test_depthwise.py", "-k", "triton"], False),
    ("cuda-missing-syncthreads", "csrc/cuda/pool_attn.cu",
     "  if (lane == 0) s_red[warp] = v;\n  __syncthreads();\n", "  if (lane == 0) s_red[warp] = v;\n",
     ["tests/test_emulation.py", "-k", "split_attention"], False),
    ("cpp-hlk-backward-drops-bias-gradient", "csrc/cpu/depthwise_cpu.cpp",
     "          out[taps] += row_sum(gr, Wo);\n", "\n",
     ["tests/test_hlk_conv.py", "-k", "cpp"], True),
    ("pdfa-distance-le-instead-of-lt", "istd_kernels/metrics/near.py",
     " < squared_bound(distance)\n", " <= squared_bound(distance)\n",
     ["tests/test_metrics.py", "tests/test_pdfa_matching.py"], False),
    ("labelling-ignores-diagonals", "csrc/cpu/run_components.cpp",
     "reach_(connectivity == 8 ? 1 : 0)", "reach_(0)",
     ["tests/test_components.py", "-k", "cpp"], True),
]


def _copy_tree(dest: Path) -> None:
    # Tracked and new (not ignored) files: the working tree as it would be committed.
    listing = ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"]
    files = subprocess.run(listing, cwd=ROOT, capture_output=True, check=True).stdout
    for rel in filter(None, files.decode().split("\0")):
        src = ROOT / rel
        if src.is_file():
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / rel)
    # The built extensions and their record, so that pure-Python and .cu bugs need no rebuild.
    for built in list(PKG.glob("_C*.so")) + list(PKG.glob("_cuda*.so")) + [PKG / "_build_info.json"]:
        if built.exists():
            shutil.copy2(built, dest / "istd_kernels" / built.name)


def _plant(tree: Path, rel: str, old: str, new: str) -> None:
    path = tree / rel
    text = path.read_text()
    # Exactly one site: a source change that moves it must update this table, not pass by it.
    assert text.count(old) == 1, f"{rel}: the planted bug's site {old!r} occurs {text.count(old)} times"
    path.write_text(text.replace(old, new))


def _env(tree: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "TRITON_INTERPRET"))}
    env["PYTHONPATH"] = str(tree)
    env.update(ISTD_SKIP_CUDA="1", MAX_JOBS=str(os.cpu_count() or 1))
    return env


@pytest.fixture(scope="module")
def git_tree():
    if not (ROOT / ".git").exists() or shutil.which("git") is None:
        pytest.skip("needs a git checkout (the copy is made from `git ls-files`)")


def _planted_tree(path: Path, bugs) -> Path:
    _copy_tree(path)
    for _, rel, old, new, _, _ in bugs:
        _plant(path, rel, old, new)
    if any(b[5] for b in bugs):
        build = subprocess.run([sys.executable, "setup.py", "build_ext", "--inplace"], cwd=path, env=_env(path),
                               capture_output=True, text=True)
        assert build.returncode == 0, build.stdout[-3000:] + build.stderr[-3000:]
    return path


@pytest.fixture(scope="module")
def cpp_bugs_tree(git_tree, tmp_path_factory):
    """One copy with every C++ bug planted and one rebuild of the CPU extension: each C++ case's
    selection runs only the op its own bug is in (the HLKConv tests do no labelling and the
    labelling tests no convolution), so the bugs cannot stand in for each other."""
    return _planted_tree(tmp_path_factory.mktemp("cpp-bugs"), [b for b in BUGS if b[5]])


@pytest.mark.parametrize("bug", BUGS, ids=[b[0] for b in BUGS])
def test_quick_tier_fails_on_planted_bug(bug, git_tree, request, tmp_path):
    name, _, _, _, selection, rebuild = bug
    tree = request.getfixturevalue("cpp_bugs_tree") if rebuild else _planted_tree(tmp_path / "tree", [bug])
    run = subprocess.run([sys.executable, "-m", "pytest", *selection, "-m", "not slow", "-x", "-q",
                          "-p", "no:cacheprovider"], cwd=tree, env=_env(tree), capture_output=True, text=True)
    tail = run.stdout[-3000:] + run.stderr[-2000:]
    # 1: tests ran and failed. 2-5 (interrupted, internal error, usage, nothing collected) would
    # mean the selection broke, not that the bug was caught.
    assert run.returncode == 1, f"{name}: the quick tier did not fail (rc {run.returncode})\n{tail}"
    assert " failed" in tail, tail
