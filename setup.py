"""Build istd_kernels' C++ extensions.

Always builds the CPU extension ``istd_kernels._C``. Builds the CUDA extension
``istd_kernels._cuda`` when the installed torch has CUDA and a CUDA toolkit of the same major
version is found: ``CUDA_HOME``, else the toolkit behind the ``nvcc`` on PATH (also when that
nvcc is a wrapper script; see istd_kernels/tools/cuda_toolkit.py). A CUDA build that cannot
work (no toolkit, version mismatch, unsupported host compiler, compile error) leaves a working
CPU install and records why, unless ISTD_FORCE_CUDA=1.

Environment:
  CUDA_HOME              the CUDA toolkit to build with (found from PATH when unset)
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
import importlib.util
import json
import os
import sys

from setuptools import setup

ROOT = os.path.dirname(os.path.abspath(__file__))
INFO_PATH = os.path.join(ROOT, "istd_kernels", "_build_info.json")
DEFAULT_ARCHS = "8.0;8.6;8.9;9.0+PTX"


def _load_toolkit_finder():
    # By path: importing the package would import torch's build helpers too early.
    spec = importlib.util.spec_from_file_location(
        "_istd_cuda_toolkit", os.path.join(ROOT, "istd_kernels", "tools", "cuda_toolkit.py"))
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def _env_flag(name):
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")


try:
    import torch
except ImportError:  # pragma: no cover - the message is the point
    sys.exit(
        "istd-kernels: torch must be installed before building, and the build must not be "
        "isolated: `pip install torch` then `pip install --no-build-isolation -e .`"
    )


def _cuda_plan():
    """Decide whether to build the CUDA extension: (build?, reason, toolkit root or None)."""
    if _env_flag("ISTD_SKIP_CUDA"):
        return False, "skipped: ISTD_SKIP_CUDA=1 was set at build time", None
    toolkit, why = _load_toolkit_finder().cuda_plan(torch.__version__, torch.version.cuda)
    if toolkit is None:
        reason = "not built: " + why
        if _env_flag("ISTD_FORCE_CUDA"):
            sys.exit("istd-kernels: ISTD_FORCE_CUDA=1 but the CUDA extension cannot be built: " + reason)
        return False, reason, None
    # torch's build helpers read CUDA_HOME when imported (just below): give them the toolkit
    # whose nvcc is on PATH, also when that nvcc is a wrapper script outside the toolkit.
    os.environ["CUDA_HOME"] = toolkit.root
    return True, f"built (CUDA toolkit {toolkit.root}: {toolkit.how})", toolkit.root


build_cuda, cuda_status, cuda_home = _cuda_plan()

from torch.utils.cpp_extension import BuildExtension, CppExtension, CUDAExtension  # noqa: E402


def _rel(paths):
    return sorted(os.path.relpath(p, ROOT) for p in paths)


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
        "cuda_home": cuda_home,
        "cuda_arch_list": os.environ.get("TORCH_CUDA_ARCH_LIST", DEFAULT_ARCHS) if build_cuda else None,
        "python": sys.version.split()[0],
    }
    for path in paths:
        with open(path, "w") as f:
            json.dump(info, f, indent=2)


# Written before any build step so that a wheel's build_py finds it as package data; it says
# "built" only once the CUDA extension has been compiled (Build rewrites it).
_write_info("not built: the build stopped before the CUDA extension was compiled" if build_cuda else cuda_status)

_HOW_TO_FIX = (
    "The package works without it (triton/torch backends). To fix: use a CUDA toolkit whose major "
    "version matches torch.version.cuda and a host compiler it supports (set CUDA_HOME to choose the "
    "toolkit), and a TORCH_CUDA_ARCH_LIST your nvcc knows; rebuild with ISTD_FORCE_CUDA=1 to see the "
    "full error."
)


class Build(BuildExtension):
    """An optional CUDA build that fails explains itself and lets the CPU build land."""

    _compiling = False

    def build_extensions(self):
        cuda = next((e for e in self.extensions if e.name.endswith("._cuda")), None)
        try:
            super().build_extensions()
        except Exception as err:  # noqa: BLE001 - torch's pre-build checks raise several kinds
            # torch checks nvcc's version and the host compiler once, before compiling any
            # extension: a failure there must not take the CPU extension down with it.
            if cuda is None or self._compiling or _env_flag("ISTD_FORCE_CUDA"):
                raise
            self.extensions.remove(cuda)
            self._record(f"not built: torch's CUDA build check failed ({type(err).__name__}: {err}). "
                         + _HOW_TO_FIX)
            super().build_extensions()

    def build_extension(self, ext):
        self._compiling = True
        if not ext.name.endswith("._cuda"):
            return super().build_extension(ext)
        try:
            super().build_extension(ext)
        except Exception as err:  # noqa: BLE001 - any compiler failure
            if _env_flag("ISTD_FORCE_CUDA"):
                raise
            self._record(f"not built: compiling the CUDA extension failed ({type(err).__name__}: {err}). "
                         + _HOW_TO_FIX)
            return None
        self._record(cuda_status, loud=False)
        return None

    def _record(self, status, loud=True):
        if loud:
            print("istd-kernels: " + status, file=sys.stderr)
        staged = os.path.join(self.build_lib, "istd_kernels", "_build_info.json")
        _write_info(status, [INFO_PATH] + ([staged] if os.path.exists(staged) else []))


setup(
    ext_modules=ext_modules,
    cmdclass={"build_ext": Build.with_options(use_ninja=True)},
)
