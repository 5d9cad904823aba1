"""``istd``: argument parsing, subcommand dispatch and the one-line error contract.

A user's mistake (wrong path, empty split file, checkpoint of the other model, ...) raises
:class:`~istd_kernels.cli.CLIError` anywhere below; :func:`main` prints it as
``istd: error: <message>`` on one stderr line and returns 2, never a traceback. Argument
errors (an unknown ``--model``) take the same route. Anything else is a bug and keeps its
traceback.
"""

from __future__ import annotations

import argparse
import sys

from . import CLIError
from .compare import TABLE_FORMATS
from .intervals import bootstrap_flags
from .outputs import overwrite_flag
from .runtime import SIGTERM_STATUS, Terminated, allocation_failure, sigterm_raises
from .scoring import NIOU_EMPTY
from .significance import compare_parser

MODELS = ("lcrnet", "rrcanet")


class _Parser(argparse.ArgumentParser):
    # argparse would print the usage and exit; one line through main's handler instead
    def error(self, message: str):
        raise CLIError(f"{self.prog.split(' ', 1)[-1] if ' ' in self.prog else 'istd'}: {message}")


def _model_flags(p: argparse.ArgumentParser, required: bool = True) -> None:
    p.add_argument("--model", required=required, choices=MODELS, help="network: lcrnet or rrcanet")
    p.add_argument("--backend", default=None, help="istd_kernels backend for LCRNet's layers "
                   "(torch, cpp, cuda, triton, auto; default: automatic choice)")
    p.add_argument("--device", default=None, choices=("auto", "cpu", "cuda"), help="default: cuda if available")
    # model shape: hidden, for tests and quick experiments; checkpoints carry their own
    p.add_argument("--tiny", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--lcrnet-channels", default=None, help=argparse.SUPPRESS)
    p.add_argument("--lcrnet-depths", default=None, help=argparse.SUPPRESS)
    p.add_argument("--rrcanet-backbone", default=None, choices=("resnet10", "resnet18", "resnet34"),
                   help="RRCA-Net backbone for bare state_dicts (default resnet18)")
    p.add_argument("--rrcanet-iterations", type=int, default=None, help=argparse.SUPPRESS)


def _data_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", required=True, help="data set folder DIR/NAME (holds images/ and masks/)")
    p.add_argument("--layout", default="auto", choices=("auto", "basicirstd", "dnanet"),
                   help="split-file layout (default: auto-detect)")
    p.add_argument("--split", default=None, help="DNANet split folder, e.g. 50_50 (default: the only one)")


def _tile_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--tile", type=int, default=None, metavar="SIZE", help="run frames in SIZE x SIZE windows "
                   "(a multiple of the network's stride multiple; needed above 4096x4096 pixels; docs/cli.md)")
    p.add_argument("--tile-overlap", type=int, default=None, metavar="PX",
                   help="context pixels on each side of a tile's kept core (default: 32, rounded up to the "
                   "stride multiple, or less when the tile is small)")


def _evaluate_parser(sub) -> None:
    p = sub.add_parser("evaluate", help="IoU, nIoU, Pd, Fa of weights or of saved predictions on a data set",
                       description="Score --model/--weights, or the saved predictions of any model (--pred DIR; "
                       "several --pred print a comparison table). A pixel is positive when its probability "
                       "is > --threshold; PNG maps are divided by 255 (8-bit) or 65535 (16-bit) unless every "
                       "image of the folder holds only 0 and 1, float arrays with values above 1 are read as 0-255 "
                       "maps. Ground-truth masks: any nonzero pixel is target (docs/cli.md).",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    _model_flags(p, required=False)
    _data_flags(p)
    p.add_argument("--weights", default=None, help="checkpoint (RUN/best.pt) or a bare state_dict")
    p.add_argument("--pred", action="append", default=None, metavar="DIR",
                   help="folder of predictions named by image id (.png/.bmp/.tif 8- or 16-bit, .npy, .npz); "
                   "repeat to compare several")
    p.add_argument("--pred-scale", default="auto", choices=("auto", "1", "255", "65535"),
                   help="divide --pred maps by this (auto: by file type and value range)")
    p.add_argument("--strict", action="store_true", help="an id without a prediction, or a prediction "
                   "without an id, is an error")
    p.add_argument("--subset", default="test", choices=("train", "test"), help="which split of the data set to score")
    p.add_argument("--batch-size", type=int, default=1, help="images per forward pass (only images of one "
                   "size are batched together; results do not depend on it)")
    p.add_argument("--workers", type=int, default=0, help="DataLoader workers")
    p.add_argument("--amp", action="store_true", help="mixed precision (fp16 on CUDA, bf16 on CPU)")
    _tile_flags(p)
    p.add_argument("--threshold", type=float, default=0.5, help="positive where probability > this")
    p.add_argument("--legacy-fa", action="store_true", help="count false pixels with the older DNANet rule")
    p.add_argument("--niou-empty", default="zero", choices=NIOU_EMPTY,
                   help="nIoU score of an image with nothing to find and nothing found (zero: the reference)")
    p.add_argument("--metrics", default="basic", help="basic (IoU, nIoU, Pd, Fa), all, or a comma list of "
                   "pdfa_shooting, pdfa_opdc, hiou, pixel (docs/metrics.md); printed as one more table, all keys "
                   "in --json")
    p.add_argument("--thresholds", type=int, default=1, metavar="K", help="sweep the shooting, OPDC and hIoU "
                   "metrics over pred > 0, 1/K, ..., (K-1)/K (1: at --threshold only)")
    p.add_argument("--json", default=None, help="write the results to this JSON file")
    p.add_argument("--roc", default=None, help="write a ROC / Pd-Fa plot here (PNG) and its CSV beside it")
    p.add_argument("--per-image", default=None, metavar="CSV", help="write one row per image here")
    p.add_argument("--worst", type=int, default=None, metavar="K", help="write overlays of the K worst images")
    p.add_argument("--overlay-dir", default="worst", help="folder for the --worst overlays")
    p.add_argument("--table", default=None, metavar="FILE", help="write the results table here "
                   "(format from --table-format, else from the suffix .md/.tex/.csv)")
    p.add_argument("--table-format", default=None, choices=TABLE_FORMATS,
                   help="format of the printed and written table (default: text on the console)")
    bootstrap_flags(p, None)


def _profile_parser(sub) -> None:
    p = sub.add_parser("profile", help="parameters, MACs/FLOPs, latency, images/s and per-layer time of a model",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--model", required=True, metavar="MODEL",
                   help="lcrnet, rrcanet, or MODULE:CALLABLE / FILE.py:CALLABLE returning an nn.Module")
    p.add_argument("--input", default="1x1x512x512", help="one image's shape, [1x]CxHxW")
    p.add_argument("--batch", type=int, default=1, help="images per forward pass")
    p.add_argument("--backend", default=None, help="istd_kernels backend (torch, cpp, cuda, triton, auto)")
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"), help="auto: cuda if available")
    p.add_argument("--compile", action="store_true", help="torch.compile the model first")
    p.add_argument("--amp", action="store_true", help="autocast (fp16 on CUDA, bf16 on CPU)")
    p.add_argument("--warmup", type=int, default=3, help="untimed passes before timing")
    p.add_argument("--repeats", type=int, default=10, help="timed passes (median and spread reported)")
    p.add_argument("--layers", type=int, default=15, help="rows of the per-layer table (0: no profiler pass)")
    p.add_argument("--json", default=None, help="write the results to this JSON file")
    p.add_argument("--tiny", action="store_true", help=argparse.SUPPRESS)


def build_parser() -> argparse.ArgumentParser:
    """The ``istd`` argument parser with its subcommands."""
    parser = _Parser(prog="istd", description="Infrared small target detection: data, training, evaluation "
                     "and prediction with LCRNet and RRCA-Net.")
    from .. import __version__
    parser.add_argument("--version", action="version", version=f"istd-kernels {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True

    p = sub.add_parser("synth", help="write a synthetic IR data set (BasicIRSTD layout)",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--out", required=True, help="parent folder DIR")
    p.add_argument("--name", required=True, help="data set name NAME (files go to DIR/NAME)")
    p.add_argument("--n", type=int, default=100, help="number of images (default 100)")
    p.add_argument("--size", type=int, default=256, help="image side in pixels (default 256)")
    p.add_argument("--seed", type=int, default=0, help="random seed: the same seed writes the same data set")
    p.add_argument("--test-fraction", type=float, default=0.5, help="share of images in the test split")
    p.add_argument("--scr", type=float, nargs=2, default=[2.5, 8.0], metavar=("LOW", "HIGH"),
                   help="signal-to-clutter ratio range of the targets (default 2.5 8)")
    overwrite_flag(p)

    p = sub.add_parser("train", help="train a model with the paper's recipe")
    _model_flags(p)
    _data_flags(p)
    p.add_argument("--out", required=True, help="run folder: last.pt, best.pt, log.csv, log.json")
    p.add_argument("--epochs", type=int, default=None, help="default: 400 (lcrnet), 1500 (rrcanet)")
    p.add_argument("--batch-size", type=int, default=None, help="per process (default 8)")
    p.add_argument("--lr", type=float, default=None, help="default: 1e-3 (lcrnet), 0.05 (rrcanet)")
    p.add_argument("--optimizer", default=None, choices=("adan", "adagrad", "adam", "adamw", "sgd"))
    p.add_argument("--weight-decay", type=float, default=None)
    p.add_argument("--scheduler", default=None, choices=("poly", "cosine", "none"))
    p.add_argument("--min-lr", type=float, default=None, help="cosine schedule floor (rrcanet: 1e-3)")
    p.add_argument("--loss", default=None, choices=("softiou", "dptk"))
    p.add_argument("--crop", type=int, default=None,
                   help="random training crop size, 0 for whole images (default: 0 lcrnet, 256 rrcanet)")
    p.add_argument("--flip", default=None, action=argparse.BooleanOptionalAction,
                   help="random flips (default: off lcrnet, on rrcanet)")
    p.add_argument("--amp", action="store_true", help="mixed precision, rrcanet only (fp16 on CUDA, bf16 on CPU)")
    p.add_argument("--workers", type=int, default=None, help="DataLoader workers (default 2)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--deterministic", action="store_true", help="deterministic algorithms (bitwise resumes)")
    p.add_argument("--resume", nargs="?", const="auto", default=None,
                   help="continue from OUT/last.pt (or the checkpoint given)")
    p.add_argument("--stop-after", type=int, default=None, help="stop after this many epochs in this call")
    p.add_argument("--log-every", type=int, default=None, help="print progress every N steps (default 50)")
    p.add_argument("--eval-batch-size", type=int, default=None, help="test-split batch size (default 1)")
    overwrite_flag(p)

    _evaluate_parser(sub)
    _profile_parser(sub)
    compare_parser(sub, _data_flags, MODELS)

    p = sub.add_parser("predict", help="masks and target lists for images")
    _model_flags(p)
    p.add_argument("--weights", required=True)
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--overlay", action="store_true", help="also write images with the targets circled")
    p.add_argument("--threshold", type=float, default=0.5, help="probability threshold (default 0.5)")
    _tile_flags(p)
    overwrite_flag(p)
    p.add_argument("images", nargs="+", help="image files or folders")
    return parser


def _one_line(e: BaseException) -> str:
    msg = str(e)
    # an error raised in a DataLoader worker comes back with the worker's traceback inside
    if "Traceback" in msg:
        last = [line for line in msg.strip().splitlines() if line.strip()][-1]
        msg = last.split(": ", 1)[1] if last.startswith(("istd_kernels.cli.CLIError", "CLIError")) else last
    return " ".join(msg.split())


def main(argv: list[str] | None = None) -> int:
    """Run ``istd`` with ``argv`` (default ``sys.argv[1:]``); return the exit status."""
    try:
        args = build_parser().parse_args(argv)
        if args.command == "synth":
            from .synth import run
        elif args.command == "train":
            from .train import run
        elif args.command == "evaluate":
            from .evaluate import run
        elif args.command == "profile":
            from .profile import run
        elif args.command == "compare":
            from .significance import run
        else:
            from .predict import run
        with sigterm_raises():
            return run(args)
    except CLIError as e:
        print(f"istd: error: {_one_line(e)}", file=sys.stderr)
        return 2
    except (MemoryError, RuntimeError) as e:
        message = allocation_failure(e)
        if message is None:
            raise
        print(f"istd: error: {message}", file=sys.stderr)
        return 2
    except Terminated:
        print("istd: terminated (SIGTERM)", file=sys.stderr)
        return SIGTERM_STATUS
    except KeyboardInterrupt:
        print("istd: interrupted", file=sys.stderr)
        return 130
    except SystemExit as e:  # --help and --version
        return e.code if isinstance(e.code, int) else 0


if __name__ == "__main__":
    sys.exit(main())
