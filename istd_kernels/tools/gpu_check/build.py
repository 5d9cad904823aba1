"""Building ``_cuda`` without compiling on the GPU machine: ``--build-only`` on a CPU machine with
a CUDA build of torch and nvcc, ``--prebuilt DIR`` on the GPU machine; or compiling it there
for that GPU only: the ``build`` step (a missing ``_cuda`` in full and quick mode) and the
machine mode's ``install`` step (``pip install -e .`` of the checkout).
"""

from __future__ import annotations

import datetime
import glob
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import tempfile
from collections.abc import Callable

from .paths import SOURCE_ROOT, child_env
from .worker import StepContext

PACKAGE_DIR = os.path.join(SOURCE_ROOT, "istd_kernels")
#: sm_86 (RTX 30xx, A10) and sm_90 (H100/H200): the GPUs this project expects.
PREBUILT_ARCHS = "8.6;9.0"
MAX_PREBUILT_BYTES = 64 * 2**20
MANIFEST = "manifest.json"
_SOURCES = ("setup.py", "pyproject.toml", "README.md", "csrc", "istd_kernels", "models")


def cuda_home() -> str | None:
    """The CUDA toolkit: ``CUDA_HOME``, else the one behind ``nvcc`` on PATH (also through a
    wrapper script that ``exec``s the real nvcc)."""
    if os.environ.get("CUDA_HOME"):
        return os.environ["CUDA_HOME"]
    nvcc = shutil.which("nvcc")
    if nvcc is None:
        return None
    with open(nvcc, "rb") as f:
        head = f.read(4096)
    if head.startswith(b"#!"):
        match = re.search(rb"(/\S+)/bin/nvcc\b", head)
        if match:
            return match.group(1).decode()
    return os.path.dirname(os.path.dirname(os.path.realpath(nvcc)))


def _build_env(archs: str, jobs: int) -> dict:
    env = child_env(TORCH_CUDA_ARCH_LIST=archs, ISTD_FORCE_CUDA="1", MAX_JOBS=str(jobs))
    home = cuda_home()
    if home:
        env["CUDA_HOME"] = home
    return env


def _build(cmd: list[str], tree: str, archs: str, timeout: float, log: str) -> None:
    """Run the build command ``cmd`` in ``tree`` for ``archs`` with all the cores, its output in
    ``log``. Raises RuntimeError when it fails or outlives ``timeout`` (seconds): then its
    whole process group goes, so that no compiler keeps running into the next steps."""
    from .runner import kill_group

    with open(log, "w") as f:
        proc = subprocess.Popen(cmd, cwd=tree, stdout=f, stderr=subprocess.STDOUT, start_new_session=True,
                                env=_build_env(archs, os.cpu_count() or 1))
        try:
            rc = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            kill_group(proc)
            raise RuntimeError(f"the build did not finish in its {timeout:.0f} s (stopped; log: {log})") from None
    if rc != 0:
        with open(log) as f:
            raise RuntimeError(f"building the extensions failed (exit {rc}): {f.read()[-3000:]}")


def compile_tree(tree: str, archs: str, timeout: float, log: str | None = None) -> None:
    """``python setup.py build_ext --inplace`` in ``tree`` for ``archs``; raises on failure."""
    _build([sys.executable, "setup.py", "build_ext", "--inplace"], tree, archs, timeout,
           log or os.path.join(tree, "build.log"))


def _sha256(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _copy_sources(dst: str) -> None:
    ignore = shutil.ignore_patterns("*.so", "__pycache__", "build", "*.egg-info")
    for name in _SOURCES:
        src = os.path.join(SOURCE_ROOT, name)
        if os.path.isdir(src):
            shutil.copytree(src, os.path.join(dst, name), ignore=ignore)
        elif os.path.exists(src):
            shutil.copy2(src, dst)


def build_only(out: str, archs: str = PREBUILT_ARCHS, compile: Callable[[str, str, float], None] = compile_tree,
               timeout: float = 3600) -> dict:
    """Build both extensions for ``archs`` in a temporary copy of the source tree and put the
    stripped ``.so`` files, ``_build_info.json`` and ``manifest.json`` in ``out``.

    Returns the manifest. Raises RuntimeError if torch has no CUDA, the build fails, or the
    files exceed :data:`MAX_PREBUILT_BYTES`.
    """
    import torch

    if torch.version.cuda is None:
        raise RuntimeError(f"torch {torch.__version__} has no CUDA: run --build-only with a CUDA build of torch")
    with tempfile.TemporaryDirectory(prefix="istd-build-") as tree:
        _copy_sources(tree)
        compile(tree, archs, timeout)
        built = sorted(glob.glob(os.path.join(tree, "istd_kernels", "_*.so")))
        if not any(os.path.basename(p).startswith("_cuda") for p in built):
            raise RuntimeError(f"the build made no _cuda extension (made: {[os.path.basename(p) for p in built]})")
        os.makedirs(out, exist_ok=True)
        files = {}
        for path in built + [os.path.join(tree, "istd_kernels", "_build_info.json")]:
            dst = os.path.join(out, os.path.basename(path))
            shutil.copy2(path, dst)
            # Line tables and DWARF cost size, not speed; a file strip cannot read is kept as built.
            stripped = dst.endswith(".so") and shutil.which("strip") is not None and subprocess.run(
                ["strip", "--strip-debug", dst], capture_output=True).returncode == 0
            files[os.path.basename(dst)] = {"bytes": os.path.getsize(dst), "sha256": _sha256(dst), "stripped": stripped}
    total = sum(f["bytes"] for f in files.values())
    if total > MAX_PREBUILT_BYTES:
        raise RuntimeError(f"the prebuilt files take {total / 2**20:.1f} MiB, over the "
                           f"{MAX_PREBUILT_BYTES / 2**20:.0f} MiB limit")
    manifest = {"torch": torch.__version__, "torch_cuda": torch.version.cuda, "python": sys.version.split()[0],
                "ext_suffix": sysconfig.get_config_var("EXT_SUFFIX"), "archs": archs, "total_bytes": total,
                "built": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"), "files": files}
    with open(os.path.join(out, MANIFEST), "w") as f:
        json.dump(manifest, f, indent=1)
    return manifest


def install_prebuilt(src: str, package_dir: str = PACKAGE_DIR) -> str:
    """Copy the files of a ``--build-only`` directory into the package; returns what was done.

    Raises ValueError when ``src`` has no manifest, was built for another torch or Python, or
    a file does not match its checksum.
    """
    import torch

    path = os.path.join(src, MANIFEST)
    if not os.path.exists(path):
        raise ValueError(f"--prebuilt {src!r}: no {MANIFEST} there (make one with --build-only --out DIR)")
    with open(path) as f:
        manifest = json.load(f)
    suffix = sysconfig.get_config_var("EXT_SUFFIX")
    if manifest["torch"] != torch.__version__:
        raise ValueError(f"--prebuilt {src!r} was built for torch {manifest['torch']}, "
                         f"this is torch {torch.__version__}")
    if manifest["ext_suffix"] != suffix:
        raise ValueError(f"--prebuilt {src!r} was built for Python {manifest['python']} ({manifest['ext_suffix']}), "
                         f"this Python needs {suffix}")
    for name, meta in manifest["files"].items():
        if _sha256(os.path.join(src, name)) != meta["sha256"]:
            raise ValueError(f"--prebuilt {src!r}: {name} does not match its checksum in {MANIFEST}")
    for name in manifest["files"]:
        shutil.copy2(os.path.join(src, name), os.path.join(package_dir, name))
    return (f"installed {len(manifest['files'])} prebuilt files for sm {manifest['archs']} (torch {manifest['torch']}, "
            f"built {manifest['built']}) into {package_dir}")


def _cuda_status() -> tuple:
    """Whether a fresh interpreter can load ``_cuda``, and the loader's reason."""
    code = ("from istd_kernels.extensions import cuda_extension as c; e = c(); print(e.reason); "
            "raise SystemExit(0 if e.available else 1)")
    out = subprocess.run([sys.executable, "-c", code], cwd=SOURCE_ROOT, env=child_env(), capture_output=True,
                         text=True, timeout=120)
    return out.returncode == 0, (out.stdout.strip() or out.stderr.strip()[-500:])


def run_prebuilt(ctx: StepContext) -> None:
    ctx.record({"kind": "build", "how": "prebuilt", "detail": install_prebuilt(ctx.config["prebuilt"])})
    ok, reason = _cuda_status()
    if not ok:
        raise RuntimeError(f"the prebuilt _cuda does not load: {reason}")


def run_build(ctx: StepContext) -> None:
    """Compile the extensions in place for this machine's GPU with all its cores."""
    import torch

    major, minor = torch.cuda.get_device_capability()
    compile_tree(SOURCE_ROOT, f"{major}.{minor}", max(1.0, ctx.left()), ctx.step_file("build.log"))
    ok, reason = _cuda_status()
    ctx.record({"kind": "build", "how": f"compiled here for sm_{major}{minor}", "detail": reason})
    if not ok:
        raise RuntimeError(f"_cuda still does not load after the build: {reason}")


#: The machine mode's install: the checkout, editable, against the torch already there. No
#: dependency, no isolated build environment and no package index: the lent machine has no
#: network, and an isolated build would compile against another torch.
INSTALL_CMD = ("-m", "pip", "install", "-v", "--no-deps", "--no-build-isolation", "--no-index", "-e", ".")


def run_install(ctx: StepContext) -> None:
    """``pip install -e .`` of the checkout: ``_C``, and ``_cuda`` for this machine's GPU only
    (``TORCH_CUDA_ARCH_LIST`` = its compute capability) with all its cores. Raises
    RuntimeError when the install fails, runs out of time, or leaves a ``_cuda`` that does
    not load."""
    import torch
    from torch.utils.cpp_extension import is_ninja_available

    major, minor = torch.cuda.get_device_capability()
    ninja = is_ninja_available()
    ctx.record({"kind": "build", "how": f"pip install -e . for sm_{major}{minor}, {os.cpu_count()} jobs",
                "ninja": ninja, "detail": "" if ninja else "ninja not found: torch compiles one file at a time"})
    _build([sys.executable, *INSTALL_CMD], SOURCE_ROOT, f"{major}.{minor}", max(1.0, ctx.left()),
           ctx.step_file("install.log"))
    ok, reason = _cuda_status()
    ctx.record({"kind": "build", "how": "after the install", "detail": reason})
    if not ok:
        raise RuntimeError(f"_cuda does not load after the install: {reason}")
