"""Every ```python block of README.md runs as written (on the CPU here, on a GPU where there is one)."""

import os
import re
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BLOCKS = re.findall(r"^```python\n(.*?)^```", open(os.path.join(ROOT, "README.md")).read(), re.M | re.S)


def test_readme_has_python_examples():
    assert len(BLOCKS) >= 3


@pytest.mark.parametrize("index", range(len(BLOCKS)))
def test_readme_block_runs(index, tmp_path):
    # A fresh interpreter per block: each must stand alone, as a reader would paste it.
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    done = subprocess.run([sys.executable, "-c", BLOCKS[index]], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, f"README python block {index} failed:\n{BLOCKS[index]}\n{done.stderr[-3000:]}"
