"""Find the CUDA toolkit a build will use, and say why a CUDA build cannot work here.

setup.py loads this file by path, before torch's build helpers read ``CUDA_HOME`` (they
guess the toolkit as the parent of the folder holding ``nvcc``, which is wrong when ``nvcc`` on
PATH is a wrapper script in a general ``bin`` folder). So it imports only the standard library.
``python -m istd_kernels.tools.cuda_toolkit`` prints what a build would find.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass

_HEADER = "cuda_runtime_api.h"
_TIMEOUT_S = 60


@dataclass(frozen=True)
class Toolkit:
    """A CUDA toolkit root (``root/bin/nvcc``) and how it was found."""

    root: str
    how: str

    @property
    def nvcc(self) -> str:
        return os.path.join(self.root, "bin", "nvcc")


def _has_headers(root: str) -> bool:
    if os.path.isfile(os.path.join(root, "include", _HEADER)):
        return True
    targets = os.path.join(root, "targets")
    return os.path.isdir(targets) and any(
        os.path.isfile(os.path.join(targets, t, "include", _HEADER)) for t in os.listdir(targets))


def _run(cmd) -> str:
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=_TIMEOUT_S, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return done.stdout + done.stderr


def _asked_root(nvcc: str) -> str | None:
    # nvcc's dry run prints its variables, TOP among them: the toolkit it really belongs to,
    # whatever script or link on PATH started it.
    out = _run([nvcc, "--dryrun", "-x", "cu", "-c", os.devnull, "-o", os.devnull])
    match = re.search(r"^#\$ TOP=(.+)$", out, re.MULTILINE)
    return os.path.normpath(match.group(1).strip()) if match else None


def find_toolkit(env: Mapping[str, str] = os.environ, which=shutil.which) -> tuple[Toolkit | None, str]:
    """The toolkit whose nvcc a build would run, or (None, why not)."""
    for name in ("CUDA_HOME", "CUDA_PATH"):
        root = env.get(name)
        if root:
            if os.path.isfile(os.path.join(root, "bin", "nvcc")):
                return Toolkit(os.path.normpath(root), f"{name} is set"), ""
            return None, f"{name}={root} has no bin/nvcc (unset it or point it at the CUDA toolkit)"
    nvcc = which("nvcc", path=env.get("PATH"))
    if nvcc is None:
        return None, "nvcc was not found (install the CUDA toolkit, put its bin/ on PATH or set CUDA_HOME)"
    root = os.path.dirname(os.path.dirname(os.path.realpath(nvcc)))
    if _has_headers(root):
        return Toolkit(root, f"parent of {os.path.realpath(nvcc)}"), ""
    asked = _asked_root(nvcc)
    if asked and os.path.isfile(os.path.join(asked, "bin", "nvcc")) and _has_headers(asked):
        return Toolkit(asked, f"named by `{nvcc} --dryrun` (the nvcc on PATH is a wrapper)"), ""
    return None, (f"nvcc at {nvcc} is not inside a CUDA toolkit (no include/{_HEADER} beside it) and its "
                  "dry run named none; set CUDA_HOME to the toolkit's root")


def nvcc_release(nvcc: str) -> str | None:
    """``"13.0"`` from ``nvcc --version``, or None if it cannot be read."""
    match = re.search(r"release (\d+\.\d+)", _run([nvcc, "--version"]))
    return match.group(1) if match else None


def version_problem(release: str | None, torch_cuda: str, torch_version: str) -> str | None:
    """Why nvcc ``release`` cannot build for a torch built with CUDA ``torch_cuda`` (None if it can).

    torch refuses a different major version (a different minor one only warns).
    """
    if release is None:
        return "`nvcc --version` printed no release number"
    if release.split(".")[0] == torch_cuda.split(".")[0]:
        return None
    return (f"nvcc is CUDA {release} but torch {torch_version} was built with CUDA {torch_cuda}; install a "
            f"CUDA {torch_cuda.split('.')[0]}.x toolkit and set CUDA_HOME to it, or install the torch build "
            f"for CUDA {release}")


def cuda_plan(torch_version: str, torch_cuda: str | None, env: Mapping[str, str] = os.environ,
              which=shutil.which) -> tuple[Toolkit | None, str]:
    """(toolkit to build with, "") or (None, why the CUDA extension is not built and how to fix it)."""
    if torch_cuda is None:
        return None, (f"torch {torch_version} has no CUDA support (install a CUDA build of torch, then "
                      "rebuild with `pip install --no-build-isolation -e .`)")
    toolkit, why = find_toolkit(env, which)
    if toolkit is None:
        return None, why
    problem = version_problem(nvcc_release(toolkit.nvcc), torch_cuda, torch_version)
    if problem:
        return None, f"{problem} (toolkit: {toolkit.root}, {toolkit.how})"
    return toolkit, ""


if __name__ == "__main__":
    found, reason = find_toolkit()
    if found is None:
        print(f"no CUDA toolkit: {reason}")
    else:
        print(f"CUDA toolkit: {found.root} ({found.how}); nvcc release {nvcc_release(found.nvcc)}")
