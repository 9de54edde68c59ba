"""The `glassgem` command. Thin: it parses arguments and calls the library.

One module per command (group): demo.py, predict.py, evaluate.py, evaluate_masks.py, compare.py, train.py,
synth.py, data.py, convert.py, average.py, bench.py, visualize.py, analyze.py, export.py, experiment.py;
each has a public `register(subparsers)`, and this module only assembles them (in `COMMANDS` order, the
order `glassgem --help` lists them). Options several commands share are in common.py. Inside, each command is a pair:
`_add_<name>(subparsers)` declares its arguments and `_run_<name>(args)` does the work, importing what it
needs lazily so that `glassgem --help` stays fast (no torch).
User errors (GlassgemError) are printed as one line naming the file and the problem, exit code 2.
"""

from __future__ import annotations

import argparse
import contextlib
import sys

from .. import __version__
from ..errors import GlassgemError
from ..inference.threads import configure_cpu_threads, keep_freed_memory
from . import (
    analyze,
    average,
    bench,
    compare,
    convert,
    data,
    demo,
    evaluate,
    evaluate_masks,
    experiment,
    export,
    predict,
    ros2,
    synth,
    train,
    visualize,
)
from .common import INFERENCE_COMMANDS

# The command modules in the order `glassgem --help` lists their commands.
COMMANDS = (
    demo,
    predict,
    evaluate,
    evaluate_masks,
    compare,
    train,
    synth,
    data,
    convert,
    average,
    bench,
    visualize,
    analyze,
    export,
    experiment,
    ros2,
)


# ---------------------------------------------------------------------------------------- main
class _UsageError(Exception):
    """A bad command line (argparse's own checks and option types): printed as one line, exit code 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # argparse prints the usage block and exits; we say it in one line
        raise _UsageError(f"{self.prog}: error: {message} (see {self.prog} --help)")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="glassgem",
        description="Glass surface segmentation with GEM: predict, evaluate, train, synthesise data.",
    )
    parser.add_argument("--version", action="version", version=f"glassgem {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for command in COMMANDS:
        command.register(sub)
    return parser


def _inference_settings(command: str) -> contextlib.AbstractContextManager:
    """Denormals flushed for the commands that only run models forward (inference/runtime.py)."""
    if command not in INFERENCE_COMMANDS:
        return contextlib.nullcontext()
    from ..inference.runtime import flush_denormals  # torch: imported only for a command that needs it

    return flush_denormals(True)


def main(argv: list[str] | None = None) -> int:
    configure_cpu_threads()  # before anything imports torch: OpenMP reads its wait policy once (inference/threads.py)
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except _UsageError as e:
        print(e, file=sys.stderr)
        return 2
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    keep_freed_memory()  # the command owns the process: keep freed activations for reuse (inference/threads.py)
    try:
        with _inference_settings(args.command):
            return int(args.func(args) or 0)
    except GlassgemError as e:  # one line, even where the message quotes a library's multi-line text
        print(f"glassgem: error: {' '.join(str(e).split())}", file=sys.stderr)
        return 2
    except OSError as e:  # the machine, not glassgem: a full disk, a read-only or vanished folder, a symlink loop
        where = f"{e.filename}: " if e.filename else ""
        print(f"glassgem: error: {where}{e.strerror or e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("glassgem: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
