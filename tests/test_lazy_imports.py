"""What an ``istd`` command imports: not torch._dynamo (about 1 s) nor scipy.optimize (about
0.4 s), which the CLI and ``istd compare`` of saved predictions never use, and the mark that
stands in for ``torch.compiler.assume_constant_result`` (whose import of torch._dynamo is
what made ``import istd_kernels`` slow) is still the one torch's decorator sets."""

import subprocess
import sys
import textwrap

import torch

from istd_kernels import backend

HEAVY = ("torch._dynamo", "scipy.optimize")

# Runs in a new interpreter: the test process has long imported everything.
_SCRIPT = textwrap.dedent("""
    import sys, tempfile, pathlib
    heavy = {heavy!r}

    def loaded(stage):
        found = [m for m in heavy if m in sys.modules]
        assert not found, f"{{stage}} imported {{found}}"

    import istd_kernels
    assert "istd_kernels.nn" not in sys.modules, "import istd_kernels imported the layers"
    from istd_kernels.cli.main import main
    loaded("import istd_kernels.cli.main")
    root = pathlib.Path(tempfile.mkdtemp())
    assert main(["synth", "--out", str(root), "--name", "t", "--n", "8", "--size", "32", "--seed", "1"]) == 0
    data = root / "t"
    assert main(["compare", "--data", str(data), "--pred", str(data / "masks"), "--pred", str(data / "masks"),
                 "--names", "a", "b", "--split", "", "--subset", "train", "--bootstrap", "100"]) == 0
    loaded("istd compare of saved predictions")
    assert istd_kernels.nn.HLKConv and "nn" in dir(istd_kernels)
""")


def test_cli_and_compare_import_neither_dynamo_nor_scipy_optimize():
    run = subprocess.run([sys.executable, "-c", _SCRIPT.format(heavy=HEAVY)], capture_output=True, text=True,
                         timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]


def test_fits_carries_the_mark_torch_sets():
    def probe():
        return 1
    torch.compiler.assume_constant_result(probe)
    marks = vars(probe)
    assert marks, "torch's decorator no longer marks the function: mark _fits as it now does"
    assert {k: getattr(backend._fits, k, None) for k in marks} == marks
