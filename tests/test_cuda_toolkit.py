"""setup.py's CUDA toolkit discovery and its refusal of a CUDA build that cannot work (fake nvcc)."""

import os
import stat

import pytest

from istd_kernels.tools import cuda_toolkit as ct


def _script(path, body):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


def _toolkit(tmp_path, release="13.0", headers=True):
    root = tmp_path / "cuda-fake"
    _script(root / "bin" / "nvcc",
            'case "$1" in\n'
            f'  --version) echo "Cuda compilation tools, release {release}, V{release}.1" ;;\n'
            f'  --dryrun) echo "#$ _HERE_={root}/bin" >&2; echo "#$ TOP={root}/bin/.." >&2 ;;\n'
            "esac\n")
    if headers:
        (root / "include").mkdir()
        (root / "include" / "cuda_runtime_api.h").write_text("")
    return root


def _wrapper(tmp_path, root):
    return _script(tmp_path / "usr" / "local" / "bin" / "nvcc", f'exec {root}/bin/nvcc "$@"\n').parent


def test_wrapper_on_path_is_resolved_to_its_toolkit(tmp_path):
    root = _toolkit(tmp_path)
    found, why = ct.find_toolkit({"PATH": str(_wrapper(tmp_path, root))})
    assert why == ""
    assert found.root == str(root) and "wrapper" in found.how


def test_symlinked_nvcc_is_followed(tmp_path):
    root = _toolkit(tmp_path)
    link_dir = tmp_path / "links"
    link_dir.mkdir()
    os.symlink(root / "bin" / "nvcc", link_dir / "nvcc")
    found, _ = ct.find_toolkit({"PATH": str(link_dir)})
    assert found.root == str(root)


def test_cuda_home_wins_and_a_bad_one_is_named(tmp_path):
    root = _toolkit(tmp_path)
    found, _ = ct.find_toolkit({"CUDA_HOME": str(root), "PATH": ""})
    assert found.root == str(root) and "CUDA_HOME" in found.how
    found, why = ct.find_toolkit({"CUDA_HOME": str(tmp_path / "nowhere"), "PATH": ""})
    assert found is None and "CUDA_HOME" in why and "bin/nvcc" in why


def test_no_nvcc_and_an_nvcc_outside_any_toolkit(tmp_path):
    found, why = ct.find_toolkit({"PATH": str(tmp_path)})
    assert found is None and "nvcc was not found" in why
    lone = _script(tmp_path / "lone" / "nvcc", "exit 0\n").parent
    found, why = ct.find_toolkit({"PATH": str(lone)})
    assert found is None and "CUDA_HOME" in why


@pytest.mark.parametrize("release,torch_cuda,ok", [
    ("13.0", "13.0", True), ("13.1", "13.0", True), ("12.8", "13.0", False), (None, "13.0", False)])
def test_version_problem(release, torch_cuda, ok):
    problem = ct.version_problem(release, torch_cuda, "2.13.0+cu130")
    assert (problem is None) == ok
    if release == "12.8":
        assert "12.8" in problem and "13.0" in problem and "CUDA_HOME" in problem


def test_plan_refuses_a_mismatched_toolkit_and_says_how_to_fix(tmp_path):
    root = _toolkit(tmp_path, release="12.8")
    env = {"PATH": str(_wrapper(tmp_path, root))}
    toolkit, why = ct.cuda_plan("2.13.0+cu130", "13.0", env)
    assert toolkit is None
    assert "CUDA 12.8" in why and "CUDA 13.0" in why and str(root) in why
    toolkit, why = ct.cuda_plan("2.13.0+cu130", "12.4", env)
    assert toolkit is not None and toolkit.root == str(root) and why == ""


def test_plan_without_cuda_torch():
    toolkit, why = ct.cuda_plan("2.13.0+cpu", None, {"PATH": ""})
    assert toolkit is None and "no CUDA support" in why


def test_setup_py_uses_the_finder():
    # setup.py must hand torch the toolkit before torch's build helpers read CUDA_HOME.
    text = open(os.path.join(os.path.dirname(__file__), "..", "setup.py")).read()
    assert text.index("_cuda_plan()") < text.index("from torch.utils.cpp_extension import")
    assert 'os.environ["CUDA_HOME"] = toolkit.root' in text
