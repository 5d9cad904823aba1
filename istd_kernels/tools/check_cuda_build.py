"""``python -m istd_kernels.tools.check_cuda_build``: the CUDA extension was built and loads here.

For a machine with a CUDA build of torch but no GPU (CI's GPU-user stage) or a GPU machine:
exits non-zero unless ``istd_kernels._cuda`` imports, was compiled against this torch, exposes
its kernel entry points, and the ops package (which registers the custom ops) imports.
"""

from __future__ import annotations

import sys

import torch


def problems() -> list[str]:
    """What is wrong with the CUDA extension of this install (empty when nothing is)."""
    from istd_kernels.extensions import build_info, cuda_extension

    found = []
    if not torch.version.cuda:
        found.append(f"torch {torch.__version__} is not a CUDA build")
    ext = cuda_extension()
    if not ext.available:
        return found + [f"istd_kernels._cuda does not load: {ext.reason} "
                        f"(build info: {build_info().get('cuda_extension')})"]
    if ext.module.torch_version() != torch.__version__:
        found.append(f"_cuda was built for torch {ext.module.torch_version()}, running {torch.__version__}")
    entry_points = [n for n in dir(ext.module) if not n.startswith("_") and n != "torch_version"]
    if not entry_points:
        found.append("_cuda exposes no kernel entry points")
    import istd_kernels.ops  # noqa: F401 - registers the istd:: custom ops

    if not any(name.startswith("istd::") for name in torch._C._dispatch_get_all_op_names()):
        found.append("no istd:: custom op is registered after importing istd_kernels.ops")
    return found


def main() -> int:
    found = problems()
    if found:
        for line in found:
            print("check_cuda_build: FAILED: " + line)
        return 1
    from istd_kernels.extensions import cuda_extension

    names = sorted(n for n in dir(cuda_extension().module) if not n.startswith("_"))
    print(f"check_cuda_build: _cuda loads (torch {torch.__version__}); entry points: {', '.join(names)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
