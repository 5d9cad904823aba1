"""``istd compare`` on three folders of 400 saved 512x512 predictions, against three
``istd evaluate --pred`` runs on the same folders (the scores compare needs, without the
comparison).

The data set is written by ``istd synth`` (400 test images of 512x512); the predictions are
8-bit probability PNGs made from its masks as in ``test_evaluate_bench.py`` (targets shifted
by up to 2 px, 0-2 false blobs per image, background noise below 0.5), with one target in
ten missed in two folders and four in ten in the third. Cases:

- baseline: ``istd evaluate --pred F --data D`` for each of the three folders, in this process;
- ``istd compare`` in this process: scoring (each mask read once, files decoded and
  thresholded into bool maps in a thread pool, scored 16 images at a time), bootstrap
  intervals of each model (2000 resamples), the three paired bootstraps, the tables, 3
  overlays per pair (drawn in the thread pool) and the JSON;
- the same as a new process (``python -m istd_kernels compare``): what a user waits for,
  interpreter start and imports included (torch, not torch._dynamo nor scipy.optimize:
  tests/test_lazy_imports.py).

The decoding of the 1,200 noisy 8-bit prediction PNGs (about 2.1 ms each, most of it zlib's
inflate) is the floor: about 2.5 s of CPU, half that on two free cores.

CPU heavy: run it on its own, ``pytest benchmarks/test_compare_bench.py --benchmark-only``.
"""

import json
import subprocess
import sys

import pytest
from bench_utils import measure, write_noisy_predictions

from istd_kernels.cli.main import main
from istd_kernels.cli.synth import write_dataset

N, SIZE = 400, 512
MISSED = (0.1, 0.1, 0.4)
GROUP = f"compare: 3 folders of saved predictions cpu {N}x{SIZE}x{SIZE} score + paired bootstrap"


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("compare_bench")
    data = write_dataset(str(root), "synth", N + 1, SIZE, seed=0, test_fraction=N / (N + 1))
    ids = (data / "img_idx" / "test_synth.txt").read_text().split()
    assert len(ids) == N
    folders = [root / f"model{m}" for m in range(len(MISSED))]
    for m, (folder, missed) in enumerate(zip(folders, MISSED)):
        write_noisy_predictions(folder, data, ids, missed, m, SIZE)
    return root, data, folders


def compare_argv(root, data, folders):
    return ["compare", "--data", str(data), *(a for f in folders for a in ("--pred", str(f))),
            "--out", str(root / "overlays"), "--json", str(root / "compare.json"), "--overwrite"]


def evaluate_each(data, folders):
    for f in folders:
        assert main(["evaluate", "--pred", str(f), "--data", str(data)]) == 0


def check(root):
    result = json.loads((root / "compare.json").read_text())
    assert result["images"] == N and len(result["pairs"]) == 3
    assert sum(len(p["overlays"]) for p in result["pairs"]) == 9
    # the planted difference: 4 in 10 targets missed against 1 in 10
    assert result["pairs"][1]["metrics"]["pd"]["verdict"] == "model0 > model2"


@pytest.mark.benchmark(min_rounds=1, max_time=1.0, warmup=False)   # over 2 minutes a round on the shared CPU
def test_evaluate_three_folders(benchmark, files, capsys):
    benchmark.group = GROUP
    measure(benchmark, lambda: evaluate_each(*files[1:]), "cpu", GROUP, 3 * N)
    benchmark.extra_info["impl"] = "3 x istd evaluate --pred"
    capsys.readouterr()


@pytest.mark.benchmark(min_rounds=3, max_time=1.0, warmup=False)
def test_compare_in_process(benchmark, files, capsys):
    benchmark.group = GROUP
    def run():
        assert main(compare_argv(*files)) == 0   # every round writes the overlays and the JSON again
    measure(benchmark, run, "cpu", GROUP, 3 * N,
            baseline=lambda: evaluate_each(*files[1:]))
    benchmark.extra_info["impl"] = "istd compare (in process)"
    check(files[0])
    capsys.readouterr()


@pytest.mark.benchmark(min_rounds=3, max_time=1.0, warmup=False)
def test_compare_new_process(benchmark, files):
    def run():
        subprocess.run([sys.executable, "-m", "istd_kernels", *compare_argv(*files)], check=True,
                       stdout=subprocess.DEVNULL)
    benchmark.group = GROUP
    measure(benchmark, run, "cpu", GROUP, 3 * N, baseline=lambda: evaluate_each(*files[1:]))
    benchmark.extra_info["impl"] = "python -m istd_kernels compare (new process, imports included)"
    check(files[0])
