"""Build istd_kernels' C++ extensions.

Always builds the CPU extension ``istd_kernels._C``. Builds the CUDA extension
``istd_kernels._cuda`` when the installed torch has CUDA and ``nvcc`` is found.

Environment:
  ISTD_FORCE_CUDA=1      build the CUDA extension or fail the install
  ISTD_SKIP_CUDA=1       never build the CUDA extension
  TORCH_CUDA_ARCH_LIST   GPU architectures (default "8.0;8.6;8.9;9.0+PTX")
  MAX_JOBS               parallel compile jobs (ninja)

Build with ``pip install --no-build-isolation -e .`` so that the extension is
compiled against the torch that will import it. What was built, and why the CUDA
extension was not, is recorded in istd_kernels/_build_info.json and shown by
``python -m istd_kernels.info``.
"""

import glob
import json
import os
import shutil
import sys

from setuptools import setup

try:
    import torch
    from torch.utils.cpp_extension import CUDA_HOME, BuildExtension, CppExtension, CUDAExtension
except ImportError:  # pragma: no cover - the message is the point
    sys.exit(
        "istd-kernels: torch must be installed before building, and the build must not be "
        "isolated: `pip install torch` then `pip install --no-build-isolation -e .`"
    )

ROOT = os.path.dirname(os.path.abspath(__file__))
INFO_PATH = os.path.join(ROOT, "istd_kernels", "_build_info.json")
DEFAULT_ARCHS = "8.0;8.6;8.9;9.0+PTX"


def _env_flag(name):
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")


def _rel(paths):
    return sorted(os.path.relpath(p, ROOT) for p in paths)


def _find_nvcc():
    if CUDA_HOME and os.path.exists(os.path.join(CUDA_HOME, "bin", "nvcc")):
        return os.path.join(CUDA_HOME, "bin", "nvcc")
    return shutil.which("nvcc")


def _cuda_plan():
    """Decide whether to build the CUDA extension: (build?, reason)."""
    if _env_flag("ISTD_SKIP_CUDA"):
        return False, "skipped: ISTD_SKIP_CUDA=1 was set at build time"
    problems = []
    if torch.version.cuda is None:
        problems.append(
            f"torch {torch.__version__} has no CUDA support (install a CUDA build of torch, "
            "then rebuild with `pip install --no-build-isolation -e .`)"
        )
    if _find_nvcc() is None:
        problems.append("nvcc was not found (install the CUDA toolkit and set CUDA_HOME or PATH)")
    if problems:
        reason = "not built: " + "; ".join(problems)
        if _env_flag("ISTD_FORCE_CUDA"):
            sys.exit("istd-kernels: ISTD_FORCE_CUDA=1 but the CUDA extension cannot be built: " + reason)
        return False, reason
    return True, "built"


torch_version = torch.__version__
common_macros = [("ISTD_TORCH_VERSION", f'"{torch_version}"')]
include_dirs = [os.path.join(ROOT, "csrc", "include")]
# No -std flag: torch's build helper sets the C++ standard its headers need.
cxx_flags = ["-O3"]

ext_modules = [
    CppExtension(
        name="istd_kernels._C",
        sources=_rel(glob.glob(os.path.join(ROOT, "csrc", "bindings", "cpu.cpp"))
                     + glob.glob(os.path.join(ROOT, "csrc", "cpu", "*.cpp"))),
        include_dirs=include_dirs,
        define_macros=common_macros,
        extra_compile_args={"cxx": cxx_flags + ["-fopenmp"]},
        extra_link_args=["-fopenmp"],
    )
]

build_cuda, cuda_status = _cuda_plan()
if build_cuda:
    os.environ.setdefault("TORCH_CUDA_ARCH_LIST", DEFAULT_ARCHS)
    ext_modules.append(
        CUDAExtension(
            name="istd_kernels._cuda",
            sources=_rel(glob.glob(os.path.join(ROOT, "csrc", "bindings", "cuda.cpp"))
                         + glob.glob(os.path.join(ROOT, "csrc", "cuda", "*.cu"))),
            include_dirs=include_dirs,
            define_macros=common_macros,
            extra_compile_args={"cxx": cxx_flags, "nvcc": ["-O3", "-lineinfo"]},
        )
    )


def _write_info(cuda, paths=(INFO_PATH,)):
    info = {
        "torch_version": torch_version,
        "torch_cuda": torch.version.cuda,
        "cuda_extension": cuda,
        "cuda_arch_list": os.environ.get("TORCH_CUDA_ARCH_LIST", DEFAULT_ARCHS) if build_cuda else None,
        "python": sys.version.split()[0],
    }
    for path in paths:
        with open(path, "w") as f:
            json.dump(info, f, indent=2)


# Written before any build step so that a wheel's build_py finds it as package data.
_write_info(cuda_status)


class Build(BuildExtension):
    """An optional CUDA build that fails explains itself and lets the CPU build land."""

    def build_extension(self, ext):
        if not ext.name.endswith("._cuda"):
            return super().build_extension(ext)
        try:
            super().build_extension(ext)
        except Exception as err:  # noqa: BLE001 - any compiler failure
            if _env_flag("ISTD_FORCE_CUDA"):
                raise
            msg = (
                f"not built: compiling the CUDA extension failed ({type(err).__name__}: {err}). "
                "The package works without it (triton/torch backends). To fix: check that nvcc's "
                "CUDA version matches torch.version.cuda and that TORCH_CUDA_ARCH_LIST names "
                "architectures your nvcc supports; rebuild with ISTD_FORCE_CUDA=1 to see the full error."
            )
            print("istd-kernels: " + msg, file=sys.stderr)
            staged = os.path.join(self.build_lib, "istd_kernels", "_build_info.json")
            _write_info(msg, [INFO_PATH] + ([staged] if os.path.exists(staged) else []))


setup(
    ext_modules=ext_modules,
    cmdclass={"build_ext": Build.with_options(use_ninja=True)},
)
