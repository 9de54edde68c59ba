"""Helpers shared by the command modules."""

from __future__ import annotations

import argparse
import os

from ..errors import ConfigError


def _print_help(parser: argparse.ArgumentParser) -> int:
    parser.print_help()
    return 2


def _add_group(sub: argparse._SubParsersAction, name: str, help: str, adders, metavar: str | None = None) -> None:
    """A command group (`glassgem NAME <what>`): each `add(group_sub)` in `adders` declares one nested
    subcommand. `glassgem NAME` alone prints the group's help (a subcommand's own default replaces it)."""
    p = sub.add_parser(name, help=help)
    group_sub = p.add_subparsers(dest=f"{name}_command", metavar=metavar or f"{name.upper()}_COMMAND")
    p.set_defaults(func=lambda args: _print_help(p))
    for add in adders:
        add(group_sub)


# Every --size of the command line that gives two sides is HEIGHTxWIDTH (as image arrays and tensors are
# shaped): `synth procedural --size 384x512` and `export onnx --size 320x448` are both 384/320 rows high.
def _parse_hw(text: str) -> tuple[int, int]:
    """--size HxW (height x width) -> (h, w), both at least 32."""
    try:
        h, w = (int(v) for v in text.lower().replace("×", "x").split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"--size must look like 384x512 (height x width), got {text!r}") from None
    if w < 32 or h < 32:
        raise argparse.ArgumentTypeError(f"--size {text!r}: height and width must be >= 32")
    return h, w


MAX_TEST_SIZE = 4096  # a 4096² input already needs tens of GB for GEM-Tiny's attention; beyond: the OOM killer


def _test_size(text: str) -> int:
    """--size of predict, evaluate, bench, visualize: a square network input side, a multiple of 32."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--size must be a whole number (a multiple of 32), got {text!r}") from None
    if value < 32 or value % 32 or value > MAX_TEST_SIZE:
        raise argparse.ArgumentTypeError(
            f"--size {value}: expected a multiple of 32 from 32 to {MAX_TEST_SIZE} (384 is the paper's)"
        )
    return value


def _cpu_count(minimum: int):
    """An argparse type for a thread or worker-process count: a whole number from `minimum` to the CPUs this
    process may use (more only oversubscribes them; 100000 threads crashed torch)."""

    def parse(text: str) -> int:
        from ..inference.threads import cpu_cores

        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
        cores = cpu_cores()
        if not minimum <= value <= cores:
            raise argparse.ArgumentTypeError(f"{value}: expected {minimum} to {cores} (the CPUs this process may use)")
        return value

    return parse


# Commands that only run models forward: they run with denormal floats flushed to zero
# (glassgem.inference.runtime.flush_denormals says why).
INFERENCE_COMMANDS = frozenset({"predict", "evaluate", "bench", "demo", "visualize", "analyze", "ros2"})


# ------------------------------------------------------------- options shared by several commands
# --report/--worst (evaluate, evaluate-masks), dataset folders (train, evaluate), --threshold/--smoothing
# (predict, evaluate).
def _add_report_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--report",
        default=None,
        metavar="DIR",
        help="write a per-image report here: per_image.csv (IoU, MAE, BER, glass and predicted "
        "fractions per image), worst.jpg (the lowest-IoU images with their errors coloured: "
        "green found, red false, blue missed glass) and metrics.json",
    )
    p.add_argument(
        "--worst",
        type=int,
        default=12,
        metavar="N",
        help="how many lowest-IoU images worst.jpg shows (default 12; 0: no picture)",
    )


def _make_report(args: argparse.Namespace):
    if args.worst < 0:
        raise ConfigError(f"--worst must be 0 or more, got {args.worst}")
    if args.report is None:
        return None
    from ..evaluation.report import PerImageReport

    return PerImageReport(worst=args.worst)


def _finish_report(args: argparse.Namespace, report, results: dict) -> None:
    """What `evaluate` and `evaluate-masks` do with their results: the metric table, --json, --report."""
    from ..evaluation.metrics import format_table, write_json

    print(format_table(results))
    if args.json:
        write_json(args.json, results)
    if report is not None:
        written = report.write(args.report, results)
        print(f"per-image report: {', '.join(str(p) for p in written)}")


def _add_data_args(p: argparse.ArgumentParser, flag: str, what: str) -> None:
    p.add_argument(flag, metavar="DIR", help=f"{what} dataset folder (any known layout)")
    dest = flag.lstrip("-").replace("-", "_")
    p.add_argument(f"{flag}-split", dest=f"{dest}_split", default=None, help="split name (default: auto)")
    p.add_argument(f"{flag}-layout", dest=f"{dest}_layout", default="auto", help="dataset layout (default: auto)")


def _spec(args: argparse.Namespace, dest: str):
    from ..train.runner import DataSpec

    root = getattr(args, dest)
    if root is None:
        return None
    return DataSpec(root=root, split=getattr(args, f"{dest}_split"), layout=getattr(args, f"{dest}_layout"))


def _add_mask_args(p: argparse.ArgumentParser) -> None:
    """--threshold and --smoothing: how predict and evaluate turn the model's scores into a mask."""
    p.add_argument(
        "--threshold",
        type=float,
        default=None,
        metavar="T",
        help="glass where its probability exceeds T, 0 < T < 1 (default: the larger score wins, "
        "= 0.5, the paper's protocol); lower finds more glass and more false glass",
    )
    p.add_argument(
        "--smoothing",
        type=float,
        default=None,
        metavar="F",
        help="box-average the glass scores over this fraction of the input side before resizing them "
        "back (default: the model's; the shipped models: 0.0625 = 24 px at 384; 0 = off, the "
        "original GEM's raw scores)",
    )


def _check_mask_args(args: argparse.Namespace) -> None:
    """Refuse a bad --threshold or --smoothing before any model is loaded."""
    from ..config import check_smoothing
    from ..inference.protocol import threshold_option

    threshold_option(args.threshold)
    if args.smoothing is not None:
        check_smoothing(args.smoothing)


def _refuse_writing_inputs(
    outputs: dict[str, str | os.PathLike | None], inputs, files: tuple[str, ...] = ("--json",), roots=()
) -> None:
    """Refuse, before any work, each output (option -> file or folder; None: not asked for) that is one of
    `inputs` or inside one of them, or one of `roots` (data set folders; glassgem.outputs.check_not_input): no
    input is ever overwritten. The options in `files` name files, and an existing folder there is refused too."""
    from ..outputs import check_file_output, check_not_input

    inputs, roots = [i for i in inputs if i is not None], [r for r in roots if r is not None]
    for option, path in outputs.items():
        if option in files:
            check_file_output(path, option)
        check_not_input(path, inputs, option, roots)


def _pair_folders(pairs) -> set:
    """The folders a data set's image/mask files lie in (inputs an output must stay out of)."""
    return {p.image_path.parent for p in pairs} | {p.mask_path.parent for p in pairs if p.mask_path is not None}
